"""This node's part of the overlay networks: what the state and the gossip table say it
should be (`view`), and the loop that makes the container engine, the kernel and the
network-side DNS match it (`loop`)."""
