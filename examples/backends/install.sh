#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs the example backends' npm packages (nats, protobufjs) when node_modules is missing
# or older than package-lock.json.
# Idempotent and quiet when there is nothing to do. Never downloads a browser.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v npm >/dev/null 2>&1; then
    echo "examples/backends/install.sh: npm not found; the backend examples test will be skipped" >&2
    exit 0
fi
stamp=node_modules/.package-lock.json   # npm writes it on every install
if [ -f package-lock.json ] && [ -f "$stamp" ] && [ ! package-lock.json -nt "$stamp" ] \
    && [ ! package.json -nt "$stamp" ]; then
    exit 0
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if [ -f package-lock.json ]; then
    cmd=(npm ci --no-audit --no-fund --loglevel=error)
else
    cmd=(npm install --no-audit --no-fund --loglevel=error)
fi
if ! "${cmd[@]}" >"$log" 2>&1; then
    cat "$log" >&2
    echo "examples/backends/install.sh: ${cmd[*]} failed" >&2
    exit 1
fi
touch "$stamp"
echo "examples/backends: npm packages installed"
