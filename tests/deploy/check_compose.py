#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Unit test for the Docker deployment files, without a Docker engine.

* deploy/docker-compose.yml resolves with `docker-compose config` to 3 NATS
  nodes, 2 coordinators, one scalable gateway service (no host port, no fixed
  container name or id) and haproxy; it refuses to resolve without the JWT
  secret and admin token; the dev override resolves with .env.dev.
* deploy/haproxy/haproxy.cfg passes `haproxy -c`, as compose uses it and as
  deploy/dev-cluster renders it for local gateways.
* deploy/nats/nats.conf passes `nats-server -t` with the variables compose sets.
* deploy/Dockerfile has the structure the deployment relies on.

Needs docker-compose, haproxy, nats-server and python3-yaml (deploy/install-deps.sh).
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

SRC = os.environ.get("MESHSIG_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
DEPLOY = os.path.join(SRC, "deploy")
FAILS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILS.append(what)
    return cond


def clean_env(**extra):
    """The caller's environment without MESHSIG_* (a developer's secrets must not leak in)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MESHSIG_", "NATS_", "HAPROXY_", "COMPOSE_"))}
    env.update(extra)
    return env


def compose(args, env, env_file):
    # --env-file: never read a developer's deploy/.env.
    cmd = ["docker-compose", "--env-file", env_file, "-f",
           os.path.join(DEPLOY, "docker-compose.yml")] + args
    return subprocess.run(cmd, cwd=DEPLOY, env=env, capture_output=True, text=True, timeout=60)


def env_of(svc):
    e = svc.get("environment") or {}
    if isinstance(e, list):
        e = dict(x.split("=", 1) for x in e)
    return {k: str(v) for k, v in e.items()}


def published(svc, container_port):
    """True if the service publishes container_port on the host."""
    for p in svc.get("ports") or []:
        if isinstance(p, dict):
            if str(p.get("target")) == str(container_port) and p.get("published"):
                return True
        elif str(p).split("/")[0].split(":")[-1] == str(container_port) and ":" in str(p):
            return True
    return False


def command_of(svc):
    c = svc.get("command") or []
    return c.split() if isinstance(c, str) else list(c)


def check_compose(tmp):
    empty = os.path.join(tmp, "empty.env")
    open(empty, "w").close()

    nats_pw = {"MESHSIG_NATS_COORDINATOR_PASSWORD": "test-coord-pw",
               "MESHSIG_NATS_GATEWAY_PASSWORD": "test-gw-pw",
               "MESHSIG_NATS_BACKEND_PASSWORD": "test-backend-pw"}
    # No secrets: compose must refuse, naming what is missing.
    r = compose(["config"], clean_env(), empty)
    check(r.returncode != 0, "compose without secrets fails")
    check(re.search(r"set MESHSIG_[A-Z_]+ \(see deploy/\.env\.example\)", r.stderr) is not None,
          f"... and says which variable to set (stderr: {r.stderr.strip()[-160:]!r})")
    r = compose(["config"], clean_env(MESHSIG_JWT_SECRET="j", **nats_pw), empty)
    check(r.returncode != 0 and "set MESHSIG_ADMIN_TOKEN" in r.stderr,
          "compose without the admin token fails and says so")
    r = compose(["config"], clean_env(MESHSIG_ADMIN_TOKEN="t", **nats_pw), empty)
    check(r.returncode != 0 and "set MESHSIG_JWT_SECRET" in r.stderr,
          "compose without the JWT secret fails and says so")

    for var in nats_pw:
        r = compose(["config"], clean_env(MESHSIG_JWT_SECRET="j", MESHSIG_ADMIN_TOKEN="t",
                                          **{k: v for k, v in nats_pw.items() if k != var}), empty)
        check(r.returncode != 0 and f"set {var}" in r.stderr,
              f"compose without {var} fails and says so")
    env = clean_env(MESHSIG_JWT_SECRET="test-jwt-secret", MESHSIG_ADMIN_TOKEN="test-admin-token",
                    **nats_pw)
    r = compose(["config"], env, empty)
    if not check(r.returncode == 0, f"compose config resolves ({r.stderr.strip()[-300:]})"):
        return
    cfg = yaml.safe_load(r.stdout)
    services = cfg.get("services", {})

    nats = {n: s for n, s in services.items() if str(s.get("image", "")).startswith("nats")}
    check(len(nats) == 3, f"3 NATS services: {sorted(nats)}")
    names, routes = set(), set()
    for n, s in nats.items():
        e = env_of(s)
        names.add(e.get("NATS_SERVER_NAME"))
        routes |= {v for k, v in e.items() if k.startswith("NATS_ROUTE_")}
        check(command_of(s)[:2] == ["--config", "/etc/nats/meshsig.conf"], f"{n} runs our config")
        check(any(str(v).startswith(os.path.join(DEPLOY, "nats", "auth.conf") + ":/etc/nats/auth.conf")
                  or (isinstance(v, dict) and v.get("source", "").endswith("nats/auth.conf")
                      and v.get("target") == "/etc/nats/auth.conf")
                  for v in s.get("volumes", [])), f"{n} mounts deploy/nats/auth.conf beside it")
        check(all(e.get(k) == v for k, v in nats_pw.items()), f"{n} gets the NATS passwords")
        check(any(str(v).startswith(os.path.join(DEPLOY, "nats", "nats.conf") + ":")
                  for v in s.get("volumes", []) if isinstance(v, str))
              or any(isinstance(v, dict) and v.get("source", "").endswith("nats/nats.conf")
                     for v in s.get("volumes", [])),
              f"{n} mounts deploy/nats/nats.conf")
        check(bool(e.get("NATS_STORE_DIR")), f"{n} has a JetStream store dir")
        check("healthcheck" in s, f"{n} has a healthcheck")
    check(len(names) == 3, f"NATS server names are unique: {names}")
    check(routes == {f"nats-route://{n}:6222" for n in nats},
          f"every NATS node routes to all three: {sorted(routes)}")

    coords = {n: s for n, s in services.items() if command_of(s)[:1] == ["meshsig-coordinator"]}
    check(len(coords) == 2, f"2 coordinators: {sorted(coords)}")
    ids = set()
    for n, s in coords.items():
        e = env_of(s)
        ids.add(e.get("MESHSIG_ID"))
        check(e.get("MESHSIG_ADMIN_TOKEN") == "test-admin-token", f"{n} gets the admin token")
        check(e.get("MESHSIG_NATS_USER") == "coordinator"
              and e.get("MESHSIG_NATS_PASSWORD") == "test-coord-pw",
              f"{n} logs in to NATS as coordinator")
        check("MESHSIG_INSECURE_DEV" not in e, f"{n} is not in insecure dev mode")
        check(e.get("MESHSIG_NATS", "").count("nats://") == 3, f"{n} knows all 3 NATS nodes")
        check(str(e.get("MESHSIG_JS_REPLICAS")) == "3",
              f"{n} keeps leases and stored emits on all 3 NATS nodes (MESHSIG_JS_REPLICAS=3)")
        ports = s.get("ports", [])
        check(published(s, 8081), f"{n} publishes its admin endpoint: {ports}")
        check(any(n2 in (s.get("depends_on") or {}) for n2 in nats), f"{n} waits for NATS")
    check(len(ids) == 2, f"coordinator ids differ: {ids}")

    gws = {n: s for n, s in services.items() if command_of(s)[:1] == ["meshsig-gateway"]}
    check(list(gws) == ["gateway"], f"one scalable gateway service: {sorted(gws)}")
    gw = gws.get("gateway", {})
    e = env_of(gw)
    check(not gw.get("ports"), f"gateway publishes no host port: {gw.get('ports')}")
    check("container_name" not in gw, "gateway has no fixed container name")
    check("MESHSIG_ID" not in e, "gateway id comes from the container hostname")
    check(e.get("MESHSIG_JWT_SECRET") == "test-jwt-secret", "gateway gets the JWT secret")
    check(e.get("MESHSIG_NATS_USER") == "gateway" and e.get("MESHSIG_NATS_PASSWORD") == "test-gw-pw",
          "gateway logs in to NATS as gateway")
    check("MESHSIG_INSECURE_DEV" not in e, "gateway is not in insecure dev mode")
    check(e.get("MESHSIG_LISTEN") == "0.0.0.0:8080", "gateway listens on 8080 in its container")
    check(e.get("MESHSIG_NATS", "").count("nats://") == 3, "gateway knows all 3 NATS nodes")
    build = gw.get("build") or {}
    check(os.path.realpath(str(build.get("context", ""))) == os.path.realpath(SRC)
          and build.get("dockerfile") == "deploy/Dockerfile",
          f"gateway image builds from deploy/Dockerfile at the repository root: {build}")
    images = {s.get("image") for s in list(coords.values()) + [gw]}
    check(len(images) == 1, f"gateway and coordinators share one image: {images}")

    lbs = {n: s for n, s in services.items() if "haproxy" in str(s.get("image", ""))}
    check(list(lbs) == ["haproxy"], f"one haproxy: {sorted(lbs)}")
    lb = lbs.get("haproxy", {})
    check(published(lb, 8080), f"haproxy publishes 8080: {lb.get('ports')}")
    check(any("haproxy/haproxy.cfg" in (v if isinstance(v, str) else v.get("source", ""))
              for v in lb.get("volumes", [])), "haproxy mounts deploy/haproxy/haproxy.cfg")
    check("gateway" in (lb.get("depends_on") or {}), "haproxy starts after the gateways")
    check(env_of(lb).get("MESHSIG_LB_BIND") == ":8080", "haproxy binds :8080 in its container")

    # The dev override resolves with its public dev values and stays scalable.
    r = subprocess.run(["docker-compose", "--env-file", os.path.join(DEPLOY, ".env.dev"),
                        "-f", os.path.join(DEPLOY, "docker-compose.yml"),
                        "-f", os.path.join(DEPLOY, "docker-compose.dev.yml"), "config"],
                       cwd=DEPLOY, env=clean_env(), capture_output=True, text=True, timeout=60)
    if check(r.returncode == 0, f"dev override resolves ({r.stderr.strip()[-300:]})"):
        dev = yaml.safe_load(r.stdout)["services"]
        check(not dev["gateway"].get("ports"), "dev gateway still publishes no host port")
        check(env_of(dev["gateway"]).get("MESHSIG_JWT_SECRET", "").startswith("meshsig-dev-only"),
              "dev override uses the public dev secret")
        check(env_of(dev["gateway"]).get("MESHSIG_LOG_LEVEL") == "debug", "dev logs at debug")

    # .env.example documents both secrets without values.
    with open(os.path.join(DEPLOY, ".env.example")) as f:
        ex = f.read()
    for var in ("MESHSIG_JWT_SECRET", "MESHSIG_ADMIN_TOKEN", "MESHSIG_NATS_COORDINATOR_PASSWORD",
                "MESHSIG_NATS_GATEWAY_PASSWORD", "MESHSIG_NATS_BACKEND_PASSWORD"):
        check(re.search(rf"^{var}=$", ex, re.M) is not None, f".env.example has an empty {var}=")


def render_local_haproxy(tmp):
    """What deploy/dev-cluster --compose-topology does to haproxy.cfg."""
    out = []
    skip = False
    with open(os.path.join(DEPLOY, "haproxy", "haproxy.cfg")) as f:
        for line in f:
            if line.startswith("# >>> docker-only"):
                skip = True
            elif line.startswith("# <<< docker-only"):
                skip = False
            elif skip:
                continue
            elif line.startswith("# @local-gateways@"):
                out.append("    server gw-1 127.0.0.1:18090 check\n"
                           "    server gw-2 127.0.0.1:18091 check\n")
            else:
                out.append(line)
    path = os.path.join(tmp, "haproxy-local.cfg")
    with open(path, "w") as f:
        f.writelines(out)
    return path


def check_haproxy(tmp):
    cfg = os.path.join(DEPLOY, "haproxy", "haproxy.cfg")
    text = open(cfg).read()
    for needle in ("timeout tunnel", "balance leastconn", "mode http", "uri /healthz",
                   "server-template", "resolvers docker", "127.0.0.11:53",
                   '"${MESHSIG_LB_BIND}"', "# @local-gateways@"):
        check(needle in text, f"haproxy.cfg has {needle}")
    env = clean_env(MESHSIG_LB_BIND=":8080", MESHSIG_LB_STATS_BIND=":8404")
    r = subprocess.run(["haproxy", "-c", "-f", cfg], env=env, capture_output=True, text=True,
                       timeout=30)
    check(r.returncode == 0, f"haproxy -c accepts haproxy.cfg as compose runs it {r.stderr[-300:]}")
    env = clean_env(MESHSIG_LB_BIND="127.0.0.1:18080", MESHSIG_LB_STATS_BIND="127.0.0.1:18089")
    local = render_local_haproxy(tmp)
    r = subprocess.run(["haproxy", "-c", "-f", local], env=env, capture_output=True, text=True,
                       timeout=30)
    check(r.returncode == 0, f"haproxy -c accepts the local rendering {r.stderr[-300:]}")
    check("resolvers" not in open(local).read(), "the local rendering has no Docker DNS")


def check_nats(tmp):
    env = clean_env(NATS_SERVER_NAME="nats-1", NATS_LISTEN="0.0.0.0:4222",
                    NATS_HTTP="0.0.0.0:8222", NATS_CLUSTER_LISTEN="0.0.0.0:6222",
                    NATS_STORE_DIR=os.path.join(tmp, "js"),
                    NATS_ROUTE_1="nats-route://nats-1:6222", NATS_ROUTE_2="nats-route://nats-2:6222",
                    NATS_ROUTE_3="nats-route://nats-3:6222")
    conf = os.path.join(DEPLOY, "nats", "nats.conf")
    # Without the passwords auth.conf needs, the server must refuse to start.
    r = subprocess.run(["nats-server", "-t", "-c", conf], env=env, capture_output=True,
                       text=True, timeout=30)
    check(r.returncode != 0, "nats-server refuses nats.conf without the NATS passwords")
    env.update(MESHSIG_NATS_COORDINATOR_PASSWORD="c", MESHSIG_NATS_GATEWAY_PASSWORD="g",
               MESHSIG_NATS_BACKEND_PASSWORD="b")
    r = subprocess.run(["nats-server", "-t", "-c", conf], env=env, capture_output=True,
                       text=True, timeout=30)
    check(r.returncode == 0, f"nats-server -t accepts nats.conf {r.stderr.strip()[-200:]}")
    text = open(conf).read()
    check(re.search(r"^jetstream\s*\{", text, re.M) is not None, "nats.conf enables JetStream")
    check(re.search(r"^include\s+\./auth\.conf", text, re.M) is not None,
          "nats.conf includes auth.conf (users and permissions)")
    check(re.search(r"^cluster\s*\{", text, re.M) is not None and "routes" in text,
          "nats.conf has a cluster with routes")


def check_dockerfile():
    with open(os.path.join(DEPLOY, "Dockerfile")) as f:
        text = f.read()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    check(len(froms) == 2 and all(f.startswith(("debian:12", "debian:bookworm")) for f in froms),
          f"Dockerfile: two Debian 12 stages: {froms}")
    final = text[text.rfind("\nFROM "):]
    check("install-deps.sh\n" in text or "install-deps.sh &&" in text,
          "builder stage runs deploy/install-deps.sh")
    check("install-deps.sh --runtime" in final, "runtime stage runs install-deps.sh --runtime")
    for flag in ("-DMESHSIG_TESTS=OFF", "-DMESHSIG_BENCH=OFF", "-DCMAKE_BUILD_TYPE=Release",
                 "-G Ninja"):
        check(flag in text, f"Dockerfile builds with {flag}")
    user = re.findall(r"^USER\s+(\S+)", final, re.M)
    check(bool(user) and not user[-1].startswith(("root", "0")), f"runs as non-root: {user}")
    check(re.search(r"^HEALTHCHECK\s", final, re.M) is not None, "has a HEALTHCHECK")
    check('CMD ["meshsig-gateway"]' in final, "default command is the gateway")
    for f in ("meshsig-gateway", "meshsig-coordinator", "clients/js/web"):
        check(f in text, f"image carries {f}")
    with open(os.path.join(SRC, ".dockerignore")) as f:
        ign = f.read().split()
    for pat in (".git", "build", "build-*", "deploy/.env"):
        check(pat in ign, f".dockerignore excludes {pat}")


def main():
    missing = [t for t in ("docker-compose", "haproxy", "nats-server") if not shutil.which(t)]
    if missing:
        print(f"missing {missing}: run deploy/install-deps.sh", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="meshsig-deploy-") as tmp:
        check_compose(tmp)
        check_haproxy(tmp)
        check_nats(tmp)
        check_dockerfile()
    if FAILS:
        print(f"\n{len(FAILS)} check(s) failed", file=sys.stderr)
        return 1
    print("\nall deployment checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
