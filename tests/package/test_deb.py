#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Package test: the .deb and the systemd units, as an operator would use them.

* `cpack -G DEB` in the build directory makes meshsig_<version>_<arch>.deb; `dpkg-deb -I`
  shows its name, version (project(VERSION)) and Depends; every Depends package is
  installed here, `apt-get -s install ./<deb>` (apt's resolver, simulated) installs it and
  nothing else, and every library the binaries link is in a Depends package.
* `dpkg -x` unpacks it into a scratch root: the binaries, man pages, units, demo and admin
  pages and example configs are in their GNUInstallDirs places under /usr.
* The unpacked binaries print the version, and run against a real nats-server: the
  coordinator becomes ready (/readyz), the gateway serves the installed demo page and shows
  up with its version on /v1/cluster.
* `cmake --install --prefix <tmp>` installs the units with that prefix's paths,
  `systemd-analyze verify` accepts them (the man pages they name are found too), and
  `systemd-analyze security` scores their exposure at 2.0 or less.

Needs cpack, dpkg-deb, nats-server, help2man, systemd-analyze (deploy/install-deps.sh).
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

BUILD = os.environ.get("MESHSIG_BUILD_DIR")
SRC = os.environ.get("MESHSIG_SOURCE_DIR")
FAILS = []
PROCS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILS.append(what)
    return cond


def run(cmd, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 300)
    return subprocess.run(cmd, **kw)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(port, path, token=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=2) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except OSError:
        return None, ""


def wait_for(what, pred, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return check(True, what)
        time.sleep(0.1)
    return check(False, f"{what} within {timeout:.0f} s")


def spawn(argv, log, env=None):
    f = open(log, "w")
    p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, env=env,
                         start_new_session=True)
    PROCS.append(p)
    return p


def stop_all():
    """Stops in reverse start order, each before the next: the services before NATS."""
    for p in reversed(PROCS):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def project_version():
    with open(os.path.join(SRC, "CMakeLists.txt")) as f:
        return re.search(r"^project\(meshsig\s+VERSION\s+(\S+?)[\s)]", f.read(), re.M).group(1)


def deb_field(info, name):
    m = re.search(rf"^ {name}: (.*)$", info, re.M)
    return m.group(1).strip() if m else None


def check_deb(tmp, version):
    out = os.path.join(tmp, "out")
    r = run(["cpack", "-G", "DEB", "--config", os.path.join(BUILD, "CPackConfig.cmake"),
             "-B", out])
    if not check(r.returncode == 0, "cpack -G DEB builds the package"):
        print(r.stdout[-3000:], r.stderr[-3000:])
        return None
    debs = [f for f in os.listdir(out) if f.endswith(".deb")]
    if not check(len(debs) == 1, f"one .deb made: {debs}"):
        return None
    deb = os.path.join(out, debs[0])
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    check(debs[0] == f"meshsig_{version}_{arch}.deb", f"named meshsig_{version}_{arch}.deb")

    info = run(["dpkg-deb", "-I", deb]).stdout
    check(deb_field(info, "Package") == "meshsig", "Package: meshsig")
    check(deb_field(info, "Version") == version, f"Version: {version}")
    depends = [d.strip().split()[0] for d in (deb_field(info, "Depends") or "").split(",")
               if d.strip()]
    want = run([os.path.join(SRC, "deploy/install-deps.sh"), "--list-runtime-libs"]).stdout
    check(sorted(depends) == sorted(want.strip().split(",")),
          f"Depends is install-deps.sh's runtime libraries: {depends}")
    check("nats-server" in (deb_field(info, "Recommends") or ""), "Recommends: nats-server")
    for d in depends:
        st = run(["dpkg-query", "-W", "-f=${Status}", d]).stdout
        check(st == "install ok installed", f"dependency {d} is installed")

    # apt's own resolver against this host's package database (a simulation: nothing is
    # installed and no lock is taken): the package installs, and needs nothing more here.
    if shutil.which("apt-get"):
        r = run(["apt-get", "-s", "-o", "Debug::NoLocking=1", "install", deb])
        inst = re.findall(r"^Inst (\S+)", r.stdout, re.M)
        check(r.returncode == 0 and inst == ["meshsig"],
              f"apt-get -s install ./{os.path.basename(deb)}: installs {inst}, rc {r.returncode}"
              + ("" if r.returncode == 0 else f": {r.stderr.strip()[-500:]}"))
    contents = run(["dpkg-deb", "-c", deb]).stdout
    for path in ["./usr/bin/meshsig-gateway", "./usr/bin/meshsig-coordinator",
                 "./usr/bin/meshsig-token",
                 "./usr/share/man/man1/meshsig-gateway.1", "./usr/share/man/man1/meshsig-coordinator.1",
                 "./usr/share/man/man1/meshsig-token.1",
                 "./usr/lib/systemd/system/meshsig-gateway.service",
                 "./usr/lib/systemd/system/meshsig-coordinator.service",
                 "./usr/share/meshsig/web/index.html", "./usr/share/meshsig/web/meshsig.js",
                 "./usr/share/meshsig/admin-ui/index.html",
                 "./usr/share/doc/meshsig/LICENSE", "./usr/share/doc/meshsig/CHANGELOG.md",
                 "./usr/share/doc/meshsig/examples/gateway.env",
                 "./usr/share/doc/meshsig/examples/coordinator.env",
                 "./usr/share/doc/meshsig/examples/nats-server.conf"]:
        check(re.search(rf" {re.escape(path)}$", contents, re.M) is not None, f"ships {path}")
    check(re.search(r" \./etc/", contents, re.M) is None, "ships nothing in /etc (secrets)")
    return deb


def check_installed(tmp, deb, version):
    root = os.path.join(tmp, "root")
    r = run(["dpkg", "-x", deb, root])
    if not check(r.returncode == 0, "dpkg -x unpacks it"):
        return
    bindir = os.path.join(root, "usr/bin")
    for b in ["meshsig-gateway", "meshsig-coordinator", "meshsig-token"]:
        exe = os.path.join(bindir, b)
        v = run([exe, "--version"])
        check(v.returncode == 0 and re.match(rf"{b} {re.escape(version)}( \(commit [0-9a-f]+(-dirty)?\))?$",
                                             v.stdout.splitlines()[0] if v.stdout else ""),
              f"installed {b} --version: {v.stdout.splitlines()[:1]}")
        # Every shared library it needs resolves, and comes from a package in Depends.
        ldd = run(["ldd", exe]).stdout
        check("not found" not in ldd, f"{b}: every shared library resolves")
        unit = os.path.join(root, f"usr/lib/systemd/system/{b}.service")
        if b != "meshsig-token":
            with open(unit) as f:
                text = f.read()
            check(f"ExecStart=/usr/bin/{b}\n" in text and
                  f"EnvironmentFile=/etc/meshsig/{b[8:]}.env\n" in text,
                  f"{b}.service runs /usr/bin/{b} with /etc/meshsig/{b[8:]}.env")
    info = run(["dpkg-deb", "-I", deb]).stdout
    depends = {d.strip().split()[0] for d in (deb_field(info, "Depends") or "").split(",")}
    # Every library a binary links directly (NEEDED) comes from a package in Depends; what
    # those libraries need in turn, their own packages pull in.
    for exe in ["meshsig-gateway", "meshsig-coordinator"]:
        path = os.path.join(bindir, exe)
        needed = set(re.findall(r"\(NEEDED\)\s+Shared library: \[(\S+)\]",
                                run(["readelf", "-d", path]).stdout))
        check(bool(needed), f"{exe}: readelf lists its NEEDED libraries")
        for m in re.finditer(r"^\s*(\S+) => (/\S+)", run(["ldd", path]).stdout, re.M):
            if m.group(1) not in needed:
                continue
            lib = os.path.realpath(m.group(2))
            owner = run(["dpkg", "-S", lib]).stdout.split(":")[0]
            # libc is essential; the sanitizer runtimes are there only in the ASan build.
            if owner and owner not in ("libc6", "libgcc-s1") and \
                    not owner.startswith(("libasan", "libubsan")):
                check(owner in depends, f"{exe}: {m.group(1)} from {owner} in Depends")

    # Run the installed binaries against a real nats-server.
    nats_port, admin_port, gw_port = free_port(), free_port(), free_port()
    store = os.path.join(tmp, "js")
    spawn(["nats-server", "-a", "127.0.0.1", "-p", str(nats_port), "-js", "-sd", store],
          os.path.join(tmp, "nats.log"))
    nats = f"nats://127.0.0.1:{nats_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHSIG_")}
    env["MESHSIG_ADMIN_TOKEN"] = "pkg-admin-token"
    spawn([os.path.join(bindir, "meshsig-coordinator"), "--nats", nats, "--admin-listen",
           f"127.0.0.1:{admin_port}", "--id", "coord-pkg"], os.path.join(tmp, "coord.log"), env)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHSIG_")}
    env["MESHSIG_JWT_SECRET"] = "pkg-jwt-secret"
    spawn([os.path.join(bindir, "meshsig-gateway"), "--nats", nats, "--listen",
           f"127.0.0.1:{gw_port}", "--id", "gw-pkg", "--static-dir",
           os.path.join(root, "usr/share/meshsig/web")], os.path.join(tmp, "gw.log"), env)
    wait_for("installed coordinator /readyz 200", lambda: http(admin_port, "/readyz")[0] == 200)
    wait_for("installed gateway /healthz 200", lambda: http(gw_port, "/healthz")[0] == 200)
    st, body = http(gw_port, "/")
    check(st == 200 and "<html" in body.lower(), "installed gateway serves the installed demo page")

    def gw_listed():
        st, body = http(admin_port, "/v1/cluster", "pkg-admin-token")
        if st != 200:
            return False
        gws = [g for g in json.loads(body).get("gateways", []) if g.get("id") == "gw-pkg"]
        return bool(gws) and gws[0].get("version") == version
    wait_for("gw-pkg with its version on /v1/cluster", gw_listed)
    st, body = http(admin_port, "/metrics", "pkg-admin-token")
    check(st == 200 and f'meshsig_build_info{{version="{version}"' in body,
          "installed coordinator exports meshsig_build_info")
    stop_all()
    for p in PROCS:
        if p.args[0].endswith(("meshsig-gateway", "meshsig-coordinator")):
            check(p.returncode == 0, f"{os.path.basename(p.args[0])} stops cleanly on SIGTERM")


