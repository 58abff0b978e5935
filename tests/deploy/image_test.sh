#!/usr/bin/env bash
# The container image, run the way a container runtime runs it: deploy/image/build-image.sh builds
# the OCI archive from this build (its Debian root filesystem cached in the build directory), umoci
# unpacks it, and runc runs the broker and a worker from it, each container in a network namespace
# of its own on a bridge (tests/process/hosts.sh), with the image's entrypoint (tini), user and a
# read-only root filesystem. A client on a third host sends a batch of shell jobs through the
# broker (`fanout run --broker`): every job runs once, inside the worker's container, as the
# image's non-root user. Then SIGTERM to each container: the programs, under tini as PID 1, drain
# or stop and the containers exit 0. Skips (77) without runc, umoci, mmdebstrap or namespaces.
#
#   image_test.sh BUILD_DIR FANOUT_TOOL
set -euo pipefail
build_dir=$1 tool_bin=$2
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../process/hosts.sh"

for tool in runc umoci mmdebstrap python3; do
  if ! command -v "$tool" >/dev/null; then
    echo "SKIP: $tool is not installed (scripts/install-deps.sh installs it)"
    exit 77
  fi
done

hosts_init  # exits 77 where namespaces cannot be made
runc_root="$hosts_workdir/runc"
containers=()
image_test_cleanup() {
  local container
  for container in "${containers[@]}"; do
    runc --root "$runc_root" kill "$container" KILL 2>/dev/null || true
    runc --root "$runc_root" delete --force "$container" 2>/dev/null || true
  done
  hosts_cleanup
}
trap image_test_cleanup EXIT

# ---- the image ----
image="$hosts_workdir/fanout.oci.tar"
started=$SECONDS
status=0
"$here/../../deploy/image/build-image.sh" "$build_dir" "$image" >"$hosts_workdir/build.out" 2>&1 || status=$?
cat "$hosts_workdir/build.out"
if ((status == 77)); then exit 77; fi
((status == 0)) || hosts_fail "build-image.sh exited $status"
echo "image built in $((SECONDS - started)) s"

mkdir "$hosts_workdir/layout"
tar -xf "$image" -C "$hosts_workdir/layout"
version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$build_dir/CMakeCache.txt")
umoci unpack --image "$hosts_workdir/layout:$version" "$hosts_workdir/bundle" >/dev/null ||
  hosts_fail "umoci cannot unpack the image's tag $version"
rootfs="$hosts_workdir/bundle/rootfs"

# What the image says about itself (umoci writes the image's configuration into the bundle).
python3 - "$hosts_workdir/bundle/config.json" "$version" <<'PYTHON' || hosts_fail "the image's configuration is not as promised"
import json, sys
config = json.load(open(sys.argv[1]))
process = config["process"]
assert process["user"]["uid"] == 10001 and process["user"]["gid"] == 10001, process["user"]
assert process["args"][:2] == ["/usr/bin/tini", "--"], process["args"]
labels = config.get("annotations", {})
assert labels.get("org.opencontainers.image.version") == sys.argv[2], labels
PYTHON
for program in fanout-broker fanout-worker fanout; do
  [[ -x $rootfs/usr/local/bin/$program ]] || hosts_fail "no /usr/local/bin/$program in the image"
done
[[ ! -e $rootfs/usr/local/include/fanout && ! -e $rootfs/usr/bin/apt ]] || hosts_fail "fanout's headers or apt in the runtime image"

# container NAME HOST ARGS...: a runc bundle sharing the unpacked root filesystem (read-only), in
# host NAME's network namespace, running the image's entrypoint with ARGS, started in the
# background; its exit status lands in $hosts_workdir/NAME.status.
container() {
  local name=$1 host=$2
  shift 2
  local bundle="$hosts_workdir/$name" id="${hosts_tag}-$name"
  mkdir -p "$bundle" "$hosts_workdir/$name-state" "$hosts_workdir/$name-state-keys"
  chown 10001:10001 "$hosts_workdir/$name-state"
  python3 - "$hosts_workdir/bundle/config.json" "$bundle/config.json" "$rootfs" "/var/run/netns/${hosts_tag}-$host" \
    "$hosts_workdir/$name-state" "$@" <<'PYTHON'
import json, sys
source, target, rootfs, netns, state, args = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:]
config = json.load(open(source))
config["root"] = {"path": rootfs, "readonly": True}
process = config["process"]
process["terminal"] = False
process["args"] = process["args"][:2] + args  # the image's entrypoint (tini --), then ARGS
namespaces = [n for n in config["linux"]["namespaces"] if n["type"] != "network"]
config["linux"]["namespaces"] = namespaces + [{"type": "network", "path": netns}]
mounts = [m for m in config["mounts"] if m["destination"] not in ("/var/lib/fanout", "/tmp")]
mounts.append({"destination": "/var/lib/fanout", "type": "bind", "source": state, "options": ["rbind", "rw"]})
mounts.append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]})
mounts.append({"destination": "/etc/fanout/keys", "type": "bind", "source": state + "-keys", "options": ["rbind", "ro"]})
config["mounts"] = mounts
json.dump(config, open(target, "w"), indent=1)
PYTHON
  containers+=("$id")
  (
    status=0
    runc --root "$runc_root" run --bundle "$bundle" "$id" </dev/null >"$hosts_workdir/$name.out" 2>&1 || status=$?
    echo "$status" >"$hosts_workdir/$name.status"
  ) &
}

