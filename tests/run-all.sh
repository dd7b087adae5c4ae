#!/usr/bin/env bash
# Runs every test of the project: formatting, lints, unit, contract-vector, architecture and
# end-to-end tests. Installs what the tests need first (idempotent; Debian + pip).
# Benchmarks run here only as a tiny smoke (benches/smoke.sh) so they keep compiling and running;
# their real runs: docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3 python3-pip)
# Debian's ACME test server (and its DNS), for tests/e2e/acme.rs.
command -v pebble >/dev/null 2>&1 && command -v pebble-challtestsrv >/dev/null 2>&1 || need_apt+=(pebble)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> installing ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}";
  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"; fi
fi
if ! python3 -c 'import requests, socks, python_socks, mmdb_writer, netaddr' >/dev/null 2>&1; then
  echo "==> installing python test clients (requests[socks], python-socks, mmdb-writer)"
  python3 -m pip install --quiet --disable-pip-version-check 'requests[socks]' python-socks mmdb-writer \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages 'requests[socks]' python-socks mmdb-writer
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings
echo "==> cargo test"
cargo test --locked
echo "==> benchmark smoke at tiny scale: benches/smoke.sh"
benches/smoke.sh
tests/browser/run.sh
echo "==> android core (Kotlin/JVM): android/scripts/test-core.sh"
android/scripts/test-core.sh
echo "==> android app (aapt2 link against framework-res, R references, ktlint): android/scripts/check-app.sh"
android/scripts/check-app.sh
echo "==> packaging (.deb, systemd units, container): packaging/test-packaging.sh"
packaging/test-packaging.sh
echo "==> all tests passed"
