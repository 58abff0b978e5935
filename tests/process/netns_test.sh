#!/usr/bin/env bash
# Multi-host test: a broker on one "host" and a worker and a client on another, each host a network
# namespace this test creates (with a veth pair between them) and removes, whatever happens.
# Skips (exit 77) where namespaces cannot be made (not root, no iproute2, no CAP_NET_ADMIN).
#
#   netns_test.sh BROKER_BIN WORKER_BIN TASK_LIBRARY CLIENT_BIN
set -euo pipefail
broker_bin=$1 worker_bin=$2 task_library=$3 client_bin=$4

tag="fo$$"
host_a="${tag}-a" host_b="${tag}-b"
address_a=10.213.$(( $$ % 200 )).1 address_b=10.213.$(( $$ % 200 )).2
workdir=$(mktemp -d)
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$host_a" 2>/dev/null || true
  ip netns del "$host_b" 2>/dev/null || true
  rm -rf "$workdir"
}
trap cleanup EXIT

if ! ip netns add "$host_a" 2>/dev/null; then
  echo "SKIP: cannot create network namespaces here (needs root and iproute2)"
  exit 77
fi
ip netns add "$host_b"
ip link add "${tag}a" type veth peer name "${tag}b"
ip link set "${tag}a" netns "$host_a"
ip link set "${tag}b" netns "$host_b"
ip -n "$host_a" addr add "$address_a/24" dev "${tag}a"
ip -n "$host_b" addr add "$address_b/24" dev "${tag}b"
for host in "$host_a" "$host_b"; do ip -n "$host" link set lo up; done
ip -n "$host_a" link set "${tag}a" up
ip -n "$host_b" link set "${tag}b" up

endpoint="tcp://$address_a:5555"
# The broker listens on host A's own address: not loopback, hence --insecure.
ip netns exec "$host_a" "$broker_bin" --bind "$endpoint" --insecure --log-level warn >"$workdir/broker.out" 2>&1 &
pids+=($!)
ip netns exec "$host_b" "$worker_bin" --connect "$endpoint" --processes 2 --load "$task_library" --log-level warn \
  >"$workdir/worker.out" 2>&1 &
pids+=($!)

# The client runs on host B too and reaches the broker across the veth pair.
if ! FANOUT_BROKER="$endpoint" timeout 60 ip netns exec "$host_b" "$client_bin" >"$workdir/client.out" 2>&1; then
  echo "FAILED: the client did not get its results across the namespaces"
  for file in "$workdir"/*.out; do echo "== $file"; cat "$file"; done
  exit 1
fi
cat "$workdir/client.out"
echo "netns test: ok"
