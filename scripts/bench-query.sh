#!/usr/bin/env bash
# Query benchmark: loads one generated data set (1000 series, 7 days at 15 s,
# ~40 M samples) into `strata serve` and into Prometheus 2.42 by remote write,
# runs `strata compact`, then times a fixed set of dashboard queries (rate,
# sum by, histogram_quantile, topk, 7-day ranges) on both, warm and cold
# (cold: restarted, empty cache, 30 ms injected before every object-store
# read of Strata), compares the answers and prints a table with the ratios.
#
# usage: scripts/bench-query.sh [query_bench options...]
#   --series N --days N --runs N --latency-ms N --drop-caches --only NAME --keep
#   (all options: target-release/release/query_bench --help)
#
# Release binaries are built into a separate target directory
# ($CARGO_TARGET_DIR, default ../target-release), so the benchmark's build
# does not wait for, or invalidate, the debug builds of tests.
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-$(cd .. && pwd)/target-release}"
CARGO_TARGET_DIR="$target" nice -n 10 cargo build -q --release \
    -p strata -p strata-tests --bin strata --bin query_bench

scripts/install-test-deps.sh >/dev/null

exec "$target/release/query_bench" --strata-bin "$target/release/strata" "$@"
