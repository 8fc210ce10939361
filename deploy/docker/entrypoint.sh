#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Container entrypoint for the meshsig image: names the process after the
# container's hostname unless MESHSIG_ID is set (scaled gateways each get a
# unique, recognisable id), then execs it so SIGTERM reaches it directly.
set -eu
if [ -z "${MESHSIG_ID:-}" ]; then
    case "${1:-}" in
    meshsig-gateway | */meshsig-gateway) MESHSIG_ID="gw-$(hostname)" ;;
    meshsig-coordinator | */meshsig-coordinator) MESHSIG_ID="coord-$(hostname)" ;;
    esac
    [ -z "${MESHSIG_ID:-}" ] || export MESHSIG_ID
fi
exec "$@"
