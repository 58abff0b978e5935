#!/usr/bin/env python3
"""deploy_rehearsal_test: the dev overlay run as a cluster would run it (issue 13, point 4).

`kubectl kustomize deploy/kubernetes/overlays/dev` renders the objects; kubelet.py runs them: the
broker's StatefulSet pod and the workers' Deployment pods, each in a network namespace of its own,
as the pod's user, with its Secrets, ConfigMaps, init container, claims and probes, this build's
binaries standing for the example-tasks image. A client pod (`fanout.dev/client`) reaches the
broker by its Service name with its CurveZMQ key.

The scenario: a long batch (`rehearsal_client run`, 800 sleeps of 20-50 ms) and deferred batches
(`rehearsal_client defer`, each task appends a unique line to a file) while the workers scale
1 -> 4 -> 1 (SIGTERM, the grace period) and the broker pod is deleted once and comes back as a new
pod, at a new address, on the same journal claim. It passes when every slot of the batch came back
exactly once and right, every line of every acknowledged deferred batch is in the file, every pod
stopped on SIGTERM within its grace period with exit 0 and left no process behind, no probe failed
and nothing of the rehearsal remains (namespaces, mounts, files), all within LIMIT seconds.

    rehearsal_test.py --broker BIN --worker BIN --tool BIN --tasks LIB --client BIN --overlay DIR
      Exit 0 passed, 1 failed, 77 skipped.
    FANOUT_KEEP_LOGS=DIR keeps the pods' logs there.
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kubelet import Failure, Image, Kubelet, Skip  # noqa: E402

LIMIT = 120  # seconds for the whole scenario; it takes about 40 on 2 busy cores
BATCH = 800  # slots of the long batch: about 28 a second on one executor, 110 on four
TAIL = 150  # slots left when the workers scale down to one
BROKER, WORKERS = "fanout-broker", "fanout-worker"


def render(overlay):
    import yaml
    out = subprocess.run(["kubectl", "kustomize", overlay], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if out.returncode != 0:
        raise Failure(f"kubectl kustomize {overlay}: {out.stderr.strip()}")
    return [o for o in yaml.safe_load_all(out.stdout) if o]


def keys(tool, work):
    """`fanout keygen` for each party, and the Secrets and ConfigMaps the base names, as
    deploy/README.md has an operator create them with `kubectl create secret/configmap`."""
    directory = os.path.join(work, "keys")
    os.makedirs(directory)
    for name in ("broker", "worker", "client"):
        subprocess.run([tool, "keygen", os.path.join(directory, name)], check=True, stdout=subprocess.DEVNULL)

    def read(name):
        with open(os.path.join(directory, name), "rb") as f:
            return f.read()
    data = {
        ("Secret", "fanout-broker-key"): {"broker.key": read("broker.key")},
        ("Secret", "fanout-worker-key"): {"worker.key": read("worker.key")},
        ("ConfigMap", "fanout-broker-pub"): {"broker.pub": read("broker.pub")},
        ("ConfigMap", "fanout-clients"): {"client.pub": read("client.pub")},
        ("ConfigMap", "fanout-workers"): {"worker.pub": read("worker.pub")},
    }
    return data, directory


class Client:
    """The client pod: `kubectl exec` of rehearsal_client with its key."""

    def __init__(self, kubelet, client_bin, key_dir, lines_file):
        self.kubelet = kubelet
        self.client_bin = client_bin
        self.lines_file = lines_file
        template = {"metadata": {"labels": {"fanout.dev/client": "true"}}, "spec": {"containers": []}}
        self.pod = kubelet.add_pod("client", template)
        service = kubelet.find("Service", BROKER)
        port = [p["port"] for p in service["spec"]["ports"] if p["name"] == "broker"][0]
        self.env = {"FANOUT_BROKER": f"tcp://{BROKER}:{port}",
                    "FANOUT_KEY": os.path.join(key_dir, "client.key"),
                    "FANOUT_BROKER_KEY": os.path.join(key_dir, "broker.pub")}
        self.acknowledged = {}  # tag -> count
        self.run_log = os.path.join(kubelet.logs, "client-run.out")

    def start_run(self, count):
        with open(self.run_log, "w") as log:
            return self.pod.exec("client", [self.client_bin, "run", str(count)], self.env, log)

    def progress(self):
        with open(self.run_log) as f:
            done = re.findall(r"^progress (\d+)$", f.read(), re.M)
        return int(done[-1]) if done else 0

    def defer(self, tag, count):
        path = os.path.join(self.kubelet.logs, f"client-defer-{tag}.out")
        with open(path, "w") as log:
            process = self.pod.exec("client", [self.client_bin, "defer", tag, str(count), self.lines_file], self.env, log)
            try:
                code = process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                code = "timeout"
        with open(path) as f:
            out = f.read().strip()
        if code != 0 or not out.startswith(f"acknowledged {tag} {count} "):
            raise Failure(f"deferring batch {tag} failed ({code}): {out}")
        self.acknowledged[tag] = count
        self.kubelet.event(self.pod, out)


def wait_for(what, condition, limit, kubelet):
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise Failure(f"{what}: not within {limit} s")
        if kubelet.problems():
            raise Failure(f"while waiting for {what}: {kubelet.problems()[-1]}")
        time.sleep(0.05)


def check_termination(pods, what):
    for pod in pods:
        t = pod.termination
        if t["killed"] or t["leftovers"] or any(code != 0 for code in t["codes"].values()):
            raise Failure(f"{what}: {pod.name} did not stop cleanly on SIGTERM: {t}")


def check_key(pod, volume, name):
    """The secret key a pod's program reads: the init container's copy, the pod's user's, 0400."""
    info = os.stat(os.path.join(pod.volumes[volume], name))
    if (info.st_mode & 0o777, info.st_uid) != (0o400, pod.uid):
        raise Failure(f"{pod.name}: {volume}/{name} is {oct(info.st_mode & 0o777)} uid {info.st_uid}, "
                      f"not 0400 uid {pod.uid}")


def scenario(kubelet, client_bin, key_dir, work):
    lines_file = os.path.join(work, "deferred", "lines")
    os.makedirs(os.path.dirname(lines_file))
    os.chmod(os.path.dirname(lines_file), 0o777)  # the workers' user appends to it

    broker = kubelet.stateful_pod(BROKER)
    kubelet.wait_ready([broker], 30)
    kubelet.scale(WORKERS, kubelet.find("Deployment", WORKERS)["spec"]["replicas"])
    kubelet.wait_ready(kubelet.deployment_pods(WORKERS), 30)
    if len(kubelet.deployment_pods(WORKERS)) != 1:
        raise Failure("the dev overlay was expected to start one worker")
    check_key(broker, "broker-key", "broker.key")
    check_key(kubelet.deployment_pods(WORKERS)[0], "worker-key", "worker.key")

    client = Client(kubelet, client_bin, key_dir, lines_file)
    run = client.start_run(BATCH)
    client.defer("d1", 40)
    wait_for("30 results on one worker", lambda: client.progress() >= 30, 30, kubelet)

    kubelet.event(None, "scale fanout-worker to 4")
    kubelet.scale(WORKERS, 4)
    kubelet.wait_ready(kubelet.deployment_pods(WORKERS), 30)
    client.defer("d2", 40)
    mark = client.progress()
    wait_for("50 more results on four workers", lambda: client.progress() >= mark + 50, 30, kubelet)

    # Deferred work queued behind the batch's when the broker goes: the journal must bring it back.
    client.defer("d3", 200)
    kubelet.event(None, f"delete pod fanout-broker-0 at {client.progress()} of {BATCH} results")
    kubelet.delete([broker])
    check_termination([broker], "deleting the broker pod")
    broker = kubelet.stateful_pod(BROKER)  # the StatefulSet's new pod, same claim, new address
    kubelet.wait_ready([broker], 60)
    with open(os.path.join(kubelet.logs, f"{BROKER}-0-broker.out")) as f:
        recovered = re.findall(r"journal: .* recovered", f.read())
    if len(recovered) != 2:
        raise Failure(f"expected the journal's recovery logged by both broker pods, saw {recovered}")
    kubelet.event(broker, f"the new pod's {recovered[-1]}")
    client.defer("d4", 40)
    mark = client.progress()
    wait_for("30 more results after the broker came back", lambda: client.progress() >= mark + 30, 30, kubelet)
    # The last TAIL slots on the one worker left: about 5 s of work.
    wait_for(f"{BATCH - TAIL} results", lambda: client.progress() >= BATCH - TAIL, 30, kubelet)
    if run.poll() is not None:
        raise Failure("the batch ended before the scale-down: make it longer, the scale-down went untested")

    kubelet.event(None, f"scale fanout-worker to 1 at {client.progress()} of {BATCH} results")
    gone = kubelet.scale(WORKERS, 1)
    check_termination(gone, "scaling the workers down")
    client.defer("d5", 40)

    try:
        code = run.wait(timeout=60)
    except subprocess.TimeoutExpired:
        raise Failure(f"the batch did not finish within 60 s of the scale-down ({client.progress()} results)")
    with open(client.run_log) as f:
        out = f.read()
    if code != 0 or "run ok:" not in out:
        raise Failure(f"the batch failed ({code}): {out[-2000:]}")
    kubelet.event(client.pod, out.strip().splitlines()[-1])

    # Every acknowledged deferred task ran (at least once: docs/protocol.md), on the one worker left.
    expected = {f"{tag}-{i}" for tag, count in client.acknowledged.items() for i in range(count)}

    def lines():
        try:
            with open(lines_file) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []
    wait_for(f"all {len(expected)} deferred tasks", lambda: expected <= set(lines()), 30, kubelet)
    seen = lines()
    strangers = set(seen) - expected
    if strangers:
        raise Failure(f"lines no acknowledged batch asked for: {sorted(strangers)[:5]}")
    kubelet.event(None, f"deferred: {len(expected)} tasks acknowledged, all ran; "
                  f"{len(seen) - len(set(seen))} ran twice (at least once, by design)")

    kubelet.event(None, "delete every pod")
    pods = [broker] + kubelet.deployment_pods(WORKERS)
    kubelet.delete(pods)
    check_termination(pods, "deleting the pods")
    problems = kubelet.problems()
    if problems:
        raise Failure(f"the kubelet saw problems: {problems}")


def leftovers(tag):
    """Namespaces and mounts of this rehearsal that are still there."""
    found = [n for n in os.listdir("/run/netns") if n.startswith(tag)] if os.path.isdir("/run/netns") else []
    with open("/proc/self/mounts") as f:
        found += [line.split()[1] for line in f if f"/{tag}-" in line.split()[1]]
    return found


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--broker", required=True)
    parser.add_argument("--worker", required=True)
    parser.add_argument("--tool", required=True)
    parser.add_argument("--tasks", required=True)
    parser.add_argument("--client", required=True)
    parser.add_argument("--overlay", required=True)
    args = parser.parse_args()

    for tool in ("ip", "kubectl", "setpriv"):
        if shutil.which(tool) is None:
            print(f"SKIP: {tool} is not installed")
            return 77
    try:
        import yaml  # noqa: F401
    except ImportError:
        print("SKIP: python3-yaml is not installed (scripts/install-deps.sh installs it)")
        return 77
    if os.geteuid() != 0:
        print("SKIP: the rehearsal makes network namespaces and runs pods as their user: needs root")
        return 77

    began = time.monotonic()
    tag = f"kr{os.getpid()}"
    work = tempfile.mkdtemp(prefix="fanout-rehearsal-")
    os.chmod(work, 0o755)
    kubelet = None
    # ctest's timeout sends SIGTERM: clean up as on any other failure.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("FAILED: stopped by SIGTERM"))
    status = 1
    try:
        objects = render(args.overlay)
        data, key_dir = keys(args.tool, work)
        # The image the overlay names is the example-tasks image: fanout's binaries and
        # FANOUT_LOAD with the example task library (deploy/image/example-tasks.Containerfile).
        images = {c["image"] for o in objects if o["kind"] in ("StatefulSet", "Deployment")
                  for c in o["spec"]["template"]["spec"]["containers"] + o["spec"]["template"]["spec"].get("initContainers", [])}
        if len(images) != 1 or "fanout-example-tasks" not in next(iter(images)):
            raise Failure(f"the overlay's images are {images}, not the example-tasks image the rehearsal stands in for")
        bin_dir = os.path.join(work, "image-bin")  # the image's /usr/local/bin
        os.makedirs(bin_dir)
        for name, path in (("fanout-broker", args.broker), ("fanout-worker", args.worker), ("fanout", args.tool)):
            os.symlink(os.path.abspath(path), os.path.join(bin_dir, name))
        image_env = {"FANOUT_LOAD": os.path.abspath(args.tasks)}
        kubelet_images = {next(iter(images)): Image([bin_dir], image_env),
                          "client": Image([], {})}
        kubelet = Kubelet(objects, work, kubelet_images, data, tag)
        kubelet.start()
        scenario(kubelet, os.path.abspath(args.client), key_dir, work)
        status = 0
    except Skip as skip:
        print(f"SKIP: {skip}")
        status = 77
    except Failure as failure:
        print(f"FAILED: {failure}")
    finally:
        if kubelet is not None:
            kubelet.stop()
            if status != 0 or os.environ.get("FANOUT_KEEP_LOGS"):
                for name in sorted(os.listdir(kubelet.logs)):
                    path = os.path.join(kubelet.logs, name)
                    if os.environ.get("FANOUT_KEEP_LOGS"):
                        shutil.copy(path, os.environ["FANOUT_KEEP_LOGS"])
                    if status == 1:
                        with open(path, errors="replace") as f:
                            print(f"== {name}\n" + "".join(f.readlines()[-40:]))
        shutil.rmtree(work, ignore_errors=True)
    left = leftovers(tag) + ([work] if os.path.exists(work) else [])
    if left and status != 77:
        print(f"FAILED: left behind: {left}")
        status = 1
    elapsed = time.monotonic() - began
    if status == 0:
        if elapsed > LIMIT:
            print(f"FAILED: the rehearsal took {elapsed:.0f} s, more than {LIMIT} s")
            return 1
        print(f"rehearsal: ok in {elapsed:.1f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
