#!/usr/bin/env bash
# The billing benchmark's kill -9 loop: kill -9 the server during live downloads TRAFFIX_KILL_CYCLES
# times (default 1,000), restart it, and after every restart check `ledger verify` and that the
# client was never billed more than the bytes it received. Runs the e2e test
# `kill_9_during_downloads_keeps_the_ledger_consistent_and_never_overbills` in release mode, which
# counts violations instead of stopping at the first, then prints its summary line.
# Needs curl. About 1.1 s per cycle after the release build (~18 min for 1,000).
set -uo pipefail
cd "$(dirname "$0")/.."
export TRAFFIX_KILL_CYCLES="${TRAFFIX_KILL_CYCLES:-1000}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --release --test e2e kill_9 -- --nocapture 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
echo
grep -E '^kill-9 loop:' "$log" || echo "kill-9 loop: no summary (the run stopped early; see above)"
exit "$status"
