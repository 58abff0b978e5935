# hosts.sh, sourced by the multi-host tests: "hosts" are network namespaces this test creates,
# each with one veth link to a bridge in a switch namespace of its own, on a /24 made from the
# shell's pid. Nothing touches the machine's own namespace but the veth pairs' creation.
#
#   hosts_init               the switch (exit 77, "SKIP", where namespaces cannot be made), a
#                            scratch directory $hosts_workdir, and an EXIT trap: hosts_cleanup
#   host_add NAME            a host; prints nothing, sets HOST_ADDRESS[NAME]
#   host_cut NAME / host_heal NAME   its port taken off the switch's bridge / put back: packets
#                            vanish both ways, no connection is reset, both ends keep their carrier
#   hosts_fail MESSAGE       prints it and the tail of every $hosts_workdir/*.out (stderr), exits 1
#   hosts_cleanup            every process on the hosts killed, everything above removed;
#                            FANOUT_KEEP_LOGS=DIR keeps the *.out logs there

hosts_tag="fo$$"
hosts_switch="${hosts_tag}-sw"
hosts_subnet=10.213.$(( $$ % 200 ))
hosts_names=()
declare -A HOST_ADDRESS=()

hosts_init() {
  hosts_workdir=$(mktemp -d)
  trap hosts_cleanup EXIT
  if ! ip netns add "$hosts_switch" 2>/dev/null; then
    echo "SKIP: cannot create network namespaces here (needs root and iproute2)"
    exit 77
  fi
  ip -n "$hosts_switch" link add br0 type bridge
  ip -n "$hosts_switch" link set br0 up
  ip -n "$hosts_switch" link set lo up
}

host_add() {
  local name=$1 number=$(( ${#hosts_names[@]} + 1 ))
  local namespace="${hosts_tag}-$name" inside="${hosts_tag}h$number" outside="${hosts_tag}s$number"
  ip netns add "$namespace"
  hosts_names+=("$name")
  ip link add "$inside" type veth peer name "$outside"
  ip link set "$inside" netns "$namespace"
  ip link set "$outside" netns "$hosts_switch"
  ip -n "$hosts_switch" link set "$outside" master br0 up
  HOST_ADDRESS[$name]="$hosts_subnet.$number"
  ip -n "$namespace" addr add "${HOST_ADDRESS[$name]}/24" dev "$inside"
  ip -n "$namespace" link set lo up
  ip -n "$namespace" link set "$inside" up
}

# Runs a command on host NAME.
host_exec() {
  local name=$1
  shift
  ip netns exec "${hosts_tag}-$name" "$@"
}

host_switch_port() {
  local number=0 name
  for name in "${hosts_names[@]}"; do
    number=$(( number + 1 ))
    if [[ $name == "$1" ]]; then echo "${hosts_tag}s$number"; return; fi
  done
}
# Off the bridge, not down: a link that goes down and up again also takes the kernel a while to
# bring back (carrier, queues), which is not what a partition of the network is. (A bridge port's
# STP state cannot be set while STP is off; netem and packet filters are not on every machine.)
host_cut() { ip -n "$hosts_switch" link set dev "$(host_switch_port "$1")" nomaster; }
host_heal() { ip -n "$hosts_switch" link set dev "$(host_switch_port "$1")" master br0; }

# Every process still running on a host is killed first, whoever started it: a background
# `host_exec ... &` is a subshell whose $! is not the program's pid.
hosts_cleanup() {
  local name namespace
  for name in "${hosts_names[@]}"; do
    namespace="${hosts_tag}-$name"
    ip netns pids "$namespace" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
    ip netns del "$namespace" 2>/dev/null || true
  done
  ip netns del "$hosts_switch" 2>/dev/null || true
  if [[ -n ${FANOUT_KEEP_LOGS:-} ]]; then cp "$hosts_workdir"/*.out "$FANOUT_KEEP_LOGS"/ 2>/dev/null || true; fi
  rm -rf "$hosts_workdir"
}

hosts_fail() {  # on stderr: it may be called inside $(...)
  {
    echo "FAILED: $*"
    local file
    for file in "$hosts_workdir"/*.out; do echo "== $file"; tail -n 60 "$file"; done
  } >&2
  exit 1
}
