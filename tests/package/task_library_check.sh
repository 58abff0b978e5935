#!/usr/bin/env bash
# The consumer's task library at work: the installed fanout-broker on an OS-picked loopback port,
# the installed fanout-worker loading the library, and task_caller calling its task through them.
# Both are killed on exit, whatever happens.
#
#   task_library_check.sh PREFIX TASK_LIBRARY TASK_CALLER
set -euo pipefail
prefix=$1 library=$2 caller=$3
work=$(mktemp -d)
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAILED: $*" >&2
  for log in "$work"/*.log; do echo "== $log" >&2; tail -n 30 "$log" >&2; done
  exit 1
}

"$prefix/bin/fanout-broker" --bind 'tcp://127.0.0.1:*' >"$work/broker.log" 2>&1 &
pids+=($!)
deadline=$((SECONDS + 30))
until endpoint=$(sed -n 's/^listening //p' "$work/broker.log" | head -n 1) && [[ -n $endpoint ]]; do
  ((SECONDS < deadline)) || fail "the broker never said where it listens"
  sleep 0.1
done
"$prefix/bin/fanout-worker" --connect "$endpoint" --processes 1 --load "$library" >"$work/worker.log" 2>&1 &
pids+=($!)
FANOUT_BROKER=$endpoint timeout 60 "$caller" >"$work/caller.log" 2>&1 || fail "task_caller failed"
cat "$work/caller.log"
