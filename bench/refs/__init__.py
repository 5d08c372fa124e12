"""Reference systems measured beside Shoal (etcd, Docker Swarm mode), installed from Debian's
packages by the benchmarks themselves; they are never project dependencies."""
