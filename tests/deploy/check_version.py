#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Unit test: one version everywhere it is written down by hand.

project(VERSION) in CMakeLists.txt is the version; clients/js/package.json and its lock
file, the default of the Docker build argument MESHSIG_VERSION (the image's
org.opencontainers.image.version label) and the newest release in CHANGELOG.md must equal
it. LICENSE must be the Apache License 2.0 that the SPDX lines name. What the binaries
report (--version, /metrics, /v1/cluster) is checked by tests/integration/test_version.c,
the .deb's version by tests/package/test_deb.py.
"""
import json
import os
import re
import sys

SRC = os.environ.get("MESHSIG_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
FAILS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILS.append(what)
    return cond


def read(rel):
    with open(os.path.join(SRC, rel), encoding="utf-8") as f:
        return f.read()


def main():
    m = re.search(r"^project\(meshsig\s+VERSION\s+(\d+\.\d+\.\d+)\b", read("CMakeLists.txt"), re.M)
    if not check(m is not None, "CMakeLists.txt: project(meshsig VERSION X.Y.Z)"):
        return 1
    version = m.group(1)
    print(f"     version {version}")

    pkg = json.loads(read("clients/js/package.json"))
    check(pkg.get("version") == version, f"clients/js/package.json version {pkg.get('version')}")
    lock = json.loads(read("clients/js/package-lock.json"))
    check(lock.get("version") == version
          and lock.get("packages", {}).get("", {}).get("version") == version,
          "clients/js/package-lock.json version (top level and packages[''])")
    check(pkg.get("license") == "Apache-2.0", "clients/js/package.json license Apache-2.0")

    docker = read("deploy/Dockerfile")
    args = re.findall(r"^ARG\s+MESHSIG_VERSION=(\S+)", docker, re.M)
    check(args == [version], f"deploy/Dockerfile: ARG MESHSIG_VERSION={version} (found {args})")
    check(re.search(r'org\.opencontainers\.image\.version="\$\{MESHSIG_VERSION\}"', docker)
          is not None, "deploy/Dockerfile labels org.opencontainers.image.version from the arg")
    final = docker[docker.rfind("\nFROM "):]
    check(re.search(r"^ARG\s+MESHSIG_VERSION\s*$", final, re.M) is not None,
          "deploy/Dockerfile: the runtime stage declares ARG MESHSIG_VERSION (labels see it)")

    changelog = read("CHANGELOG.md")
    releases = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - (\d{4}-\d\d-\d\d)$", changelog, re.M)
    check(bool(releases) and releases[0][0] == version,
          f"CHANGELOG.md: newest release is {version} (found {releases[:1]})")
    check(re.search(r"^## \[Unreleased\]$", changelog, re.M) is not None,
          "CHANGELOG.md: an [Unreleased] section")

    lic = read("LICENSE")
    check("Apache License" in lic and "Version 2.0, January 2004" in lic
          and "END OF TERMS AND CONDITIONS" in lic, "LICENSE is the Apache License 2.0 text")

    if FAILS:
        print(f"{len(FAILS)} check(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
