#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Fault test for `deploy/dev-cluster` as the place to try failover locally.

Starts `dev-cluster --nats 3 --coordinators 2 --gateways 2` on free loopback
ports and checks:
  * with 3 NATS nodes the lease and policy buckets and the offline stream have
    3 replicas (the coordinators get --js-replicas 3);
  * kill -9 of a gateway: dev-cluster reports it and keeps every other process
    running; the other gateway still serves (a new peer joins next to a peer
    that was there, signals flow both ways) and the mesh the admin API (the
    mesh page's source) shows keeps that edge;
  * kill -9 of a coordinator: the other takes its shards, and the namespace
    still serves and is shown;
  * SIGINT to dev-cluster (Ctrl-C) stops everything: exit code 0, no process
    it started is left.
Standard library only; every wait is bounded; whatever happens, nothing it
started survives the test.

Environment: MESHSIG_BUILD_DIR (binaries), MESHSIG_SOURCE_DIR (repository;
default: two levels up from this file).
"""
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ports import free_base_port  # noqa: E402
from test_compose_topology import WsClient, alive, http_get  # noqa: E402

SRC = os.environ.get("MESHSIG_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("MESHSIG_BUILD_DIR") or os.path.join(SRC, "build")
PORT_SPAN = 130  # with --base-port P: gateways and admin P..P+20, NATS P+100..P+122
START_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0


def log(msg):
    print(f"[dev-cluster] {msg}", flush=True)


class DevCluster:
    def __init__(self, base):
        self.base = base
        self.run_dir = tempfile.mkdtemp(prefix="meshsig-dev-cluster-")
        self.lines = []
        self.lock = threading.Lock()
        self.pids = []
        self.pid_of = {}  # "gw-1", "coord-2", "nats-0" -> pid
        self.ready = threading.Event()
        cmd = [os.path.join(SRC, "deploy", "dev-cluster"), "--no-build", "--base-port", str(base),
               "--nats", "3", "--coordinators", "2", "--gateways", "2",
               "--build-dir", BUILD, "--run-dir", self.run_dir]
        log("starting: " + " ".join(cmd))
        # Its own session: a signal to the test's process group does not reach
        # it, and the SIGINT below goes to dev-cluster alone, as the terminal's
        # Ctrl-C would reach it first.
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, text=True,
                                     start_new_session=True)
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self):
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            with self.lock:
                self.lines.append(line)
            print("  | " + line, flush=True)
            m = re.match(r"\s+((?:gw|coord|nats)-\d+)\s.*\bpid (\d+)$", line)
            if m:
                self.pid_of[m.group(1)] = int(m.group(2))
            if line.startswith("dev-cluster: pids "):
                self.pids = [int(p) for p in line.split()[2:]]
                self.ready.set()
        self.ready.set()

    def wait_ready(self):
        if not self.ready.wait(START_TIMEOUT) or not self.pids:
            raise AssertionError("dev-cluster did not come up; output above, logs in "
                                 + self.run_dir)

    def wait_line(self, pattern, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for line in self.lines:
                    if re.search(pattern, line):
                        return line
            time.sleep(0.05)
        raise AssertionError(f"dev-cluster never printed /{pattern}/")

    def interrupt(self):
        """SIGINT to dev-cluster alone (Ctrl-C); returns its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            return None

    def force_cleanup(self):
        """Last resort, whatever happened: nothing it started may survive the test."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(5)
        for pid in self.pids:
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def dump_logs(self):
        for name in sorted(os.listdir(self.run_dir)):
            if name.endswith(".log"):
                with open(os.path.join(self.run_dir, name), errors="replace") as f:
                    tail = f.read().splitlines()[-15:]
                print(f"--- {name} (last lines)\n" + "\n".join(tail), flush=True)


def get_json(port, path):
    """GET as JSON (urllib: NATS monitoring answers HTTP/1.1 with chunked bodies)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, None
    except (urllib.error.URLError, OSError, ValueError):
        return -1, None


def check_replicas(base):
    """Every JetStream stream meshsig made has 3 replicas."""
    deadline = time.monotonic() + 20
    want = {"KV_meshsig_shards", "KV_meshsig_policies", "MESHSIG_OFFLINE"}
    while True:
        _, j = get_json(base + 120, "/jsz?accounts=true&streams=true&config=true")
        got = {}
        for acc in (j or {}).get("account_details", []):
            for s in acc.get("stream_detail", []):
                got[s["name"]] = s.get("config", {}).get("num_replicas")
        if want <= set(got):
            break
        assert time.monotonic() < deadline, f"streams on nats-0: {got}"
        time.sleep(0.2)
    bad = {n: r for n, r in got.items() if n in want and r != 3}
    assert not bad, f"streams without 3 replicas: {bad}"
    log(f"JetStream replicas: {got}")


def join(port, ns, peer, timeout=20.0):
    """Joins, retrying while the namespace's shard has no owner (bounded)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        c = WsClient(port)
        c.send_json({"id": "j", "hello": {"namespace": ns, "peerId": peer}})
        try:
            m = c.wait_for(lambda m: "welcome" in m or "error" in m, f"welcome for {peer}", 5)
        except (AssertionError, OSError) as e:
            m = {"error": str(e)}
        if "welcome" in m:
            return c
        last = m
        c.close()
        time.sleep(0.2)
    raise AssertionError(f"join of {peer} never succeeded: {last}")


def signal_between(a, a_id, b, b_id, timeout=15.0):
    """A signal a -> b arrives (resent every second: the owner may be moving)."""
    deadline = time.monotonic() + timeout
    n = 0
    while time.monotonic() < deadline:
        nonce = f"n{n}-{random.randrange(1 << 30)}"
        a.send_json({"signal": {"to": b_id, "payload": nonce}})
        try:
            b.wait_for(lambda m: m.get("signal", {}).get("from") == a_id
                       and m["signal"].get("payload") == nonce, f"signal {a_id}->{b_id}", 1.0)
            return
        except (AssertionError, TimeoutError):
            n += 1
    raise AssertionError(f"no signal {a_id} -> {b_id} within {timeout}s")


def mesh_has_edge(admin_port, ns, x, y, timeout=15.0):
    deadline = time.monotonic() + timeout
    j = None
    while time.monotonic() < deadline:
        code, j = get_json(admin_port, f"/v1/namespaces/{ns}")
        if code == 200 and j and ([x, y] in j["edges"] or [y, x] in j["edges"]):
            return j
        time.sleep(0.2)
    raise AssertionError(f"the admin API on {admin_port} never showed {x}-{y}: {j}")


def check_failover(dc):
    base = dc.base
    gw1, gw2 = base, base + 2
    admin1 = base + 1
    ns = f"devc-{os.getpid()}-{random.randrange(1 << 30)}"
    clients = []
    try:
        a = join(gw1, ns, "a")
        b = join(gw2, ns, "b")
        clients += [a, b]
        signal_between(a, "a", b, "b")
        signal_between(b, "b", a, "a")
        log("a@gw-1 and b@gw-2 signal each other")

        # kill -9 of gw-1: reported, the rest keeps running and serving.
        os.kill(dc.pid_of["gw-1"], signal.SIGKILL)
        line = dc.wait_line(r"gateway gw-1 \(pid \d+\) killed by KILL.*still running", 10)
        log(f"reported: {line}")
        time.sleep(0.5)  # anything that would follow it down has had time to
        gone = [p for p in dc.pids if p != dc.pid_of["gw-1"] and not alive(p)]
        assert not gone, f"processes that exited with gw-1: {gone}"
        assert dc.proc.poll() is None, "dev-cluster exited with gw-1"
        c = join(gw2, ns, "c")
        clients.append(c)
        signal_between(c, "c", b, "b")
        signal_between(b, "b", c, "c")
        code, body = http_get(gw2, "/healthz")
        assert code == 200, f"gw-2 /healthz: {code} {body!r}"
        j = mesh_has_edge(admin1, ns, "b", "c")
        log(f"gw-2 serves: c joined next to b, signals flow; the mesh shows "
            f"{len(j['peers'])} peers, edges {j['edges']}")

        # kill -9 of coord-2: coord-1 takes its shards; the namespace still serves.
        os.kill(dc.pid_of["coord-2"], signal.SIGKILL)
        dc.wait_line(r"coordinator coord-2 \(pid \d+\) killed by KILL.*still running", 10)
        d = join(gw2, ns, "d")
        clients.append(d)
        signal_between(d, "d", b, "b")
        j = mesh_has_edge(admin1, ns, "b", "c")
        assert j["owner"] == "coord-1", f"owner after coord-2 died: {j['owner']}"
        signal_between(b, "b", c, "c")
        alive_now = [p for p in dc.pids if alive(p)]
        assert len(alive_now) == len(dc.pids) - 2, f"running: {alive_now} of {dc.pids}"
        log(f"coord-2 killed: coord-1 owns {ns}, d joined, b-c kept, signals flow")
    finally:
        for cl in clients:
            cl.close()


def main():
    for tool in ("nats-server",):
        if not any(os.access(os.path.join(d, tool), os.X_OK)
                   for d in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/sbin"]):
            print(f"{tool} not found: run deploy/install-deps.sh", file=sys.stderr)
            return 1
    for b in ("gateway/meshsig-gateway", "coordinator/meshsig-coordinator"):
        if not os.access(os.path.join(BUILD, b), os.X_OK):
            print(f"{BUILD}/{b} is not built", file=sys.stderr)
            return 1

    dc = DevCluster(free_base_port(PORT_SPAN))
    ok = False
    try:
        dc.wait_ready()
        # 3 NATS nodes, 2 coordinators, 2 gateways (and a TURN server when
        # coturn is installed).
        assert len(dc.pids) >= 3 + 2 + 2, f"pids: {dc.pids}"
        assert set(dc.pid_of) == {"nats-0", "nats-1", "nats-2", "coord-1", "coord-2", "gw-1",
                                  "gw-2"}, dc.pid_of
        check_replicas(dc.base)
        check_failover(dc)

        rc = dc.interrupt()
        assert rc == 0, f"dev-cluster exit code after SIGINT: {rc}"
        deadline = time.monotonic() + 10
        while any(alive(p) for p in dc.pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [p for p in dc.pids if alive(p)]
        assert not left, f"processes still running after Ctrl-C: {left}"
        log(f"SIGINT: dev-cluster exited 0 and all {len(dc.pids)} processes are gone")
        ok = True
    except (AssertionError, OSError, ValueError, KeyError) as e:
        print(f"FAIL: {e!r}", file=sys.stderr, flush=True)
        dc.dump_logs()
    finally:
        dc.force_cleanup()
        if ok:
            subprocess.run(["rm", "-rf", dc.run_dir], check=False)
        else:
            print(f"run dir kept: {dc.run_dir}", file=sys.stderr)
    log("PASS" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
