# SPDX-License-Identifier: Apache-2.0
"""A meshsig cluster in network namespaces, for partition tests.

Every process runs in a network namespace of its own, created here and
deleted on close (with its veth pairs); nothing is routed outside them.

  backend 10.201.0.0/24: NATS nodes, coordinators, gateways, the test client.
    Their veth ends sit on bridge br0 in a hub namespace; partition() moves
    a node's end to bridge br1, so the nodes on br1 reach each other and no
    one else (TCP connections across stall, as in a real partition), and
    heal() moves it back.
  front 10.202.0.0/24 (bridge brf): gateways and the test client only, so a
    gateway cut off from NATS still reaches its clients.

The test process enters the client namespace (setns) for its own sockets.
Gateways use HS256 tokens (insecure dev mode binds loopback only), minted here.
Needs root and iproute2; iptables for impair().
"""
import base64
import ctypes
import hashlib
import hmac
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "deploy"))
from test_compose_topology import WsClient  # noqa: E402

SRC = os.environ.get("MESHSIG_SOURCE_DIR") or os.path.abspath(os.path.join(HERE, "..", ".."))
BUILD = os.environ.get("MESHSIG_BUILD_DIR") or os.path.join(SRC, "build")
JWT_SECRET = "partition-test-secret-0123456789"
ADMIN_TOKEN = "partition-test-admin"
CLONE_NEWNET = 0x40000000
NS_PREFIX = "msfault-"


def log(msg):
    print(f"[partition] {time.strftime('%H:%M:%S')} {msg}", flush=True)


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def token(peer, ns, ttl=3600):
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps({"sub": peer, "ns": ns, "exp": int(time.time()) + ttl}).encode())
    sig = hmac.new(JWT_SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(sig)}"


def nats_server():
    for p in ("/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"):
        if os.access(p, os.X_OK):
            return p
    return "nats-server"


def sweep_stale():
    """Namespaces left by an earlier run that was killed (its pid is gone)."""
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if not name.startswith(NS_PREFIX):
            continue
        pid = name[len(NS_PREFIX):].split("-")[0]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


