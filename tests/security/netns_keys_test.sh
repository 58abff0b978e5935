#!/usr/bin/env bash
# Keys across hosts with real, non-loopback addresses: a broker on host A, the victim's worker and
# a legitimate client on host B, an attacker on host C; each host a network namespace this test
# creates (tests/process/hosts.sh) and removes, whatever happens. Skips (exit 77) where namespaces
# cannot be made (not root, no iproute2, no CAP_NET_ADMIN).
#
#   netns_keys_test.sh BROKER_BIN WORKER_BIN TOOL_BIN TASK_LIBRARY CLIENT_BIN
set -euo pipefail
broker_bin=$1 worker_bin=$2 tool_bin=$3 task_library=$4 client_bin=$5
source "$(dirname "$0")/../process/hosts.sh"

hosts_init
host_add a
host_add b
host_add c
keys="$hosts_workdir/keys"
mkdir -p "$keys/clients" "$keys/workers" "$keys/admins"
for name in broker worker alice admin rogue; do "$tool_bin" keygen "$keys/$name" >/dev/null; done
cp "$keys/alice.pub" "$keys/clients/"
cp "$keys/worker.pub" "$keys/workers/"
cp "$keys/admin.pub" "$keys/admins/"
endpoint="tcp://${HOST_ADDRESS[a]}:5555"

# 1. Host A's own address without keys: refused, with the reason, before anything listens.
if host_exec a "$broker_bin" --bind "$endpoint" >"$hosts_workdir/refused.out" 2>&1; then
  hosts_fail "a broker without keys listened on $endpoint"
fi
grep -q "has no keys" "$hosts_workdir/refused.out" || hosts_fail "the refusal did not say why"

# 2. With keys it listens there; the worker on host B has its own key.
host_exec a "$broker_bin" --bind "$endpoint" --key "$keys/broker.key" --clients "$keys/clients" \
  --workers "$keys/workers" --admins "$keys/admins" >"$hosts_workdir/broker.out" 2>&1 &
host_exec b "$worker_bin" --connect "$endpoint" --key "$keys/worker.key" --broker-key "$keys/broker.pub" \
  --processes 2 --load "$task_library" --id victim >"$hosts_workdir/worker.out" 2>&1 &
on_host() {  # on_host HOST KEY-NAME-OR-none COMMAND...: a client on HOST with that key
  local host=$1 key=$2
  shift 2
  if [[ $key == none ]]; then
    FANOUT_BROKER="$endpoint" timeout 60 ip netns exec "${hosts_tag}-$host" "$@"
  else
    FANOUT_BROKER="$endpoint" FANOUT_KEY="$keys/$key.key" FANOUT_BROKER_KEY="$keys/broker.pub" \
      timeout 60 ip netns exec "${hosts_tag}-$host" "$@"
  fi
}
FANOUT_BROKER="$endpoint" FANOUT_KEY="$keys/admin.key" FANOUT_BROKER_KEY="$keys/broker.pub" \
  timeout 60 ip netns exec "${hosts_tag}-b" "$client_bin" --executors 2 >"$hosts_workdir/ready.out" 2>&1 ||
  hosts_fail "the broker never listed the worker's two executors"

# 3. The attacker on host C, without keys and with an unlisted key, at the same time as the client.
on_host c none "$client_bin" >"$hosts_workdir/keyless.out" 2>&1 &
keyless=$!
on_host c rogue "$client_bin" >"$hosts_workdir/rogue.out" 2>&1 &
rogue=$!
on_host b alice "$client_bin" >"$hosts_workdir/client.out" 2>&1 || hosts_fail "alice's batch failed"
grep -q "ok, 100 results" "$hosts_workdir/client.out" || hosts_fail "alice's batch came back wrong"
if wait "$keyless"; then hosts_fail "a client without keys ran a batch"; fi
if wait "$rogue"; then hosts_fail "a client with an unlisted key ran a batch"; fi
grep -q "cannot reach the broker at $endpoint" "$hosts_workdir/keyless.out" || hosts_fail "no clear error without keys"
grep -q "refused this peer's key" "$hosts_workdir/rogue.out" || hosts_fail "no clear error with an unlisted key"

# 4. The status from host C: a client key is refused, an admin key sees the worker.
if on_host c alice "$tool_bin" status >"$hosts_workdir/status-client.out" 2>&1; then
  hosts_fail "a client key read the status"
fi
grep -q "needs an admin key" "$hosts_workdir/status-client.out" || hosts_fail "the refused status did not say why"
on_host c admin "$tool_bin" status >"$hosts_workdir/status.out" 2>&1 || hosts_fail "the admin could not read the status"
grep -q "victim" "$hosts_workdir/status.out" || hosts_fail "the status does not list the worker"
echo "netns keys test: ok"
