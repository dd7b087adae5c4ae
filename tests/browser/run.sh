#!/usr/bin/env bash
# Browser tests of the dashboard: playwright-core (npm, pinned in package-lock.json; it downloads
# no browser) drives Debian's Chromium against the debug binary target/debug/traffix, which
# serves assets/ from the work tree. Installs only what is missing (chromium, nodejs + npm, curl;
# node_modules when it is missing or older than package-lock.json), so a second run installs
# nothing. Writes the screenshots of docs/screenshots/. Called by tests/run-all.sh after the
# cargo tests; runs on its own too.
set -euo pipefail
cd "$(dirname "$0")"
ROOT="$(cd ../.. && pwd)"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

need_apt=()
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> installing ${need_apt[*]} (apt)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 18 ]; then
  echo "tests/browser needs Node.js 18 or newer (found $(node --version))" >&2
  exit 1
fi

# node_modules is current when it was installed from this very package-lock.json.
stamp=node_modules/.traffix-lock.sha256
want="$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1)"
if [ ! -d node_modules/playwright-core ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "==> npm ci (tests/browser)"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
  echo "$want" >"$stamp"
fi

# TRAFFIX_BIN names a prebuilt binary; otherwise the debug build is brought up to date (a no-op
# after tests/run-all.sh's `cargo test`), so a run on its own never drives a stale binary.
if [ -z "${TRAFFIX_BIN:-}" ]; then
  echo "==> cargo build --bin traffix"
  (cd "$ROOT" && cargo build --locked --quiet --bin traffix </dev/null)
  TRAFFIX_BIN="$ROOT/target/debug/traffix"
fi
export TRAFFIX_BIN

echo "==> browser tests (node --test tests/browser, Chromium $(/usr/bin/chromium --version 2>/dev/null | grep -o '[0-9][0-9.]*' | head -1))"
exec node --test dashboard.test.mjs
