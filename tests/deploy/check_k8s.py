#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Unit test for deploy/k8s/: every YAML file parses, and the manifests have
what a rollout relies on: the kinds, one image for both processes, probes on
/healthz (and /readyz), resource requests, graceful shutdown, Secret and
ConfigMap references that resolve, a PodDisruptionBudget and an HPA aimed at
the gateway Deployment, and NATS chart values for a 3-node JetStream cluster.
Needs python3-yaml (deploy/install-deps.sh).
"""
import glob
import os
import re
import sys

import yaml

SRC = os.environ.get("MESHSIG_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
K8S = os.path.join(SRC, "deploy", "k8s")
FAILS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILS.append(what)
    return cond


def dig(obj, *path, default=None):
    for p in path:
        if isinstance(obj, dict) and p in obj:
            obj = obj[p]
        elif isinstance(obj, list) and isinstance(p, int) and p < len(obj):
            obj = obj[p]
        else:
            return default
    return obj


def load_all():
    docs = {}  # (kind, name) -> doc
    files = sorted(glob.glob(os.path.join(K8S, "*.yaml")) + glob.glob(os.path.join(K8S, "*.yml")))
    check(len(files) >= 5, f"deploy/k8s has the manifests: {[os.path.basename(f) for f in files]}")
    other = {}
    for f in files:
        name = os.path.basename(f)
        try:
            with open(f) as fh:
                parsed = [d for d in yaml.safe_load_all(fh) if d is not None]
        except yaml.YAMLError as e:
            check(False, f"{name} parses: {e}")
            continue
        check(True, f"{name} parses ({len(parsed)} document(s))")
        for d in parsed:
            kind = d.get("kind")
            if kind and dig(d, "metadata", "name"):
                key = (kind, d["metadata"]["name"])
                check(key not in docs, f"{kind}/{key[1]} is defined once")
                docs[key] = d
            else:
                other[name] = d
    return docs, other


def container(dep):
    cs = dig(dep, "spec", "template", "spec", "containers", default=[])
    return cs[0] if cs else {}


def env_map(c):
    return {e["name"]: e for e in c.get("env", [])}


def check_probe(c, kind, path, who):
    p = c.get(kind) or {}
    check(dig(p, "httpGet", "path") == path, f"{who} {kind} GET {path}")


def check_workload(docs, name, port, args0, secrets, configmaps):
    dep = docs.get(("Deployment", name)) or docs.get(("StatefulSet", name))
    if not check(dep is not None, f"Deployment {name} exists"):
        return None
    c = container(dep)
    check(str(c.get("image", "")).split(":")[0].endswith("meshsig"), f"{name} image: {c.get('image')}")
    check((c.get("args") or c.get("command") or [None])[0] == args0, f"{name} runs {args0}")
    check(any(p.get("containerPort") == port for p in c.get("ports", [])), f"{name} port {port}")
    check(bool(dig(c, "resources", "requests", "cpu")) and
          bool(dig(c, "resources", "requests", "memory")), f"{name} has resource requests")
    check_probe(c, "livenessProbe", "/healthz", name)
    check(dig(dep, "spec", "template", "spec", "securityContext", "runAsNonRoot") is True,
          f"{name} runs as non-root")
    sel = dig(dep, "spec", "selector", "matchLabels", default={})
    labels = dig(dep, "spec", "template", "metadata", "labels", default={})
    check(bool(sel) and all(labels.get(k) == v for k, v in sel.items()),
          f"{name} selector matches its pod labels")
    for e in c.get("env", []):
        ref = dig(e, "valueFrom", "secretKeyRef")
        if ref:
            secrets.append((name, ref.get("name"), ref.get("key")))
    for ef in c.get("envFrom", []):
        if "configMapRef" in ef:
            configmaps.append((name, ef["configMapRef"].get("name")))
    return dep


def auth_conf_roles():
    """deploy/nats/auth.conf's permission blocks: role -> (publish, subscribe, responses)."""
    text = open(os.path.join(K8S, "..", "nats", "auth.conf")).read()
    text = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    roles = {}
    for m in re.finditer(r"^MESHSIG_(\w+) = \{(.*?)^\}", text, re.M | re.S):
        body = m.group(2)
        lists = {}
        for kind in ("publish", "subscribe"):
            b = re.search(kind + r"\s*=\s*\{(.*?)\n  \}", body, re.S)
            blk = b.group(1) if b else ""
            for verb in ("allow", "deny"):
                v = re.search(verb + r"\s*=\s*\[(.*?)\]", blk, re.S)
                lists[kind + "." + verb] = sorted(re.findall(r'"([^"]+)"', v.group(1))) if v else []
        roles[m.group(1).lower()] = (lists, "allow_responses = true" in body)
    return roles


