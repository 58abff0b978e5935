"""kubelet.py: a small kubelet for the deployment rehearsal (rehearsal_test.py).

It runs what rendered Kubernetes objects say, the way a kubelet and the workload controllers would,
on this machine, with no container runtime and no API server:

- A pod is a network namespace of its own with one veth link to a bridge (in a switch namespace
  of its own) and a private address; the harness itself joins a "node" namespace on the same
  bridge, so its probes reach pods the way the kubelet's do, from the node's address. Nothing
  touches the machine's own namespace but the veth pairs' creation.
- A container is its command (or the image's entrypoint) and args, run directly from this build
  (an Image says which binaries and environment an image name stands for), as the pod's
  runAsUser/runAsGroup with fsGroup as a supplementary group (setpriv), in the pod's namespace.
  Its volumes are directories under the pod's own directory, and every argument, command word or
  env value under a volume's mountPath is rewritten to that directory (the programs run on the
  node's root filesystem, so a mountPath such as /etc/fanout/workers cannot be mounted where it
  says without touching the node's /etc).
- Names: the headless Services resolve through /etc/hosts, bind-mounted in each pod's own mount
  namespace (`ip netns exec` makes one per process) from one file this kubelet rewrites in place
  whenever a selected pod turns ready or starts terminating, as cluster DNS serves a headless
  Service's ready endpoints. A pod restarted elsewhere gets a new address, and clients re-resolve.
- Volumes: Secret and ConfigMap keys as files with the volume's defaultMode, owned by root and the
  pod's fsGroup (the kubelet adds group read for fsGroup, so a 0400 Secret is 0440 root:fsGroup,
  which is why the manifests' init container copies the key); emptyDir a fresh directory per pod;
  a StatefulSet's volumeClaimTemplates one directory per claim and pod name that outlives the pod.
- Probes: startup, then readiness and liveness, each on its own period from the container's start
  (readiness also at once when the startup probe passes, as the kubelet triggers it then),
  httpGet on the named port and path with timeoutSeconds, successThreshold 1 and the manifest's
  failureThreshold; a pod counts as ready only once its readiness probe answered 2xx/3xx. A probe
  failure that would make the kubelet restart a container, and a container that exits while its
  pod is not terminating, are recorded as events (a rehearsal wants none of them).
- Termination: SIGTERM to the container's process, terminationGracePeriodSeconds, then SIGKILL;
  then every process still in the pod's namespace counts as left behind (recorded and killed).

Not modelled: NetworkPolicies (every pod reaches every other), resource limits, read-only mounts,
container restarts (recorded instead).
"""
import ctypes
import http.client
import os
import random
import signal
import string
import subprocess
import threading
import time

CLONE_NEWNET = 0x40000000


class Skip(Exception):
    """The machine cannot run the rehearsal (no namespaces, a tool missing): the test skips."""


class Failure(Exception):
    """The rehearsal saw something a real cluster would make an operator look at."""


def run(*argv, check=True):
    result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if check and result.returncode != 0:
        raise Failure(f"{' '.join(argv)} exited {result.returncode}: {result.stderr.strip()}")
    return result.stdout


