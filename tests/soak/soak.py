#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Soak: hours of churn over 2 gateways and 2 coordinators (and one NATS node
with JetStream), with a coordinator and a gateway restarted in turn.

Not part of the default suite: run it by hand (or `ctest -L soak` in a build
configured with -DMESHSIG_SOAK=ON), e.g.

  tests/soak/soak.py --minutes 60 --restart-every 10      # the full soak
  tests/soak/soak.py --minutes 6 --restart-every 1        # a short one

Load: namespaces of 4 peers split over both gateways. Each peer sends a
numbered signal to its partner every 200 ms; peers leave and new ones join
(churn); peers drop their socket and resume with their resume token on the
other gateway; persistent emits go to absent peers that join later. Every
--restart-every minutes one process is restarted, in turn: a coordinator
(SIGTERM, then SIGKILL the next time), then a gateway (SIGTERM: its clients
are told to reconnect and resume on the other one).

Reports, as text and JSON (--json FILE): RSS of every process over time and
its slope after warm-up (least squares, KiB per minute, per process life),
open descriptors (min/max per process life), signals sent/received,
ordering violations (a signal older than one already received from the same
sender: must be 0), duplicates, persistent emits acknowledged and lost
(acknowledged but never delivered: must be 0), churn and restart counts.
Exit status 1 if a must-be-zero figure is not zero.
"""
import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "deploy"))
from test_compose_topology import WsClient, alive  # noqa: E402

SRC = os.environ.get("MESHSIG_SOURCE_DIR") or os.path.abspath(os.path.join(HERE, "..", ".."))
BUILD = os.environ.get("MESHSIG_BUILD_DIR") or os.path.join(SRC, "build")


def log(msg):
    print(f"[soak] {time.strftime('%H:%M:%S')} {msg}", flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


class Cluster:
    def __init__(self, run_dir):
        self.dir = run_dir
        self.nats_port = free_port()
        self.procs = {}
        self.ports = {"c1": free_port(), "c2": free_port(), "gw1": free_port(),
                      "gw2": free_port()}
        self.lives = []  # (role, pid, started monotonic)
        nats = next((p for p in ("/usr/sbin/nats-server", "/usr/bin/nats-server")
                     if os.access(p, os.X_OK)), "nats-server")
        self.argv = {
            "nats": [nats, "-a", "127.0.0.1", "-p", str(self.nats_port), "-js", "-sd",
                     os.path.join(run_dir, "js")],
        }
        url = f"nats://127.0.0.1:{self.nats_port}"
        for c in ("c1", "c2"):
            self.argv[c] = [os.path.join(BUILD, "coordinator/meshsig-coordinator"), "--nats", url,
                            "--id", c, "--admin-listen", f"127.0.0.1:{self.ports[c]}",
                            "--insecure-dev"]
        for g in ("gw1", "gw2"):
            self.argv[g] = [os.path.join(BUILD, "gateway/meshsig-gateway"), "--nats", url,
                            "--id", g, "--listen", f"127.0.0.1:{self.ports[g]}",
                            "--insecure-dev", "--drain-ms", "3000"]

    def start(self, role):
        logf = open(os.path.join(self.dir, f"{role}.log"), "ab")
        p = subprocess.Popen(self.argv[role], stdout=logf, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        logf.close()
        self.procs[role] = p
        self.lives.append((role, p.pid, time.monotonic()))
        port = self.nats_port if role == "nats" else self.ports[role]
        if not wait_port(port):
            raise RuntimeError(f"{role} did not start; see {self.dir}/{role}.log")
        return p

    def stop(self, role, sig=signal.SIGTERM):
        p = self.procs.get(role)
        if p and p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)

    def stop_all(self):
        for role in ("gw1", "gw2", "c1", "c2", "nats"):
            self.stop(role)


def proc_stats(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        return rss, fds
    except (OSError, StopIteration, ValueError):
        return None


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.c = {k: 0 for k in ("signals_sent", "signals_received", "order_violations",
                                 "duplicates", "joins", "leaves", "resumes", "reconnects",
                                 "emits_acked", "emits_delivered", "emits_failed",
                                 "join_failures", "late_rejoins")}
        self.acked = {}  # absent peer id -> data acknowledged for it
        self.delivered = {}  # absent peer id -> data received

    def add(self, k, n=1):
        with self.lock:
            self.c[k] += n


class Peer(threading.Thread):
    """One client: signals its partner, follows reconnects, resumes."""

    def __init__(self, h, ns, pid, partner, gw, lifetime=None):
        super().__init__(daemon=True)
        self.lifetime = lifetime  # seconds after the welcome; None: until stopped
        self.h, self.ns, self.id, self.partner, self.gw = h, ns, pid, partner, gw
        self.ws = None
        self.resume = None
        self.seq = 0
        self.last = {}  # sender -> last seq
        self.stop = threading.Event()
        self.drop = threading.Event()  # drop the socket and resume elsewhere
        self.outbox = []  # requests to send (emits)
        self.pending = {}  # request id -> absent peer, data
        self.welcomed = threading.Event()
        self.expect_emit = None  # data this peer must receive (it was absent)

    def other(self, gw):
        return "gw2" if gw == "gw1" else "gw1"

    def connect(self, gw, resume):
        for attempt in range(60):
            if self.stop.is_set():
                return False
            try:
                ws = WsClient(self.h.cluster.ports[gw], timeout=5)
                # Stored emits are deleted on our `received`, not on the write.
                hello = {"namespace": self.ns, "peerId": self.id, "acksPersistent": True}
                if resume and self.resume:
                    hello["resumeToken"] = self.resume
                ws.send_json({"id": "hello", "hello": hello})
                m = ws.wait_for(lambda m: "welcome" in m or "error" in m, "welcome", 5)
                if "welcome" in m:
                    self.ws, self.gw = ws, gw
                    self.resume = m["welcome"].get("resumeToken") or self.resume
                    self.welcomed.set()
                    return True
                ws.close()
            except (OSError, AssertionError, ConnectionError, TimeoutError, ValueError):
                pass
            gw = self.other(gw) if attempt % 2 else gw
            time.sleep(0.25)
        self.h.stats.add("join_failures")
        return False

    def handle(self, m):
        st = self.h.stats
        if "signal" in m:
            s = m["signal"]
            try:
                n = int(str(s.get("payload", "")).split(":")[1])
            except (IndexError, ValueError):
                return
            last = self.last.get(s.get("from"), -1)
            st.add("signals_received")
            if n < last:
                st.add("order_violations")
                log(f"ORDER: {self.id} got {n} from {s.get('from')} after {last}")
            elif n == last:
                st.add("duplicates")
            else:
                self.last[s.get("from")] = n
        elif "emit" in m and m["emit"].get("persistent"):
            st.add("emits_delivered")
            with st.lock:
                st.delivered.setdefault(self.id, []).append(m["emit"].get("data"))
            if m["emit"].get("msgId"):  # counted: now it may leave the stream
                self.ws.send_json({"received": {"msgIds": [m["emit"]["msgId"]]}})
            if self.lifetime:  # an absent peer that got its message: leave soon
                self.deadline = min(self.deadline, time.monotonic() + 2)
        elif "ok" in m and m.get("id") in self.pending:
            to, data = self.pending.pop(m["id"])
            st.add("emits_acked")
            with st.lock:
                st.acked.setdefault(to, []).append(data)
        elif "error" in m and m.get("id") in self.pending:
            self.pending.pop(m["id"])
            st.add("emits_failed")
        elif "reconnect" in m:
            raise ConnectionError("told to reconnect")

    def run(self):
        st = self.h.stats
        if not self.connect(self.gw, False):
            return
        st.add("joins")
        next_sig = time.monotonic()
        self.deadline = time.monotonic() + self.lifetime if self.lifetime else float("inf")
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            try:
                if self.drop.is_set():
                    self.drop.clear()
                    self.ws.sock.close()
                    raise ConnectionError("dropped on purpose")
                now = time.monotonic()
                if now >= next_sig and self.partner:
                    self.ws.send_json({"signal": {"to": self.partner,
                                                  "payload": f"{self.id}:{self.seq}"}})
                    self.seq += 1
                    st.add("signals_sent")
                    next_sig = now + 0.2
                while self.outbox:
                    rid, to, data = self.outbox.pop(0)
                    self.pending[rid] = (to, data)
                    self.ws.send_json({"id": rid, "emit": {"to": to, "event": "soak",
                                                           "data": data, "persistent": True}})
                try:
                    m = self.ws.recv_json(0.1)
                except TimeoutError:
                    continue
                self.handle(m)
            except (ConnectionError, OSError, ValueError) as e:
                if self.stop.is_set():
                    break
                # Unanswered requests may be lost with the socket: sent again
                # after the resume, as a client's request timeout would.
                for rid, (to, data) in list(self.pending.items()):
                    self.outbox.append((rid, to, data))
                self.pending.clear()
                st.add("reconnects" if "reconnect" in str(e) else "resumes")
                if not self.connect(self.other(self.gw), True):
                    return
        try:
            if self.ws:
                self.ws.send_json({"leave": {}})
                self.ws.close()
        except OSError:
            pass
        st.add("leaves")


class Harness:
    def __init__(self, args):
        self.args = args
        self.dir = tempfile.mkdtemp(prefix="meshsig-soak-")
        self.cluster = Cluster(self.dir)
        self.stats = Stats()
        self.peers = []
        self.samples = []  # (t, role, pid, rss_kib, fds)
        self.restarts = []
        self.n = 0

    def new_peer(self, ns, pid, partner, gw, lifetime=None):
        p = Peer(self, ns, pid, partner, gw, lifetime)
        self.peers.append(p)
        p.start()
        return p

    def sample(self, t):
        for role, p in self.cluster.procs.items():
            if p.poll() is None:
                s = proc_stats(p.pid)
                if s:
                    self.samples.append((t, role, p.pid, s[0], s[1]))

    def run(self):
        a = self.args
        c = self.cluster
        for role in ("nats", "c1", "c2", "gw1", "gw2"):
            c.start(role)
        time.sleep(3)  # shards spread over both coordinators
        t0 = time.monotonic()
        end = t0 + a.minutes * 60
        # Stable pairs in namespaces of 4, split over the gateways.
        groups = []
        for g in range(a.peers // 4):
            ns = f"soak-{g}"
            ids = [f"s{g}-{k}" for k in range(4)]
            ps = [self.new_peer(ns, ids[k], ids[k ^ 1], "gw1" if k % 2 else "gw2")
                  for k in range(4)]
            groups.append((ns, ps))
        next_sample = next_churn = next_emit = next_drop = t0
        next_restart = t0 + a.restart_every * 60
        restart_turn = 0
        absent = []  # (join at, ns, id)
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_sample:
                self.sample(now - t0)
                next_sample = now + a.sample_every
            if now >= next_churn:  # a churn peer leaves, a new one joins
                ns, ps = random.choice(groups)
                victim = next((p for p in self.peers if p.ns == ns and p.id.startswith("j")
                               and p.is_alive()), None)
                if victim:
                    victim.stop.set()
                self.n += 1
                self.new_peer(ns, f"j{self.n}", None, random.choice(("gw1", "gw2")))
                next_churn = now + a.churn_every
            if now >= next_emit:  # a stored emit for someone who joins later
                ns, ps = random.choice(groups)
                sender = random.choice([p for p in ps if p.is_alive()] or ps)
                self.n += 1
                to = f"z{self.n}"
                sender.outbox.append((f"e{self.n}", to, self.n))
                absent.append((now + random.uniform(5, 30), ns, to))
                next_emit = now + a.emit_every
            for item in list(absent):
                if now >= item[0]:
                    absent.remove(item)
                    self.new_peer(item[1], item[2], None, random.choice(("gw1", "gw2")), 120)
            if now >= next_drop:  # a socket dropped: resume on the other gateway
                ns, ps = random.choice(groups)
                random.choice(ps).drop.set()
                next_drop = now + a.drop_every
            if now >= next_restart:
                self.restart(restart_turn)
                restart_turn += 1
                next_restart = now + a.restart_every * 60
            time.sleep(0.05)
        log("load stops; waiting for stored emits still due")
        for _, ns, to in absent:
            self.new_peer(ns, to, None, "gw1", 60)
        # A receiver whose emit was stored only after it had come and gone
        # (the sender's ok came late: its request was re-sent after a
        # resume) gets it at its next join: one more for each such one.
        st = self.stats
        late = set()
        with st.lock:
            for to, datas in st.acked.items():
                got = st.delivered.get(to, [])
                if any(d not in got for d in datas) and to not in [t for _, _, t in absent]:
                    late.add(to)
        for to in sorted(late):
            ns = next((p.ns for p in self.peers if p.id == to), None)
            if ns:
                st.add("late_rejoins")
                self.new_peer(ns, to, None, "gw2", 60)
        time.sleep(30)
        self.sample(time.monotonic() - t0)
        for p in self.peers:
            p.stop.set()
        for p in self.peers:
            p.join(5)
        c.stop_all()
        return time.monotonic() - t0

    def restart(self, turn):
        c = self.cluster
        kind = turn % 4  # c1 TERM, gw1, c2 KILL, gw2
        role = ("c1", "gw1", "c2", "gw2")[kind]
        sig = signal.SIGKILL if kind == 2 else signal.SIGTERM
        log(f"restart {role} ({signal.Signals(sig).name})")
        c.stop(role, sig)
        time.sleep(1)
        c.start(role)
        self.restarts.append((role, signal.Signals(sig).name))

    def report(self, took):
        st = self.stats
        warm = self.args.warmup * 60
        lives = {}
        for t, role, pid, rss, fds in self.samples:
            lives.setdefault((role, pid), []).append((t, rss, fds))
        procs = []
        for (role, pid), pts in sorted(lives.items(), key=lambda kv: kv[1][0][0]):
            after = [p for p in pts if p[0] >= warm and p[0] - pts[0][0] >= 60]
            slope = None
            if len(after) >= 3:
                n = len(after)
                mt = sum(p[0] for p in after) / n
                mr = sum(p[1] for p in after) / n
                den = sum((p[0] - mt) ** 2 for p in after)
                if den > 0:
                    slope = sum((p[0] - mt) * (p[1] - mr) for p in after) / den * 60
            procs.append({"role": role, "pid": pid, "from_s": round(pts[0][0]),
                          "to_s": round(pts[-1][0]), "rss_kib_first": pts[0][1],
                          "rss_kib_last": pts[-1][1], "rss_kib_max": max(p[1] for p in pts),
                          "rss_slope_kib_per_min": None if slope is None else round(slope, 1),
                          "fds_min": min(p[2] for p in pts), "fds_max": max(p[2] for p in pts),
                          "samples": len(pts)})
        lost = []
        for to, datas in st.acked.items():
            got = st.delivered.get(to, [])
            for d in datas:
                if d not in got:
                    lost.append((to, d))
        # The same data more than once: a stored emit delivered again (at
        # least once, same msgId) or sent again by its sender after a resume.
        dup_emits = sum(len(g) - len(set(g)) for g in st.delivered.values())
        out = {"minutes": round(took / 60, 1), "restart_every_min": self.args.restart_every,
               "peers": self.args.peers, "restarts": self.restarts, "counters": st.c,
               "persistent_emits_lost": len(lost), "lost": lost[:20],
               "persistent_emits_delivered_twice": dup_emits, "processes": procs}
        print(json.dumps(out, indent=1))
        print(f"\nsoak: {out['minutes']} min, {len(self.restarts)} restarts, "
              f"{st.c['signals_sent']} signals sent / {st.c['signals_received']} received, "
              f"{st.c['order_violations']} ordering violations, {st.c['duplicates']} duplicates, "
              f"{st.c['emits_acked']} stored emits acknowledged, {len(lost)} lost, "
              f"{dup_emits} delivered more than once, "
              f"{st.c['joins']} joins, {st.c['resumes']} resumes, "
              f"{st.c['reconnects']} reconnects")
        print(f"{'process':8} {'pid':>7} {'from-to s':>11} {'RSS KiB first/last/max':>24} "
              f"{'slope KiB/min':>14} {'fds':>9}")
        for p in procs:
            sl = "-" if p["rss_slope_kib_per_min"] is None else p["rss_slope_kib_per_min"]
            print(f"{p['role']:8} {p['pid']:>7} {p['from_s']:>5}-{p['to_s']:<5} "
                  f"{p['rss_kib_first']:>7}/{p['rss_kib_last']}/{p['rss_kib_max']:<7} "
                  f"{sl:>14} {p['fds_min']:>4}-{p['fds_max']:<4}")
        if self.args.json:
            with open(self.args.json, "w") as f:
                json.dump(out, f, indent=1)
        return st.c["order_violations"] == 0 and not lost


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--restart-every", type=float, default=10, help="minutes")
    ap.add_argument("--warmup", type=float, default=2, help="minutes not in the RSS slope")
    ap.add_argument("--peers", type=int, default=32, help="stable peers (multiple of 4)")
    ap.add_argument("--churn-every", type=float, default=2.0, help="seconds")
    ap.add_argument("--emit-every", type=float, default=3.0, help="seconds")
    ap.add_argument("--drop-every", type=float, default=10.0, help="seconds")
    ap.add_argument("--sample-every", type=float, default=15.0, help="seconds")
    ap.add_argument("--json", help="write the report here too")
    args = ap.parse_args()
    h = Harness(args)
    ok = False
    try:
        took = h.run()
        ok = h.report(took)
    finally:
        h.cluster.stop_all()
        for role, pid, _ in h.cluster.lives:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        print(f"logs in {h.dir}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