def check_units(tmp):
    prefix = os.path.join(tmp, "prefix")
    r = run(["cmake", "--install", BUILD, "--prefix", prefix])
    if not check(r.returncode == 0, f"cmake --install --prefix {prefix}"):
        print(r.stdout[-2000:], r.stderr[-2000:])
        return
    units = [os.path.join(prefix, "lib/systemd/system", u)
             for u in ("meshsig-gateway.service", "meshsig-coordinator.service")]
    for u in units:
        with open(u) as f:
            text = f.read()
        name = os.path.basename(u)[:-len(".service")]
        check(f"ExecStart={prefix}/bin/{name}\n" in text, f"{name}.service: ExecStart in the prefix")
        for line in ["DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes",
                     "CapabilityBoundingSet=", "Restart=on-failure",
                     f"EnvironmentFile={prefix}/etc/meshsig/{name[8:]}.env"]:
            check(re.search(rf"^{re.escape(line)}$", text, re.M) is not None, f"{name}.service: {line}")
    if not shutil.which("systemd-analyze"):
        check(False, "systemd-analyze is installed (deploy/install-deps.sh: systemd)")
        return
    # The units name their man pages (Documentation=man:...): verify looks them up.
    env = dict(os.environ, MANPATH=os.path.join(prefix, "share/man") + ":")
    r = run(["systemd-analyze", "verify"] + units, env=env)
    check(r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(),
          f"systemd-analyze verify: rc {r.returncode} {r.stdout.strip()} {r.stderr.strip()}")
    # The hardening, as systemd scores it (0 = locked down, 10 = exposed): at most 2.0.
    for u in units:
        r = run(["systemd-analyze", "security", "--offline=yes", "--threshold=20", u])
        score = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
        check(r.returncode == 0 and score is not None,
              f"systemd-analyze security {os.path.basename(u)}: exposure "
              f"{score.group(1) if score else '?'} (at most 2.0)")


def main():
    if not BUILD or not SRC:
        print("MESHSIG_BUILD_DIR and MESHSIG_SOURCE_DIR must be set (ctest sets them)")
        return 1
    version = project_version()
    tmp = tempfile.mkdtemp(prefix="meshsig-pkg-")
    try:
        deb = check_deb(tmp, version)
        if deb:
            check_installed(tmp, deb, version)
        check_units(tmp)
    finally:
        stop_all()
        if FAILS:
            for log in ("nats.log", "coord.log", "gw.log"):
                path = os.path.join(tmp, log)
                if os.path.exists(path):
                    with open(path) as f:
                        print(f"--- {log}\n" + f.read()[-2000:])
        shutil.rmtree(tmp, ignore_errors=True)
    if FAILS:
        print(f"{len(FAILS)} check(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
