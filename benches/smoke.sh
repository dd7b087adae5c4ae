#!/usr/bin/env bash
# CI smoke of the benchmarks that have a tiny scale (issue 19 item 5): benchmarks are not tests,
# but this keeps them compiling and running. The debug build (the `test` profile: no release
# build in CI), so no figure printed here means anything; docs/benchmarks.md has the real runs.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "==> benches/fleet.rs at tiny scale (50 nodes, 10 clients, 5 s idle, 10 s soak)"
TRAFFIX_BENCH_SCALE=0.005 cargo test --locked --bench fleet
echo "==> benches/tunnel.rs at tiny scale (direct TCP and traffix; the peers left out)"
TRAFFIX_BENCH_SCALE=0.01 TRAFFIX_BENCH_PEERS=0 cargo test --locked --bench tunnel
echo "==> benches/billing.rs at tiny scale (100 sessions, 3 s of steady flushes)"
TRAFFIX_BENCH_SESSIONS=100 TRAFFIX_BENCH_FLUSH_SECS=3 cargo test --locked --bench billing
