#!/usr/bin/env bash
# Builds the Traffix image from a packaged-build binary.
#   packaging/container/build.sh [BINARY] [-- extra podman/docker build arguments]
# BINARY defaults to target/release/traffix, built with --features system-paths when missing.
# BUILDER=docker to use docker; TAG (default localhost/traffix:latest); BASE (build argument).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="target/release/traffix"
if [ $# -gt 0 ] && [ "$1" != -- ]; then bin="$1"; shift; fi
[ $# -gt 0 ] && [ "$1" = -- ] && shift
if [ ! -x "$bin" ]; then
  cargo build --release --locked --features system-paths
fi
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp packaging/container/Containerfile packaging/container/entrypoint.sh "$ctx/"
cp "$bin" "$ctx/traffix"
mkdir -p "$ctx/rootfs/var/lib/traffix" "$ctx/rootfs/var/lib/traffix-node"
chmod 0700 "$ctx/rootfs/var/lib/traffix" "$ctx/rootfs/var/lib/traffix-node"
args=(-t "${TAG:-localhost/traffix:latest}" -f "$ctx/Containerfile")
[ -n "${BASE:-}" ] && args+=(--build-arg "BASE=$BASE")
# OCI images cannot carry a HEALTHCHECK: podman keeps it only in the docker format.
[ "${BUILDER:-podman}" = podman ] && args+=(--format docker)
"${BUILDER:-podman}" build "${args[@]}" "$@" "$ctx"