# wait_for CONDITION SECONDS MESSAGE: polls a shell condition until it holds or the time is up.
wait_for() {
  local condition=$1 limit=$2 message=$3 deadline=$((SECONDS + $2))
  until eval "$condition"; do
    ((SECONDS < deadline)) || hosts_fail "$message (waited $limit s)"
    sleep 0.2
  done
}

host_add broker
host_add worker
host_add client
endpoint="tcp://${HOST_ADDRESS[broker]}:5555"

# Keys, as in the manifests: made with the build's `fanout keygen`; each container sees its own
# secret (owned by the image's user, mode 0600) and the public keys it needs, read-only.
keys=$hosts_workdir/keys
mkdir -p "$keys"
for name in broker worker client admin; do "$tool_bin" keygen "$keys/$name" >/dev/null; done
mkdir -p "$hosts_workdir/broker-state-keys/"{clients,workers,admins}
cp "$keys/broker.key" "$keys/broker.pub" "$hosts_workdir/broker-state-keys/"
cp "$keys/client.pub" "$hosts_workdir/broker-state-keys/clients/"
cp "$keys/worker.pub" "$hosts_workdir/broker-state-keys/workers/"
cp "$keys/admin.pub" "$hosts_workdir/broker-state-keys/admins/"
mkdir -p "$hosts_workdir/worker-state-keys"
cp "$keys/worker.key" "$keys/broker.pub" "$hosts_workdir/worker-state-keys/"
chown -R 10001:10001 "$hosts_workdir/broker-state-keys" "$hosts_workdir/worker-state-keys"
as_admin=(env FANOUT_KEY="$keys/admin.key" FANOUT_BROKER_KEY="$keys/broker.pub")
as_client=(env FANOUT_KEY="$keys/client.key" FANOUT_BROKER_KEY="$keys/broker.pub")

container broker broker fanout-broker --bind "$endpoint" --key /etc/fanout/keys/broker.key \
  --clients /etc/fanout/keys/clients --workers /etc/fanout/keys/workers --admins /etc/fanout/keys/admins \
  --journal /var/lib/fanout/journal --log-level info
container worker worker fanout-worker --connect "$endpoint" --key /etc/fanout/keys/worker.key \
  --broker-key /etc/fanout/keys/broker.pub --processes 2 --allow-shell --drain-timeout 5 --log-level info

wait_for "ip netns exec ${hosts_tag}-client ${as_admin[*]} $tool_bin status --broker $endpoint --timeout-ms 1000 2>/dev/null | grep -qF ': 2 executor(s)'" 60 \
  "the worker's two executors never registered with the broker"

# ---- a batch through the containers ----
jobs=(1 2 3 4 5 6 7 8)
if ! timeout 120 ip netns exec "${hosts_tag}-client" "${as_client[@]}" "$tool_bin" run --broker "$endpoint" -j 4 -k \
     'echo "job {} uid $(id -u) in $(cat /etc/hostname 2>/dev/null || hostname)"' ::: "${jobs[@]}" \
     >"$hosts_workdir/client.out" 2>&1; then
  hosts_fail "the batch did not go through the containers"
fi
cat "$hosts_workdir/client.out"
for job in "${jobs[@]}"; do
  count=$(grep -c "^job $job uid 10001 in " "$hosts_workdir/client.out" || true)
  ((count == 1)) || hosts_fail "job $job ran $count times as uid 10001 in the worker's container"
done
# Ran in the worker's container, not in the client's namespace on the host's filesystem.
[[ $(grep -c "uid $(id -u) " "$hosts_workdir/client.out") -eq 0 || $(id -u) -eq 10001 ]] || hosts_fail "a job ran as the client's user"
# The broker's journal is on the volume, owned by the image's user.
[[ -d $hosts_workdir/broker-state/journal ]] || hosts_fail "no journal in the broker's volume"
[[ $(stat -c %u "$hosts_workdir/broker-state/journal") == 10001 ]] || hosts_fail "the journal is not owned by uid 10001"

# ---- SIGTERM, as a container runtime stops a container ----
for name in worker broker; do
  started=$SECONDS
  runc --root "$runc_root" kill "${hosts_tag}-$name" TERM
  wait_for "[[ -s $hosts_workdir/$name.status ]]" 30 "the $name container did not stop on SIGTERM"
  status=$(cat "$hosts_workdir/$name.status")
  ((status == 0)) || hosts_fail "the $name container exited $status on SIGTERM, not 0"
  echo "$name: stopped by SIGTERM in $((SECONDS - started)) s, exit 0"
done
echo "image test: ok"
