#!/usr/bin/env bash
# Multi-host test: a broker on one "host" and a worker and a client on another, each host a network
# namespace this test creates (hosts.sh) and removes, whatever happens. Skips (exit 77) where
# namespaces cannot be made (not root, no iproute2, no CAP_NET_ADMIN).
#
#   netns_test.sh BROKER_BIN WORKER_BIN TASK_LIBRARY CLIENT_BIN
set -euo pipefail
broker_bin=$1 worker_bin=$2 task_library=$3 client_bin=$4
source "$(dirname "$0")/hosts.sh"

hosts_init
host_add a
host_add b

endpoint="tcp://${HOST_ADDRESS[a]}:5555"
# The broker listens on host A's own address: not loopback, hence --insecure.
host_exec a "$broker_bin" --bind "$endpoint" --insecure --log-level warn >"$hosts_workdir/broker.out" 2>&1 &
host_exec b "$worker_bin" --connect "$endpoint" --processes 2 --load "$task_library" --log-level warn \
  >"$hosts_workdir/worker.out" 2>&1 &

# The client runs on host B too and reaches the broker across the switch.
if ! FANOUT_BROKER="$endpoint" timeout 60 ip netns exec "${hosts_tag}-b" "$client_bin" >"$hosts_workdir/client.out" 2>&1; then
  hosts_fail "the client did not get its results across the namespaces"
fi
cat "$hosts_workdir/client.out"
echo "netns test: ok"
