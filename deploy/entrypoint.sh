#!/bin/sh
# Start one Shoal node in a container (compose-test-cluster.yml runs three).
#
#   SHOAL_JOIN=HOST:PORT   join the cluster through that node's API, with the join token read
#                          from SHOAL_TOKEN_FILE (the first node's data dir, shared read-only
#                          through a volume); unset: bootstrap a new cluster.
#   SHOAL_DATA_DIR         the node's state (default /var/lib/shoal)
# Arguments are passed on to `shoal node start`.
#
# The node advertises the container's address. It runs its tasks on the host's Docker Engine
# (through the mounted socket), which cannot bind the container's address, so task ports are
# published on the network's gateway instead: an address of the host that the engine can
# bind and that every node on the network (and the host) reaches.
set -eu

data_dir="${SHOAL_DATA_DIR:-/var/lib/shoal}"
token_file="${SHOAL_TOKEN_FILE:-/run/shoal/first-node/join-token}"

# The first address `hostname -i` lists: the container's on its (first) network.
address="$(hostname -i | cut -d' ' -f1)"

# The default route's gateway, from /proc/net/route (iproute2 may be absent): the address is
# hex in little-endian byte order.
gateway=""
while read -r _iface destination hexgw _rest; do
  if [ "$destination" = 00000000 ]; then
    gateway="$(printf '%d.%d.%d.%d' "0x$(echo "$hexgw" | cut -c7-8)" \
      "0x$(echo "$hexgw" | cut -c5-6)" "0x$(echo "$hexgw" | cut -c3-4)" \
      "0x$(echo "$hexgw" | cut -c1-2)")"
    break
  fi
done < /proc/net/route
if [ -z "$gateway" ]; then
  echo "shoal-entrypoint: no default route: cannot tell where to publish task ports" >&2
  exit 2
fi

if [ -n "${SHOAL_JOIN:-}" ]; then
  if [ ! -s "$token_file" ]; then
    echo "shoal-entrypoint: no join token at $token_file (is the first node's data volume" \
         "mounted there, and has it started?)" >&2
    exit 2
  fi
  set -- --join "$SHOAL_JOIN" --token "$(cat "$token_file")" "$@"
fi

exec shoal node start --data-dir "$data_dir" --advertise "$address" \
  --publish-address "$gateway" --runtime docker "$@"
