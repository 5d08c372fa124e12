"""Overlay networks on each node: pure plans (devices and forwarding entries, the VIP
ruleset, container DNS) from typed values, and thin shells that apply them to the kernel."""
