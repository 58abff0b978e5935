#!/usr/bin/env bash
# A partition costs the capacity it takes away, never work or more time (issue 15): a broker and
# its client on host A, one worker on host B and one on host C (network namespaces, hosts.sh),
# two executors each. Host B's link is cut at the switch (packets vanish, no connection is reset)
# for 5 s, then for 20 s, while a batch runs; then the link heals and the next batch runs at once.
#
# Measured in the same run, fault-free: FULL, the batch on both workers, and ONE, the batch on
# worker C alone (worker B stopped): all that a cut leaves. A batch during a cut finishes within
# 1.3 x ONE (work that B had is taken over, nothing waits for B to come back), and the batch right
# after the heal within 1.3 x FULL (B's executors are back before long and get no work while they
# are unreachable).
#
#   partition_test.sh BROKER_BIN WORKER_BIN TASK_LIBRARY CLIENT_BIN
#   (FANOUT_KEEP_LOGS=DIR keeps the broker's, workers' and client's logs there: hosts.sh)
set -euo pipefail
broker_bin=$1 worker_bin=$2 task_library=$3 client_bin=$4
source "$(dirname "$0")/hosts.sh"

hosts_init
host_add a
host_add b
host_add c
endpoint="tcp://${HOST_ADDRESS[a]}:5555"
export FANOUT_BROKER=$endpoint

# The broker listens on host A's own address: not loopback, hence --insecure.
host_exec a "$broker_bin" --bind "$endpoint" --insecure --log-level info >"$hosts_workdir/broker.out" 2>&1 &
start_worker() {  # HOST: a worker of two executors there, default heartbeats (500 ms, liveness 2 s)
  host_exec "$1" "$worker_bin" --connect "$endpoint" --processes 2 --load "$task_library" --log-level info \
    >>"$hosts_workdir/worker-$1.out" 2>&1 &
}
start_worker c

client() { host_exec a "$client_bin" "$@"; }
wait_for_executors() { client --executors "$1" >>"$hosts_workdir/client.out" 2>&1 || hosts_fail "the broker never listed $1 executors"; }
# COUNT sleeps of MS on the cluster; prints the makespan in ms.
batch() {
  local out
  out=$(client "$1" "$2" 2>&1) || hosts_fail "a batch failed: $out"
  echo "$out" >>"$hosts_workdir/client.out"
  sed -n 's/^makespan_ms //p' <<<"$out"
}
within() {  # WHAT MS LIMIT_MS
  echo "$1: $2 ms (limit $3 ms)"
  (( $2 <= $3 )) || hosts_fail "$1 took $2 ms, more than $3 ms"
}

count=40 ms=250  # FULL = 40 x 250 ms on 4 executors = 2.5 s; ONE = 5 s

wait_for_executors 2
one=$(batch $count $ms)
start_worker b
wait_for_executors 4
full=$(batch $count $ms)
echo "fault-free: both workers $full ms, worker C alone $one ms"
limit_one=$(( one * 13 / 10 )) limit_full=$(( full * 13 / 10 ))

for cut in 5 20; do
  # The batch starts, B is cut 0.5 s in; it heals after `cut` seconds, counted from the cut.
  batch_out="$hosts_workdir/batch-$cut"
  ( batch $count $ms >"$batch_out" ) &
  batch_pid=$!
  sleep 0.5
  host_cut b
  cut_at=$SECONDS
  wait "$batch_pid" || hosts_fail "the batch during the $cut s cut failed"
  within "batch during a $cut s cut of worker B" "$(cat "$batch_out")" "$limit_one"
  # The cut lasts its time, then heals, and the next batch starts at once.
  while (( SECONDS - cut_at < cut )); do sleep 0.2; done
  host_heal b
  echo "healed at $(date +%T.%3N)" >>"$hosts_workdir/client.out"
  within "batch right after the $cut s cut healed" "$(batch $count $ms)" "$limit_full"
  wait_for_executors 4
done
echo "partition test: ok"