class Lab:
    """Nodes are named; each gets a namespace, a backend address and, for
    gateways and the client, a front address."""

    def __init__(self, n_nats=3, coords=("c1", "c2"), gateways=("gw1", "gw2"), coord_args=(),
                 gw_args=()):
        sweep_stale()
        self.tag = f"{NS_PREFIX}{os.getpid()}"
        self.hub = f"{self.tag}-hub"
        self.dir = tempfile.mkdtemp(prefix="meshsig-partition-")
        self.nodes = {}  # name -> {"ns", "k", "ip", "front"}
        self.procs = {}  # name -> Popen
        self.argv = {}
        self.namespaces = []
        self.nats = [f"nats{i}" for i in range(n_nats)]
        self.coords = list(coords)
        self.gateways = list(gateways)
        self.coord_args = list(coord_args)
        self.gw_args = list(gw_args)
        self._root_ns = os.open("/proc/self/ns/net", os.O_RDONLY)
        self._libc = ctypes.CDLL("libc.so.6", use_errno=True)
        self._netns("add", self.hub)
        self._ip("-n", self.hub, "link", "set", "lo", "up")
        for br in ("br0", "br1", "brf"):
            self._ip("-n", self.hub, "link", "add", br, "type", "bridge")
            self._ip("-n", self.hub, "link", "set", br, "up")
        k = 0
        for name in self.nats + self.coords + self.gateways + ["cli"]:
            k += 1
            self._add_node(name, k, front=name in self.gateways or name == "cli")
        self.nats_urls = ",".join(f"nats://{self.nodes[n]['ip']}:4222" for n in self.nats)

    # ---- plumbing ---------------------------------------------------------
    def _ip(self, *args):
        r = subprocess.run(["ip", *args], capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")

    def _netns(self, op, name):
        self._ip("netns", op, name)
        if op == "add":
            self.namespaces.append(name)

    def _add_node(self, name, k, front):
        ns = f"{self.tag}-{name}"
        self._netns("add", ns)
        self._ip("-n", ns, "link", "set", "lo", "up")
        node = {"ns": ns, "k": k, "ip": f"10.201.0.{k}", "front": None}
        self._ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", f"v{k}",
                 "netns", self.hub)
        self._ip("-n", ns, "addr", "add", f"{node['ip']}/24", "dev", "eth0")
        self._ip("-n", ns, "link", "set", "eth0", "up")
        self._ip("-n", self.hub, "link", "set", f"v{k}", "master", "br0")
        self._ip("-n", self.hub, "link", "set", f"v{k}", "up")
        if front:
            node["front"] = f"10.202.0.{k}"
            self._ip("link", "add", "eth1", "netns", ns, "type", "veth", "peer", "name", f"f{k}",
                     "netns", self.hub)
            self._ip("-n", ns, "addr", "add", f"{node['front']}/24", "dev", "eth1")
            self._ip("-n", ns, "link", "set", "eth1", "up")
            self._ip("-n", self.hub, "link", "set", f"f{k}", "master", "brf")
            self._ip("-n", self.hub, "link", "set", f"f{k}", "up")
        self.nodes[name] = node

    def enter_client(self):
        """This thread's sockets from now on live in the client namespace."""
        fd = os.open(f"/run/netns/{self.nodes['cli']['ns']}", os.O_RDONLY)
        try:
            if self._libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns")
        finally:
            os.close(fd)

    def leave_client(self):
        self._libc.setns(self._root_ns, CLONE_NEWNET)

    # ---- processes --------------------------------------------------------
    def spawn(self, name, argv, node=None):
        ns = self.nodes[node or name]["ns"]
        logf = open(os.path.join(self.dir, f"{name}.log"), "ab")
        self.argv[name] = (argv, node or name)
        self.procs[name] = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=logf,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        logf.close()
        return self.procs[name]

    def start(self):
        for i, n in enumerate(self.nats):
            ip = self.nodes[n]["ip"]
            routes = ",".join(f"nats://{self.nodes[m]['ip']}:6222" for m in self.nats if m != n)
            self.spawn(n, [nats_server(), "-a", ip, "-p", "4222", "-m", "8222", "-js", "-sd",
                           os.path.join(self.dir, f"js-{n}"), "-n", n, "--cluster_name",
                           "meshsig-partition", "--cluster", f"nats://{ip}:6222", "--routes",
                           routes])
        self.wait(lambda: all(self.nats_js_ready(n) for n in self.nats), 30, "JetStream leader")
        for c in self.coords:
            self.spawn(c, [os.path.join(BUILD, "coordinator/meshsig-coordinator"), "--nats",
                           self.nats_urls, "--id", c, "--admin-listen",
                           f"{self.nodes[c]['ip']}:8081", "--admin-token", ADMIN_TOKEN,
                           "--js-replicas", "3", *self.coord_args])
        for g in self.gateways:
            self.start_gateway(g)
        self.wait(lambda: all(self.admin(c, "/readyz")[0] == 200 for c in self.coords), 30,
                  "coordinators ready")
        self.wait(lambda: self.all_shards_served(), 30, "every shard served")
        # All served is not yet all spread: the first coordinator up holds
        # everything until the others' heartbeats move their share.
        self.wait(lambda: all(self.serving(c) for c in self.coords), 30,
                  "shards on every coordinator")
        self.wait(lambda: all(self.gw_health(g) == 200 for g in self.gateways), 30,
                  "gateways healthy")

    def start_gateway(self, g, nats_urls=None):
        self.spawn(g, [os.path.join(BUILD, "gateway/meshsig-gateway"), "--nats",
                       nats_urls or self.nats_urls, "--id", g, "--listen", "0.0.0.0:8080",
                       "--jwt-secret", JWT_SECRET, *self.gw_args])

    def close(self, ok):
        self.leave_client()
        for name, p in self.procs.items():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        deadline = t0 + 10
        for name, p in self.procs.items():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log(f"{name} still running 10 s after SIGTERM: killed")
                p.kill()
                p.wait(5)
            if time.monotonic() - t0 > 3:
                log(f"{name} stopped {time.monotonic() - t0:.1f}s after SIGTERM")
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        left = [ns for ns in self.namespaces
                if os.path.exists(f"/run/netns/{ns}")]
        if ok and not left and not os.environ.get("MESHSIG_KEEP_LOGS"):
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            self.dump_logs()
            print(f"logs kept in {self.dir}", flush=True)
        return not left

    def dump_logs(self, lines=25):
        for name in sorted(os.listdir(self.dir)):
            if name.endswith(".log"):
                with open(os.path.join(self.dir, name), errors="replace") as f:
                    tail = f.read().splitlines()[-lines:]
                print(f"--- {name} (last lines)\n" + "\n".join(tail), flush=True)

    def logtext(self, name):
        with open(os.path.join(self.dir, f"{name}.log"), errors="replace") as f:
            return f.read()

    # ---- the network ------------------------------------------------------
    def partition(self, *names):
        """Moves the backend link of each node to the other side (br1)."""
        for n in names:
            self._ip("-n", self.hub, "link", "set", f"v{self.nodes[n]['k']}", "master", "br1")

    def heal(self, *names):
        for n in names:
            self._ip("-n", self.hub, "link", "set", f"v{self.nodes[n]['k']}", "master", "br0")

    def iptables(self, node, *args):
        r = subprocess.run(["ip", "netns", "exec", self.nodes[node]["ns"], "iptables", *args],
                           capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"iptables {' '.join(args)}: {r.stderr.strip()}")

    # ---- HTTP (from the client namespace) ---------------------------------
    def http(self, host, port, path, token_=None):
        req = urllib.request.Request(f"http://{host}:{port}{path}")
        if token_:
            req.add_header("Authorization", f"Bearer {token_}")
        try:
            with urllib.request.urlopen(req, timeout=3) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (urllib.error.URLError, OSError):
            return -1, b""

    def admin(self, c, path):
        code, body = self.http(self.nodes[c]["ip"], 8081, path, ADMIN_TOKEN)
        try:
            return code, json.loads(body) if code == 200 and body[:1] in (b"{", b"[") else None
        except ValueError:
            return code, None

    def gw_health(self, g):
        return self.http(self.nodes[g]["front"], 8080, "/healthz")[0]

    def gw_metrics(self, g):
        code, body = self.http(self.nodes[g]["front"], 8080, "/metrics")
        return body.decode(errors="replace") if code == 200 else ""

    def nats_js_ready(self, n):
        code, body = self.http(self.nodes[n]["ip"], 8222, "/jsz")
        try:
            return code == 200 and bool(json.loads(body).get("meta_cluster", {}).get("leader"))
        except ValueError:
            return False

    def nats_connections(self, n):
        code, body = self.http(self.nodes[n]["ip"], 8222, "/connz")
        try:
            return json.loads(body).get("num_connections", -1) if code == 200 else -1
        except ValueError:
            return -1

    def shard_owners(self, via):
        """shard -> (owner, epoch) from one coordinator's /v1/cluster."""
        code, j = self.admin(via, "/v1/cluster")
        out = {}
        for s in (j or {}).get("shards", []):
            if s.get("owner"):
                out[s["shard"]] = (s["owner"], s.get("epoch"))
        return out

    def serving(self, c):
        """shard -> epoch that coordinator c itself serves."""
        code, j = self.admin(c, "/v1/cluster")
        return {s["shard"]: s.get("epoch") for s in (j or {}).get("shards", [])
                if s.get("here") == "serving"}

    def all_shards_served(self, coords=None):
        seen = {}
        for c in coords or self.coords:
            for sh, ep in self.serving(c).items():
                if sh in seen:
                    raise AssertionError(f"shard {sh} served by {seen[sh]} and {c}")
                seen[sh] = c
        return len(seen) == 64

    @staticmethod
    def wait(pred, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def shard_of(ns, shards=64):
    h = 0xcbf29ce484222325
    for ch in ns.encode():
        h ^= ch
        h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h % shards


class Peer:
    """A client session that follows `reconnect` and resumes with its token."""

    def __init__(self, lab, gw, ns, peer, timeout=20.0):
        self.lab, self.ns, self.id = lab, ns, peer
        self.resume = None
        self.events = []  # every message received, in order
        self.gw = None
        self.ws = None
        self.connect(gw, timeout=timeout)

    # The gateway answers every hello: a welcome, or an error (UNAVAILABLE at its own join
    # deadline, --join-timeout-ms, 5 s by default). A hello is given up on only if that answer
    # does not come at all (a starved gateway); giving up on the test's own 5 s clock raced the
    # gateway's 5 s deadline under load: a welcome on its way was dropped with the connection,
    # and the next hello, on a new connection, could reach the owner before that session's leave
    # (ID_TAKEN) and spend another 5 s.
    ANSWER_S = 30.0

    def connect(self, gw, resume=False, timeout=20.0):
        """Hellos until one is welcomed; a new one is started until timeout has passed."""
        deadline = time.monotonic() + timeout
        tries = []  # what each attempt got, and after how long: the failure says
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            try:
                ws = WsClient(8080, host=self.lab.nodes[gw]["front"], timeout=5)
            except OSError as e:
                tries.append(f"{time.monotonic() - t0:.1f}s: {e!r}")
                time.sleep(0.2)
                continue
            hello = {"namespace": self.ns, "peerId": self.id, "token": token(self.id, self.ns)}
            if resume and self.resume:
                hello["resumeToken"] = self.resume
            ws.send_json({"id": "hello", "hello": hello})
            try:
                m = ws.wait_for(lambda m: "welcome" in m or "error" in m, f"welcome {self.id}",
                                self.ANSWER_S)
            except (AssertionError, OSError) as e:
                m = {"error": repr(e)}
            if "welcome" in m:
                self.ws, self.gw = ws, gw
                self.resume = m["welcome"].get("resumeToken") or self.resume
                return m["welcome"]
            tries.append(f"{time.monotonic() - t0:.1f}s: {m}")
            ws.close()
            time.sleep(0.3)
        raise AssertionError(f"{self.id}: no welcome from {gw} in {len(tries)} hellos: {tries}")

    def recv(self, timeout):
        """The next message (None on timeout); a closed socket raises."""
        try:
            m = self.ws.recv_json(timeout)
        except TimeoutError:
            return None
        self.events.append(m)
        return m

    def pump(self, seconds):
        end = time.monotonic() + seconds
        out = []
        while time.monotonic() < end:
            m = self.recv(max(0.01, end - time.monotonic()))
            if m is not None:
                out.append(m)
        return out

    def send(self, obj):
        self.ws.send_json(obj)

    def close(self):
        if self.ws:
            self.ws.close()


def churn(events, allowed_peers=()):
    """Topology disconnects and peerLeft notices among events (what a neighbour
    would see as a lost peer); connects to allowed_peers are expected."""
    bad = []
    for m in events:
        t = m.get("topology", {})
        if "disconnect" in t or "peerLeft" in m:
            bad.append(m)
        elif "connect" in t and t["connect"].get("peer") not in allowed_peers:
            bad.append(m)
    return bad
