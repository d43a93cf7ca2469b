#!/usr/bin/env bash
# Ingest benchmark: sends the same pre-encoded remote-write requests (10 M
# samples, 5000 series, 8 concurrent senders, ~2000 samples per request) to
# `strata serve` and to Prometheus 2.42 (--web.enable-remote-write-receiver),
# and prints samples/s for both and the ratio strata/prometheus.
#
# usage: scripts/bench-ingest.sh [--release | --debug] [ingest_bench options...]
#   --release   benchmark target/release/strata (built or brought up to date)
#   --debug     benchmark target/debug/strata (built or brought up to date)
#   default     target/release/strata if it exists, else target/debug/strata
# ingest_bench options: --series N --samples-per-series N --senders N
#   --samples-per-request N --interval-ms N --target both|strata|prometheus --no-verify
#   --protocol remote-write|remote-write-v2|influx|otlp|m3-json (all but remote-write: Strata only)
set -euo pipefail
cd "$(dirname "$0")/.."

profile=""
case "${1:-}" in
    --release) profile=release; shift ;;
    --debug) profile=debug; shift ;;
esac

# Binaries live in $CARGO_TARGET_DIR when set (e.g. a shared release target
# directory), else in target/.
target_dir="${CARGO_TARGET_DIR:-target}"
if [[ -z "$profile" ]]; then
    if [[ -x "$target_dir/release/strata" ]]; then profile=release; else profile=debug; fi
fi
# Bring the chosen binary up to date with the sources (a clean release build takes ~20 min).
if [[ "$profile" == release ]]; then
    cargo build -q --release --bin strata
else
    cargo build -q --bin strata
fi
strata_bin="$(cd "$target_dir" && pwd)/$profile/strata"
echo "bench-ingest: strata build: $profile ($strata_bin)"

scripts/install-test-deps.sh >/dev/null

# The sender is built like Strata, so a debug sender never caps a release run
# (it only ships pre-encoded bytes, but HTTP in a debug build is slow).
if [[ "$profile" == release ]]; then
    cargo build -q --release -p strata-tests --bin ingest_bench
else
    cargo build -q -p strata-tests --bin ingest_bench
fi
exec "$target_dir/$profile/ingest_bench" --strata-bin "$strata_bin" "$@"