def check_nats_users(nv, secret_keys):
    users = dig(nv, "config", "merge", "authorization", "users", default=[]) or []
    roles = auth_conf_roles()
    check(set(roles) == {"coordinator", "gateway", "backend"}, f"auth.conf roles: {sorted(roles)}")
    by_name = {u.get("user"): u for u in users}
    check(set(by_name) == set(roles), f"NATS chart users are auth.conf's: {sorted(by_name)}")
    env = dig(nv, "container", "env", default={}) or {}
    for role, (lists, resp) in roles.items():
        u = by_name.get(role, {})
        perm = u.get("permissions", {})
        same = all(sorted(dig(perm, *k.split("."), default=[]) or []) == v for k, v in lists.items())
        check(same and lists["publish.allow"] and bool(perm.get("allow_responses")) == resp,
              f"NATS chart user {role} has auth.conf's permissions")
        var = f"MESHSIG_NATS_{role.upper()}_PASSWORD"
        check(u.get("password") == f"<< ${var} >>", f"{role}'s password comes from ${var}")
        key = dig(env, var, "valueFrom", "secretKeyRef", "key")
        check(key == f"nats-{role}-password" and key in secret_keys,
              f"{var} comes from meshsig-secrets/{key}")


def main():
    docs, other = load_all()
    secrets, configmaps = [], []

    gw = check_workload(docs, "meshsig-gateway", 8080, "meshsig-gateway", secrets, configmaps)
    if gw:
        c = container(gw)
        check_probe(c, "readinessProbe", "/healthz", "gateway")
        check(bool(dig(c, "lifecycle", "preStop")), "gateway has a preStop hook")
        grace = dig(gw, "spec", "template", "spec", "terminationGracePeriodSeconds", default=0)
        check(grace >= 15, f"gateway terminationGracePeriodSeconds leaves time to drain: {grace}")
        env = env_map(c)
        check(dig(env.get("MESHSIG_JWT_SECRET", {}), "valueFrom", "secretKeyRef") is not None,
              "gateway JWT secret comes from a Secret")
        check("MESHSIG_INSECURE_DEV" not in env, "gateway is not in insecure dev mode")
        check(env.get("MESHSIG_LISTEN", {}).get("value", "").endswith(":8080"), "gateway listens on 8080")
    co = check_workload(docs, "meshsig-coordinator", 8081, "meshsig-coordinator", secrets,
                        configmaps)
    if co:
        c = container(co)
        check(dig(co, "spec", "replicas") == 2 or co["kind"] == "StatefulSet",
              f"2 coordinators: replicas={dig(co, 'spec', 'replicas')}")
        check_probe(c, "readinessProbe", "/readyz", "coordinator")
        env = env_map(c)
        check(dig(env.get("MESHSIG_ADMIN_TOKEN", {}), "valueFrom", "secretKeyRef") is not None,
              "coordinator admin token comes from a Secret")
        check("MESHSIG_INSECURE_DEV" not in env, "coordinator is not in insecure dev mode")
        check(env.get("MESHSIG_JS_REPLICAS", {}).get("value") == "3",
              "coordinator keeps leases and stored emits on 3 NATS nodes")
    if gw and co:
        check(container(gw).get("image") == container(co).get("image"),
              "gateway and coordinator use the same image")

    # Services select the workloads.
    for svc_name, dep_name, port in (("meshsig-gateway", "meshsig-gateway", 8080),
                                     ("meshsig-admin", "meshsig-coordinator", 8081)):
        svc = docs.get(("Service", svc_name))
        if check(svc is not None, f"Service {svc_name} exists"):
            dep = docs.get(("Deployment", dep_name)) or {}
            labels = dig(dep, "spec", "template", "metadata", "labels", default={})
            sel = dig(svc, "spec", "selector", default={})
            check(bool(sel) and all(labels.get(k) == v for k, v in sel.items()),
                  f"Service {svc_name} selects {dep_name}")
            check(any(p.get("port") == port for p in dig(svc, "spec", "ports", default=[])),
                  f"Service {svc_name} port {port}")

    pdb = docs.get(("PodDisruptionBudget", "meshsig-gateway"))
    if check(pdb is not None, "gateway PodDisruptionBudget exists"):
        check(dig(pdb, "spec", "selector", "matchLabels") ==
              dig(gw or {}, "spec", "selector", "matchLabels"), "PDB selects the gateways")
    hpa = docs.get(("HorizontalPodAutoscaler", "meshsig-gateway"))
    if check(hpa is not None, "gateway HorizontalPodAutoscaler exists"):
        check(dig(hpa, "spec", "scaleTargetRef", "name") == "meshsig-gateway" and
              dig(hpa, "spec", "scaleTargetRef", "kind") == "Deployment",
              "HPA scales the gateway Deployment")
        check(dig(hpa, "spec", "minReplicas", default=0) >= 2, "HPA keeps at least 2 gateways")

    # References resolve: the ConfigMap is defined; the Secret keys are documented.
    cm = docs.get(("ConfigMap", "meshsig-config"))
    check(cm is not None and "MESHSIG_NATS" in (cm.get("data") or {}),
          "ConfigMap meshsig-config sets MESHSIG_NATS")
    for who, name in configmaps:
        check(("ConfigMap", name) in docs, f"{who} envFrom ConfigMap {name} is defined")
    sec = docs.get(("Secret", "meshsig-secrets"))
    keys = set((sec or {}).get("stringData", {})) | set((sec or {}).get("data", {}))
    check(len(secrets) >= 2, f"Secret references: {secrets}")
    for who, name, key in secrets:
        check(name == "meshsig-secrets" and key in keys,
              f"{who} secretKeyRef {name}/{key} is in secret.example.yaml")

    kust = other.get("kustomization.yaml")
    if kust:
        res = set(kust.get("resources", []))
        check("secret.example.yaml" not in res, "kustomization does not apply the example Secret")
        for r in res:
            check(os.path.exists(os.path.join(K8S, r)), f"kustomization resource {r} exists")

    nv = other.get("nats-values.yaml")
    if check(nv is not None, "nats-values.yaml exists"):
        check(dig(nv, "config", "cluster", "enabled") is True and
              dig(nv, "config", "cluster", "replicas") == 3, "NATS chart: 3-node cluster")
        check(dig(nv, "config", "jetstream", "enabled") is True, "NATS chart: JetStream enabled")
        check(dig(nv, "config", "jetstream", "fileStore", "enabled") is True,
              "NATS chart: JetStream on file storage")
        check_nats_users(nv, keys)
    nats_url = (cm or {}).get("data", {}).get("MESHSIG_NATS", "")
    check(nats_url.startswith("nats://nats:4222"), f"MESHSIG_NATS points at the chart's Service: {nats_url}")

    readme = os.path.join(K8S, "README.md")
    if check(os.path.exists(readme), "deploy/k8s/README.md exists"):
        text = open(readme).read()
        check("helm install" in text and "nats-values.yaml" in text,
              "README installs NATS with the Helm chart and nats-values.yaml")

    if FAILS:
        print(f"\n{len(FAILS)} check(s) failed", file=sys.stderr)
        return 1
    print("\nall k8s checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
