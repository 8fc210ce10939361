#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# HEALTHCHECK for the meshsig image, whichever process it runs: the gateway
# answers /healthz on MESHSIG_LISTEN, the coordinator on MESHSIG_ADMIN_LISTEN.
# A container runs one of them, so the first port that answers is that process.
# MESHSIG_HEALTH_URL overrides the guess (e.g. when --listen is passed as a flag).
set -u
if [ -n "${MESHSIG_HEALTH_URL:-}" ]; then
    exec curl -fsS -m 2 -o /dev/null "$MESHSIG_HEALTH_URL"
fi
for addr in "${MESHSIG_LISTEN:-}" "${MESHSIG_ADMIN_LISTEN:-}"; do
    [ -n "$addr" ] || continue
    curl -fsS -m 2 -o /dev/null "http://127.0.0.1:${addr##*:}/healthz" && exit 0
done
exit 1
