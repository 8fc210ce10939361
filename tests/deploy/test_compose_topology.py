#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Integration test for `deploy/dev-cluster --compose-topology`: the
docker-compose topology (3 clustered NATS nodes with JetStream, coordinator,
gateways, haproxy with deploy/haproxy/haproxy.cfg) from the built binaries.

Starts it on free loopback ports, connects real WebSocket clients through
haproxy, checks that they land on different gateways and that signals relay
between peers on different gateways, then stops it with SIGTERM and checks
that every process it started is gone. Standard library only; every wait is
bounded; the cluster is always stopped (finally), even when a check fails.

Environment: MESHSIG_BUILD_DIR (binaries), MESHSIG_SOURCE_DIR (repository;
default: two levels up from this file).
"""
import base64
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ports import free_base_port  # noqa: E402

SRC = os.environ.get("MESHSIG_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("MESHSIG_BUILD_DIR") or os.path.join(SRC, "build")
GATEWAYS = 3
PORT_SPAN = 40  # dev-cluster uses base..base+38
START_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0


def log(msg):
    print(f"[compose-topology] {msg}", flush=True)


class WsClient:
    """Minimal RFC 6455 client: text frames, masked, ping answered."""

    def __init__(self, port, path="/ws", timeout=10.0, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
               "Sec-WebSocket-Protocol: meshsig.v1.json\r\n\r\n")
        self.sock.sendall(req.encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the WebSocket handshake")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            raise ConnectionError(f"handshake refused: {status!r}")

    def send_json(self, obj):
        self._send(0x1, json.dumps(obj).encode())

    def _send(self, opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            hdr = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            hdr = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(hdr + mask + masked)

    def _read(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no WebSocket frame in time")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_json(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        message = b""
        while True:
            b0, b1 = self._read(2, deadline)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read(2, deadline))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read(8, deadline))[0]
            if b1 & 0x80:
                mask = self._read(4, deadline)
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(self._read(n, deadline)))
            else:
                data = self._read(n, deadline)
            if opcode == 0x9:
                self._send(0xA, data)
                continue
            if opcode == 0xA:
                continue
            if opcode == 0x8:
                code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
                raise ConnectionError(f"server closed the WebSocket ({code})")
            message += data
            if b0 & 0x80:
                return json.loads(message)

    def wait_for(self, pred, what, timeout=10.0):
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} within {timeout}s; got {seen}")
            msg = self.recv_json(left)
            if pred(msg):
                return msg
            seen.append(msg)

    def close(self):
        try:
            self._send(0x8, struct.pack("!H", 1000))
        except OSError:
            pass
        self.sock.close()


def http_get(port, path, timeout=5.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


class Cluster:
    def __init__(self, base):
        self.base = base
        self.run_dir = tempfile.mkdtemp(prefix="meshsig-compose-topology-")
        self.lines = []
        self.pids = []
        self.ready = threading.Event()
        cmd = [os.path.join(SRC, "deploy", "dev-cluster"), "--compose-topology", "--no-build",
               "--base-port", str(base), "--gateways", str(GATEWAYS),
               "--build-dir", BUILD, "--run-dir", self.run_dir]
        log("starting: " + " ".join(cmd))
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, text=True,
                                     start_new_session=True)
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self):
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            print("  | " + line, flush=True)
            if line.startswith("dev-cluster: pids "):
                self.pids = [int(p) for p in line.split()[2:]]
                self.ready.set()
        self.ready.set()

    def wait_ready(self):
        if not self.ready.wait(START_TIMEOUT) or not self.pids:
            raise AssertionError("dev-cluster did not come up; output above, logs in "
                                 + self.run_dir)

    def stop(self):
        """SIGTERM to dev-cluster, as Ctrl-C would; returns its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
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