class Network:
    """The switch (a bridge in a namespace of its own), the node the harness joins, and one
    namespace per pod, all named after `tag` so that cleanup finds every one of them."""

    def __init__(self, tag):
        self.tag = tag
        self.subnet = f"10.214.{os.getpid() % 200}"
        self.switch = f"{tag}-sw"
        self.numbers = 0
        self.namespaces = []

    def create(self):
        if subprocess.run(["ip", "netns", "add", self.switch], stderr=subprocess.DEVNULL).returncode != 0:
            raise Skip("cannot create network namespaces here (needs root and iproute2)")
        self.namespaces.append(self.switch)
        run("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.switch, "link", "set", "br0", "up")
        run("ip", "-n", self.switch, "link", "set", "lo", "up")

    def add_host(self, name):
        """A namespace `tag-name` linked to the bridge; returns (namespace, address)."""
        self.numbers += 1
        number = self.numbers
        if number > 250:
            raise Failure("more than 250 hosts on one rehearsal subnet")
        namespace, inside, outside = f"{self.tag}-{name}", f"{self.tag}h{number}", f"{self.tag}s{number}"
        address = f"{self.subnet}.{number}"
        run("ip", "netns", "add", namespace)
        self.namespaces.append(namespace)
        run("ip", "link", "add", inside, "type", "veth", "peer", "name", outside)
        run("ip", "link", "set", inside, "netns", namespace)
        run("ip", "link", "set", outside, "netns", self.switch)
        run("ip", "-n", self.switch, "link", "set", outside, "master", "br0", "up")
        run("ip", "-n", namespace, "addr", "add", f"{address}/24", "dev", inside)
        run("ip", "-n", namespace, "link", "set", "lo", "up")
        run("ip", "-n", namespace, "link", "set", inside, "up")
        return namespace, address

    @staticmethod
    def join(namespace):
        """Moves the calling thread (before any other thread exists: the whole harness) into it."""
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise Failure(f"setns({namespace}): {os.strerror(ctypes.get_errno())}")
        finally:
            os.close(fd)

    @staticmethod
    def pids(namespace):
        out = subprocess.run(["ip", "netns", "pids", namespace], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True).stdout
        return [int(pid) for pid in out.split()]

    def remove(self, namespace):
        for pid in self.pids(namespace):
            if pid == os.getpid():
                continue  # the harness, in the node's namespace
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "del", namespace], stderr=subprocess.DEVNULL)
        if namespace in self.namespaces:
            self.namespaces.remove(namespace)

    def cleanup(self):
        for namespace in reversed(list(self.namespaces)):
            self.remove(namespace)


class Image:
    """What an image name stands for here: directories put first on PATH (its binaries) and the
    environment its configuration sets (ENV), the entrypoint's wrapper (tini) left out."""

    def __init__(self, path_dirs, env):
        self.path_dirs = path_dirs
        self.env = env


