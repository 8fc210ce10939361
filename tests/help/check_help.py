#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""--help of meshsig-gateway and meshsig-coordinator against the defaults they run with.

Each flag's "(default ...)" appears at most once and is never a sentinel (-1 stood for "a
quarter of --max-handshakes"); the environment does not change what --help calls the default
(it printed MESHSIG_JWT_SECRET's value as the "default"); and the README's options tables
name the same default as --help for every flag whose default --help prints as a value.
An unknown flag is an error wherever it stands, beside --help or --version too (exit 2, one
line naming it, nothing on stdout; `--bogus --help` printed the help and exited 0).
A gateway given a --listen address it cannot listen on stops at start-up (it ran on,
listening nowhere, and so did every "[v6]:port"); a listen address that is not HOST:PORT
(an IPv6 address without brackets, a port out of range) is refused by both binaries, exit 2.

usage: check_help.py BUILD_DIR   (MESHSIG_SOURCE_DIR: the source tree, for README.md)
"""
import os
import re
import subprocess
import sys

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"
SOURCE = os.environ.get("MESHSIG_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BINARIES = ["gateway/meshsig-gateway", "coordinator/meshsig-coordinator"]
LINE = re.compile(r"^  --(\S+)\s+(MESHSIG_\S+)\s+(.*)$")


def helptext(binary, env):
    out = subprocess.run([os.path.join(BUILD, binary), "--help"], env=env, capture_output=True,
                         text=True, timeout=30, check=False)
    return out.stdout if out.returncode == 0 else f"exit {out.returncode}: {out.stderr}"


def flags(text):
    """flag -> (env name, help line text)"""
    found = {}
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            found[m.group(1)] = (m.group(2), m.group(3))
    return found


def readme_defaults():
    """flag -> the README options tables' default columns (backticks removed): the gateway's
    and the coordinator's tables both have --id, --prefix, ..."""
    out = {}
    with open(os.path.join(SOURCE, "README.md"), encoding="utf-8") as f:
        for line in f:
            cells = [c.strip() for c in line.split("|")]
            if len(cells) < 4 or not cells[1].startswith("`--"):
                continue
            names = re.findall(r"`--([a-z0-9-]+)`", cells[1])
            values = [v.strip() for v in cells[2].replace("`", "").split(",")]
            for i, n in enumerate(names):
                out.setdefault(n, []).append(
                    values[i] if len(names) > 1 and len(values) == len(names)
                    else cells[2].replace("`", ""))
    return out


def unknown_flags(binary, env):
    failures = []
    name = os.path.basename(binary)
    for args in (["--bogus"], ["--bogus", "--help"], ["--help", "--bogus"], ["-h", "--bogus"],
                 ["--version", "--bogus"], ["--log-level", "info", "--bogus=1", "--help"]):
        bogus = next(a for a in args if a.startswith("--bogus"))
        out = subprocess.run([os.path.join(BUILD, binary)] + args, env=env, capture_output=True,
                             text=True, timeout=30, check=False)
        lines = out.stderr.splitlines()
        if (out.returncode != 2 or out.stdout or len(lines) != 1 or
                f"'{bogus}'" not in lines[0]):
            failures.append(f"{name} {' '.join(args)}: exit {out.returncode}, "
                            f"{len(out.stdout)} bytes on stdout, stderr {out.stderr[-200:]!r} "
                            f"(want exit 2 and one line naming {bogus})")
    return failures


def listen_errors(env):
    """A --listen the gateway cannot bind (192.0.2.1 is on no host here) stops it, exit 1,
    naming the address."""
    failures = []
    cmd = [os.path.join(BUILD, "gateway/meshsig-gateway"), "--jwt-secret", "x", "--nats",
           "nats://127.0.0.1:1", "--listen", "192.0.2.1:18080"]
    # libwebsockets 4.1 leaks 96 bytes when its context cannot bind (two allocations made
    # before the vhost fails, never freed by lws_context_destroy); the gateway exits at once.
    # LeakSanitizer would turn that exit into an abort in the sanitizer build: not for this
    # one start-up failure.
    bind_env = dict(env)
    bind_env["ASAN_OPTIONS"] = ":".join(
        o for o in (env.get("ASAN_OPTIONS", ""), "detect_leaks=0") if o)
    try:
        out = subprocess.run(cmd, env=bind_env, capture_output=True, text=True, timeout=20,
                             check=False)
    except subprocess.TimeoutExpired:
        return ["meshsig-gateway --listen 192.0.2.1:18080: still running after 20 s (listening "
                "nowhere)"]
    if out.returncode != 1 or "cannot listen on 192.0.2.1:18080" not in out.stderr:
        failures.append(f"meshsig-gateway --listen 192.0.2.1:18080: exit {out.returncode}, "
                        f"stderr {out.stderr[-300:]!r}")
    # An address that is not HOST:PORT (an IPv6 one without brackets: which colon ends it?,
    # a port out of range or not a number) is refused before anything starts: exit 2.
    for binary, flag in (("gateway/meshsig-gateway", "--listen"),
                         ("coordinator/meshsig-coordinator", "--admin-listen")):
        for bad in ("::1:18080", "127.0.0.1:65536", "127.0.0.1:http", "127.0.0.1", "[::1"):
            cmd = [os.path.join(BUILD, binary), "--insecure-dev", "--nats", "nats://127.0.0.1:1",
                   flag, bad]
            try:
                out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=20,
                                     check=False)
            except subprocess.TimeoutExpired:
                failures.append(f"{binary} {flag} {bad}: still running after 20 s")
                continue
            if out.returncode != 2 or "must be HOST:PORT" not in out.stderr:
                failures.append(f"{binary} {flag} {bad}: exit {out.returncode}, "
                                f"stderr {out.stderr[-300:]!r}")
    return failures


def main():
    failures = []
    readme = readme_defaults()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("MESHSIG_")}
    for binary in BINARIES:
        name = os.path.basename(binary)
        text = helptext(binary, base_env)
        failures += unknown_flags(binary, base_env)
        fl = flags(text)
        if len(fl) < 10:
            failures.append(f"{name}: only {len(fl)} flags parsed from --help")
        # every environment twin set to something else: --help must not change
        env = dict(base_env)
        for flag, (envname, _) in fl.items():
            env[envname] = "777" if "(default" in fl[flag][1] and re.search(
                r"\(default -?\d+\)$", fl[flag][1]) else "sekrit-from-env"
        env_text = helptext(binary, env)
        if env_text != text:
            failures.append(f"{name}: --help changes with the environment (defaults shown are "
                            "the environment's values)")
        if "sekrit-from-env" in env_text:
            failures.append(f"{name}: --help prints values from the environment")
        for flag, (_, h) in fl.items():
            n = h.count("(default")
            if n > 1:
                failures.append(f"{name} --{flag}: {n} defaults in '{h}'")
            m = re.search(r"\(default ([^)]*)\)$", h)
            if not m:
                continue
            value = m.group(1)
            if re.fullmatch(r"-\d+", value):
                failures.append(f"{name} --{flag}: a sentinel as the default: '{h}'")
            # what a help text says after its default ("1: all shards in one batch") is not
            # the README's to repeat
            head = re.split(r"[:;,]", value)[0].strip()
            if flag in readme and not any(head in r for r in readme[flag]):
                failures.append(f"{name} --{flag}: --help says default '{value}', README's "
                                f"options table '{readme[flag]}'")
    failures += listen_errors(base_env)
    for f in failures:
        print("FAIL:", f)
    print(f"check_help: {len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
