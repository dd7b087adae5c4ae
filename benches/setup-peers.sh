#!/usr/bin/env bash
# Installs the peers the tunnel benchmark compares against (not needed by the tests).
set -euo pipefail
if ! command -v sockd >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dante-server
  systemctl disable --now danted >/dev/null 2>&1 || true
fi
command -v sslocal >/dev/null 2>&1 || cargo install --locked shadowsocks-rust
command -v nstat >/dev/null 2>&1 || apt-get install -y -qq iproute2
echo "peers ready: $(command -v sslocal) $(command -v ssserver) $(command -v sockd)"