def check_cluster(base):
    lb, stats = base, base + 9

    # haproxy forwards plain HTTP to a gateway's /healthz.
    code, body = http_get(lb, "/healthz")
    assert code == 200 and body.strip() == b"ok", f"/healthz via haproxy: {code} {body!r}"
    log("GET /healthz through haproxy: 200 ok")

    # Every gateway passes haproxy's health check.
    deadline = time.monotonic() + 20
    while True:
        _, csv = http_get(stats, "/;csv")
        up = [r.split(",")[1] for r in csv.decode().splitlines()
              if r.startswith("gateways,gw-") and r.split(",")[17].startswith("UP")]
        if len(up) == GATEWAYS:
            break
        assert time.monotonic() < deadline, f"haproxy sees only {up} UP"
        time.sleep(0.2)
    log(f"haproxy health checks: {up} UP")

    # Connections through haproxy spread over the gateways (leastconn).
    ns = f"compose-{os.getpid()}-{random.randrange(1 << 30)}"
    clients, gw_of = {}, {}
    try:
        for i in range(2 * GATEWAYS):
            peer = f"p{i}"
            c = WsClient(lb)
            c.send_json({"id": "1", "hello": {"namespace": ns, "peerId": peer}})
            w = c.wait_for(lambda m: "welcome" in m or "error" in m, f"welcome for {peer}")
            assert "welcome" in w, f"hello of {peer} refused: {w}"
            clients[peer] = c
            gw_of[peer] = w["welcome"].get("gatewayId")
        gateways = set(gw_of.values())
        log(f"welcome.gatewayId per peer: {gw_of}")
        assert len(gateways) >= 2, f"all connections landed on {gateways}"
        assert len(gateways) == GATEWAYS, \
            f"leastconn should use all {GATEWAYS} gateways for {len(clients)} connections: {gw_of}"

        # Signals relay both ways between peers on different gateways.
        a = "p0"
        b = next(p for p in gw_of if gw_of[p] != gw_of[a])
        for src, dst in ((a, b), (b, a)):
            nonce = f"sdp-{src}-{dst}-{random.randrange(1 << 30)}"
            clients[src].send_json({"signal": {"to": dst,
                                               "payload": {"type": "offer", "sdp": nonce}}})
            m = clients[dst].wait_for(
                lambda m: "signal" in m or "error" in m, f"signal at {dst} from {src}")
            assert "signal" in m, f"signal {src}->{dst} failed: {m}"
            assert m["signal"].get("from") == src, m
            assert m["signal"].get("payload") == {"type": "offer", "sdp": nonce}, m
            log(f"signal {src}@{gw_of[src]} -> {dst}@{gw_of[dst]} relayed")
    finally:
        for c in clients.values():
            c.close()


def main():
    for tool in ("nats-server", "haproxy", "curl"):
        if not any(os.access(os.path.join(d, tool), os.X_OK)
                   for d in os.environ.get("PATH", "").split(os.pathsep)):
            print(f"{tool} not found: run deploy/install-deps.sh", file=sys.stderr)
            return 1
    for b in ("gateway/meshsig-gateway", "coordinator/meshsig-coordinator"):
        if not os.access(os.path.join(BUILD, b), os.X_OK):
            print(f"{BUILD}/{b} is not built", file=sys.stderr)
            return 1

    base = free_base_port(PORT_SPAN)
    cluster = Cluster(base)
    ok = False
    try:
        cluster.wait_ready()
        assert len(cluster.pids) == 3 + 1 + GATEWAYS + 1, f"pids: {cluster.pids}"
        check_cluster(base)

        rc = cluster.stop()
        assert rc == 0, f"dev-cluster exit code after SIGTERM: {rc}"
        deadline = time.monotonic() + 10
        while any(alive(p) for p in cluster.pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [p for p in cluster.pids if alive(p)]
        assert not left, f"processes still running after stop: {left}"
        log(f"stopped: all {len(cluster.pids)} processes are gone")
        ok = True
    except (AssertionError, OSError, ValueError) as e:
        print(f"FAIL: {e}", file=sys.stderr, flush=True)
        cluster.dump_logs()
    finally:
        cluster.force_cleanup()
        if ok:
            subprocess.run(["rm", "-rf", cluster.run_dir], check=False)
        else:
            print(f"run dir kept: {cluster.run_dir}", file=sys.stderr)
    log("PASS" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