def command_line(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


class Container:
    """A container's process and its probes."""

    def __init__(self, pod, spec):
        self.pod = pod
        self.spec = spec
        self.name = spec["name"]
        self.process = None
        self.started_at = None
        self.started = False  # the startup probe passed (or there is none)
        self.ready = False
        self.stop_probing = threading.Event()
        self.prober = None

    def start(self, log):
        self.process = self.pod.spawn(self.spec, log)
        self.started_at = time.monotonic()
        self.prober = threading.Thread(target=self.probe_loop, daemon=True)
        self.prober.start()

    # ---- probes, as the kubelet's probe workers run them ----

    def probe_once(self, probe):
        get = probe.get("httpGet")
        if get is None:
            raise Failure(f"{self.pod.name}/{self.name}: only httpGet probes are rehearsed")
        port = get["port"]
        if isinstance(port, str):
            named = [p["containerPort"] for p in self.spec.get("ports", []) if p.get("name") == port]
            if not named:
                raise Failure(f"{self.pod.name}/{self.name}: a probe names port {port!r}, which the container lacks")
            port = named[0]
        try:
            connection = http.client.HTTPConnection(self.pod.address, port, timeout=probe.get("timeoutSeconds", 1))
            connection.request("GET", get.get("path", "/"))
            status = connection.getresponse().status
            connection.close()
            return 200 <= status < 400
        except (OSError, http.client.HTTPException):
            return False

    def probe_loop(self):
        probes = {kind: self.spec[kind] for kind in ("startupProbe", "readinessProbe", "livenessProbe") if kind in self.spec}
        self.started = "startupProbe" not in probes
        if "readinessProbe" not in probes:
            self.ready = True
            self.pod.kubelet.on_readiness(self.pod)
        due = {kind: self.started_at + probe.get("initialDelaySeconds", 0) for kind, probe in probes.items()}
        failures = {kind: 0 for kind in probes}
        while not self.stop_probing.is_set():
            now = time.monotonic()
            for kind, probe in probes.items():
                if now < due[kind] or self.stop_probing.is_set():
                    continue
                due[kind] += probe.get("periodSeconds", 10)
                if kind == "startupProbe" and self.started:
                    continue
                if kind != "startupProbe" and not self.started:
                    continue  # readiness and liveness wait for the startup probe
                ok = self.probe_once(probe)
                failures[kind] = 0 if ok else failures[kind] + 1
                threshold = probe.get("failureThreshold", 3)
                if kind == "startupProbe":
                    if ok:
                        self.started = True
                        self.pod.kubelet.event(self.pod, f"{self.name}: started after {now - self.started_at:.1f} s")
                        # The kubelet's status update triggers a readiness probe at once for a
                        # started container whose readiness is not known yet.
                        if "readinessProbe" in due:
                            due["readinessProbe"] = now
                    elif failures[kind] >= threshold:
                        self.pod.kubelet.event(self.pod, f"{self.name}: startup probe failed {threshold} times: "
                                               "the kubelet would restart it", problem=True)
                elif kind == "readinessProbe":
                    ready = ok or (self.ready and failures[kind] < threshold)
                    if ready != self.ready:
                        self.ready = ready
                        self.pod.kubelet.event(self.pod, f"{self.name}: {'ready' if ready else 'not ready'} "
                                               f"at {now - self.started_at:.1f} s")
                        self.pod.kubelet.on_readiness(self.pod)
                elif kind == "livenessProbe" and failures[kind] >= threshold:
                    failures[kind] = 0
                    self.pod.kubelet.event(self.pod, f"{self.name}: liveness probe failed {threshold} times: "
                                           "the kubelet would restart it", problem=True)
            if self.process.poll() is not None and not self.pod.terminating:
                self.pod.kubelet.event(self.pod, f"{self.name}: exited {self.process.returncode} on its own",
                                       problem=True)
                self.ready = False
                self.pod.kubelet.on_readiness(self.pod)
                return
            self.stop_probing.wait(0.05)


class Pod:
    def __init__(self, kubelet, name, spec, labels, claims=None):
        self.kubelet = kubelet
        self.name = name
        self.spec = spec
        self.labels = labels
        self.claims = claims or {}  # volume name -> directory that outlives the pod
        self.dir = os.path.join(kubelet.work, "pods", name + "-" + "".join(random.choices(string.ascii_lowercase, k=4)))
        self.namespace = None
        self.address = None
        self.volumes = {}
        self.containers = []
        self.terminating = False
        self.termination = None
        security = spec.get("securityContext", {})
        self.uid = security.get("runAsUser")
        self.gid = security.get("runAsGroup", self.uid)
        self.fs_group = security.get("fsGroup")
        if security.get("runAsNonRoot") and self.uid in (None, 0):
            raise Failure(f"{name}: runAsNonRoot without a non-root runAsUser would not start")

    @property
    def ready(self):
        return not self.terminating and bool(self.containers) and all(c.ready for c in self.containers)

    # ---- volumes ----

    def own(self, path, mode):
        os.chmod(path, mode)
        if self.fs_group is not None:
            os.chown(path, 0, self.fs_group)

    def make_volumes(self):
        for volume in self.spec.get("volumes", []):
            name = volume["name"]
            if name in self.claims:
                path = self.claims[name]
            else:
                path = os.path.join(self.dir, "volumes", name)
                os.makedirs(path)
            if "secret" in volume or "configMap" in volume:
                source = volume.get("secret") or volume.get("configMap")
                object_name = source.get("secretName") or source.get("name")
                kind = "Secret" if "secret" in volume else "ConfigMap"
                files = self.kubelet.data.get((kind, object_name))
                if files is None:
                    raise Failure(f"{self.name}: {kind} {object_name} does not exist (kubectl create {kind.lower()} ...)")
                mode = source.get("defaultMode", 0o644)
                if self.fs_group is not None:
                    mode |= 0o040  # the kubelet lets fsGroup read what it owns
                for file_name, content in files.items():
                    file_path = os.path.join(path, file_name)
                    with open(file_path, "wb") as f:
                        f.write(content)
                    self.own(file_path, mode)
                self.own(path, 0o755)
            elif "emptyDir" in volume:
                os.chmod(path, 0o777)
            elif "persistentVolumeClaim" in volume or name in self.claims:
                if name not in self.claims:
                    raise Failure(f"{self.name}: volume {name}: only a StatefulSet's claims are rehearsed")
                # fsGroup on a volume: group-owned, group-writable, setgid.
                self.own(path, 0o2775)
            else:
                raise Failure(f"{self.name}: volume {name}: only secret, configMap, emptyDir and claims are rehearsed")
            self.volumes[name] = path

    def rewrite(self, spec, text):
        """`text` with a volume's mountPath prefix replaced by that volume's directory."""
        mounts = sorted(spec.get("volumeMounts", []), key=lambda m: -len(m["mountPath"]))
        for mount in mounts:
            path = mount["mountPath"].rstrip("/")
            if text == path or text.startswith(path + "/"):
                source = self.volumes[mount["name"]]
                if "subPath" in mount:
                    source = os.path.join(source, mount["subPath"])
                return source + text[len(path):]
        return text

    # ---- processes ----

    def spawn(self, spec, log, argv=None, extra_env=None):
        image = self.kubelet.images.get(spec.get("image"))
        if image is None:
            raise Failure(f"{self.name}/{spec['name']}: image {spec.get('image')!r} is not one the rehearsal knows")
        if argv is None:
            argv = list(spec.get("command", [])) + list(spec.get("args", []))
        argv = [self.rewrite(spec, str(word)) for word in argv]
        env = {"PATH": ":".join(image.path_dirs + ["/usr/local/bin", "/usr/bin", "/bin"]), "HOSTNAME": self.name}
        env.update(image.env)
        for variable in spec.get("env", []):
            if "value" not in variable:
                raise Failure(f"{self.name}/{spec['name']}: env {variable['name']}: only plain values are rehearsed")
            env[variable["name"]] = self.rewrite(spec, str(variable["value"]))
        env.update(extra_env or {})
        security = dict(self.spec.get("securityContext", {}))
        security.update({k: v for k, v in spec.get("securityContext", {}).items() if k in ("runAsUser", "runAsGroup")})
        user = []
        if security.get("runAsUser") is not None:
            uid = security["runAsUser"]
            gid = security.get("runAsGroup", uid)
            groups = f"--groups={self.fs_group}" if self.fs_group is not None else "--clear-groups"
            user = ["setpriv", f"--reuid={uid}", f"--regid={gid}", groups, "--"]
        # ip netns exec gives the process a mount namespace of its own (slave to the node's), in
        # which the cluster's hosts file goes over /etc/hosts; then exec, so that the pid is the
        # program's, as a container's main process is.
        prelude = 'mount --bind "$1" /etc/hosts || exit 111; shift; exec "$@"'
        return subprocess.Popen(["ip", "netns", "exec", self.namespace, "sh", "-c", prelude, "sh",
                                 self.kubelet.hosts_file] + user + argv,
                                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def log(self, container_name):
        return open(os.path.join(self.kubelet.logs, f"{self.name}-{container_name}.out"), "a")

    def start(self):
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o755)
        self.namespace, self.address = self.kubelet.network.add_host(f"p{self.kubelet.next_pod_number()}")
        self.make_volumes()
        for spec in self.spec.get("initContainers", []):
            with self.log(spec["name"]) as log:
                process = self.spawn(spec, log)
                try:
                    code = process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    raise Failure(f"{self.name}: init container {spec['name']} did not finish in 30 s")
            if code != 0:
                raise Failure(f"{self.name}: init container {spec['name']} exited {code} "
                              f"({self.kubelet.logs}/{self.name}-{spec['name']}.out)")
        for spec in self.spec.get("containers", []):
            container = Container(self, spec)
            self.containers.append(container)
            container.start(self.log(spec["name"]))
        self.kubelet.event(self, f"started at {self.address} in {self.namespace}")

    def exec(self, image, argv, env, log):
        """Like `kubectl exec`: a process of IMAGE in this pod's network, with its names."""
        return self.spawn({"name": "exec", "image": image}, log, argv=argv, extra_env=env)

    def terminate(self, grace=None):
        """SIGTERM, the grace period, SIGKILL; then what is left in the namespace is killed and
        recorded. Returns (and keeps) the termination: per container exit status, seconds it took,
        whether SIGKILL was needed, processes left behind."""
        self.terminating = True
        self.kubelet.on_readiness(self)
        if grace is None:
            grace = self.spec.get("terminationGracePeriodSeconds", 30)
        began = time.monotonic()
        for container in self.containers:
            container.stop_probing.set()
            if container.process.poll() is None:
                container.process.send_signal(signal.SIGTERM)
        killed = False
        for container in self.containers:
            try:
                container.process.wait(timeout=max(0.0, began + grace - time.monotonic()))
            except subprocess.TimeoutExpired:
                killed = True
                container.process.kill()
                container.process.wait()
        took = time.monotonic() - began
        # What the pod's processes leave behind after its containers ended: given 5 s to go.
        left = []
        deadline = time.monotonic() + 5
        while True:
            left = self.kubelet.network.pids(self.namespace)
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        leftovers = [f"{pid} {command_line(pid)}" for pid in left]
        self.kubelet.network.remove(self.namespace)
        self.termination = {
            "codes": {c.name: c.process.returncode for c in self.containers},
            "seconds": took,
            "killed": killed,
            "leftovers": leftovers,
        }
        self.kubelet.event(self, f"terminated in {took:.1f} s: exit {self.termination['codes']}"
                           f"{', SIGKILL after the grace period' if killed else ''}"
                           f"{', left behind: ' + '; '.join(leftovers) if leftovers else ''}",
                           problem=killed or bool(leftovers))
        return self.termination


class Kubelet:
    """The node: pods from rendered objects, the cluster's names, the events worth reading."""

    def __init__(self, objects, work, images, data, tag):
        self.objects = objects
        self.work = work
        self.logs = os.path.join(work, "logs")
        self.images = images
        self.data = data  # (kind, name) -> {file name: bytes}: the Secrets and ConfigMaps
        self.network = Network(tag)
        self.pods = []
        self.claims_dir = os.path.join(work, "claims")
        self.hosts_file = os.path.join(work, "hosts")
        self.lock = threading.Lock()
        self.events = []
        self.began = time.monotonic()
        self.pod_numbers = 0
        os.makedirs(self.logs)
        os.makedirs(self.claims_dir)
        with open(self.hosts_file, "w") as f:
            f.write("127.0.0.1 localhost\n")
        os.chmod(self.hosts_file, 0o644)

    def start(self):
        self.network.create()
        namespace, self.node_address = self.network.add_host("node")
        Network.join(namespace)

    def stop(self):
        for pod in self.pods:
            for container in pod.containers:
                container.stop_probing.set()
                if container.process and container.process.poll() is None:
                    container.process.kill()
        self.network.cleanup()

    def next_pod_number(self):
        with self.lock:
            self.pod_numbers += 1
            return self.pod_numbers

    def event(self, pod, text, problem=False):
        with self.lock:
            line = f"{time.monotonic() - self.began:6.1f} s  {pod.name if pod else '-'}: {text}"
            self.events.append((problem, line))
            print(line, flush=True)

    def problems(self):
        with self.lock:
            return [line for problem, line in self.events if problem]

    def find(self, kind, name):
        for obj in self.objects:
            if obj["kind"] == kind and obj["metadata"]["name"] == name:
                return obj
        raise Failure(f"no {kind} {name} in the rendered objects")

    # ---- names: headless Services resolve to their ready pods ----

    def on_readiness(self, _pod):
        lines = ["127.0.0.1 localhost"]
        with self.lock:
            pods = [p for p in self.pods if p.ready]
        for service in (o for o in self.objects if o["kind"] == "Service"):
            if service["spec"].get("clusterIP") != "None":
                raise Failure(f"Service {service['metadata']['name']}: only headless Services are rehearsed")
            name = service["metadata"]["name"]
            namespace = service["metadata"].get("namespace", "default")
            selector = service["spec"].get("selector", {})
            service_names = [f"{name}.{namespace}.svc.cluster.local", f"{name}.{namespace}.svc", f"{name}.{namespace}", name]
            for pod in pods:
                if all(pod.labels.get(k) == v for k, v in selector.items()):
                    # A StatefulSet's pods also get their own name under the Service.
                    own = [f"{pod.name}.{name}.{namespace}.svc.cluster.local", f"{pod.name}.{name}"] \
                        if pod.spec.get("subdomain") == name else []
                    lines.append(" ".join([pod.address] + own + service_names))
        with open(self.hosts_file, "r+") as f:  # in place: every pod's bind mount sees this inode
            f.write("\n".join(lines) + "\n")
            f.truncate()

    # ---- controllers ----

    def add_pod(self, name, template, claims=None):
        spec = dict(template["spec"])
        pod = Pod(self, name, spec, template["metadata"].get("labels", {}), claims)
        with self.lock:
            self.pods.append(pod)
        pod.start()
        return pod

    def forget(self, pod):
        with self.lock:
            if pod in self.pods:
                self.pods.remove(pod)

    def stateful_pod(self, name, ordinal=0):
        """Pod ORDINAL of StatefulSet NAME, with its claims (kept across pods of that name)."""
        statefulset = self.find("StatefulSet", name)
        template = statefulset["spec"]["template"]
        pod_name = f"{name}-{ordinal}"
        claims = {}
        for claim in statefulset["spec"].get("volumeClaimTemplates", []):
            claim_name = claim["metadata"]["name"]
            path = os.path.join(self.claims_dir, f"{claim_name}-{pod_name}")
            os.makedirs(path, exist_ok=True)
            claims[claim_name] = path
        template = {"metadata": template["metadata"],
                    "spec": dict(template["spec"], hostname=pod_name, subdomain=statefulset["spec"]["serviceName"])}
        # A claim is a volume of the pod named after its template.
        template["spec"]["volumes"] = list(template["spec"].get("volumes", [])) + \
            [{"name": c, "persistentVolumeClaim": {"claimName": f"{c}-{pod_name}"}} for c in claims]
        return self.add_pod(pod_name, template, claims)

    def deployment_pods(self, name):
        with self.lock:
            return [p for p in self.pods if p.name.startswith(name + "-") and not p.terminating]

    def scale(self, name, replicas):
        """Deployment NAME to REPLICAS pods: new ones started, or the newest SIGTERMed at once
        (all together, as the ReplicaSet controller deletes them) and waited for. Returns the
        terminated pods."""
        deployment = self.find("Deployment", name)
        pods = self.deployment_pods(name)
        for _ in range(replicas - len(pods)):
            suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
            self.add_pod(f"{name}-{suffix}", deployment["spec"]["template"])
        going = list(reversed(pods))[:max(0, len(pods) - replicas)]
        self.delete(going)
        return going

    def delete(self, pods):
        threads = [threading.Thread(target=pod.terminate) for pod in pods]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for pod in pods:
            self.forget(pod)

    def wait_ready(self, pods, limit):
        deadline = time.monotonic() + limit
        while not all(p.ready for p in pods):
            if time.monotonic() > deadline:
                raise Failure(f"not ready within {limit} s: {', '.join(p.name for p in pods if not p.ready)}")
            if self.problems():
                raise Failure(f"while waiting for pods to be ready: {self.problems()[-1]}")
            time.sleep(0.05)
