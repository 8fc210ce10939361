#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs everything meshsig needs to build, test and run on Debian 12.
# Idempotent; prints nothing but a summary line when all is already there.
#   deploy/install-deps.sh            build + test + run dependencies
#   deploy/install-deps.sh --runtime  only what the binaries need at run time
#   deploy/install-deps.sh --browser  also chromium and the JS test packages
#   deploy/install-deps.sh --list-runtime-libs
#                                     prints the shared-library packages the binaries
#                                     need, comma-separated: the .deb's Depends (CMake)
set -euo pipefail

BUILD_PKGS=(
    build-essential cmake ninja-build pkg-config git
    libwebsockets-dev libev-dev libnats-dev protobuf-c-compiler libprotobuf-c-dev
    libevent-dev check libjwt-dev libjansson-dev uthash-dev libssl-dev libyaml-dev
    nats-server python3 curl ca-certificates procps iproute2
    haproxy docker-compose python3-yaml coturn
    clang libclang-rt-14-dev
    help2man systemd
    prometheus libfaketime
    iptables # partition tests: random packet loss (xt statistic) in their own netns
)
# What the binaries link (libwebsockets-evlib-ev is the libev plugin lws loads at run time).
RUNTIME_LIBS=(
    libwebsockets17 libwebsockets-evlib-ev libev4 libnats3.4 libprotobuf-c1 libevent-2.1-7 libevent-pthreads-2.1-7
    libjwt0 libjansson4 libyaml-0-2 libssl3
)
RUNTIME_PKGS=("${RUNTIME_LIBS[@]}" nats-server ca-certificates curl)
BROWSER_PKGS=(chromium)

want=("${BUILD_PKGS[@]}")
case "${1:-}" in
--runtime) want=("${RUNTIME_PKGS[@]}") ;;
--browser)
    want+=("${BROWSER_PKGS[@]}")
    # Node may come from Debian (nodejs + npm) or from a vendor package that
    # bundles npm and conflicts with Debian's npm: only ask for what is absent.
    command -v node >/dev/null || want+=(nodejs)
    command -v npm >/dev/null || want+=(npm)
    ;;
--list-runtime-libs)
    (IFS=,; echo "${RUNTIME_LIBS[*]}")
    exit 0
    ;;
"") ;;
*) echo "usage: $0 [--runtime|--browser|--list-runtime-libs]" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "install-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "install-deps: all ${#want[@]} packages present"
