#!/usr/bin/env bash
# Storage benchmark: bytes per sample on object storage after compaction,
# Strata against Prometheus 2.42's TSDB on exactly the same samples.
#
# For each data set the samples are loaded into both stores:
#   - Prometheus: written as OpenMetrics text and imported with
#     `promtool tsdb create-blocks-from openmetrics --max-block-duration=24h`
#     (18h blocks, what a Prometheus with the default 15d retention compacts
#     to); its block directories (chunks, index, meta.json, tombstones) are
#     measured.
#   - Strata: remote write into `strata serve` (local storage in a temporary
#     directory, `[compact] every = "0s"` so nothing compacts while loading),
#     then one timed `strata compact` with partitions 2h, 12h, 24h; blocks,
#     manifest and any segments left are measured.
# A sample of series is then read back from both (Strata through the query
# API, Prometheus through `promtool tsdb dump`) and compared with the source:
# timestamps exactly, values bit for bit. It prints one table: samples, series,
# bytes and bytes/sample of each store, the ratio, compaction time and
# samples/s, and the per-pass figures from `strata compact`'s log. Nothing is
# asserted: it is a benchmark.
#
# Data sets:
#   generated  realistic generated data (counters with resets, gauges, classic
#              histograms; 15 s interval), from strata_tests::datagen
#   real       what a real Prometheus scraped: exported from its TSDB with
#              `promtool tsdb dump` (works on a live data directory)
#
# usage: scripts/bench-storage.sh [--capture DURATION [--capture-dir DIR]] [storage_bench options...]
#   --capture DURATION   first capture real data: start prometheus-node-exporter
#                        and Prometheus (15 s scrapes of node_exporter and of
#                        itself) in DIR, wait DURATION (sleep syntax: 30m, 6h,
#                        2d), stop both, then benchmark it as the real data set
#   --capture-dir DIR    where to keep the capture (default: a new directory
#                        under ${TMPDIR:-/tmp}; it is kept and printed)
# storage_bench options (see `storage_bench --help`):
#   --datasets generated,real   default: generated, plus real if a real source is given
#   --series N --span 2d --interval 15s --seed N      size of the generated data
#   --real-tsdb DIR | --real-dump FILE                 the real data source
#   --real-shift 1d        move real timestamps back (so the newest partition is complete)
#   --partitions 2h,12h,24h --prom-max-block-duration 24h
#   --verify-series N      series compared bit for bit (default 100)
#   --work-dir DIR         keep everything (data, OpenMetrics file, logs) in DIR
#
# Examples:
#   scripts/bench-storage.sh                                  # small: 1000 series x 2 days, a few minutes
#   scripts/bench-storage.sh --series 5000 --span 7d          # bigger
#   scripts/bench-storage.sh --real-tsdb /var/lib/prometheus/metrics2
#   scripts/bench-storage.sh --capture 6h                     # fresh real data on this machine
#
# Binaries are release builds, brought up to date here (respects CARGO_TARGET_DIR).
# Needs promtool (Debian package `prometheus`), and for --capture also
# `prometheus-node-exporter`; both are installed with apt-get if missing.
# Resources: the samples are held in memory (16 bytes each), and the
# OpenMetrics file for promtool takes about 100 bytes per sample on disk while
# it is imported (1000 series x 2 days = 11.5 M samples: 1.2 GB; 5000 x 3 days:
# 9 GB). Object-store requests per pass come from `strata compact`'s
# "compaction pass done" log lines.
set -euo pipefail
cd "$(dirname "$0")/.."

capture=""
capture_dir=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --capture) capture="$2"; shift 2 ;;
        --capture-dir) capture_dir="$2"; shift 2 ;;
        *) break ;;
    esac
done

apt_install() {
    local sudo=""
    if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
    echo "bench-storage: installing Debian package(s) $*"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if [[ ! -x /usr/bin/promtool || ! -x /usr/bin/prometheus ]]; then apt_install prometheus; fi
if [[ -n "$capture" && ! -x /usr/bin/prometheus-node-exporter ]]; then apt_install prometheus-node-exporter; fi

target_dir="${CARGO_TARGET_DIR:-target}"
cargo build -q --release -p strata -p strata-tests --bin strata --bin storage_bench

# A loopback port nobody listens on.
free_port() {
    local p
    while true; do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
}

extra=()
if [[ -n "$capture" ]]; then
    if [[ -z "$capture_dir" ]]; then
        capture_dir=$(mktemp -d "${TMPDIR:-/tmp}/strata-capture-XXXXXX")
    fi
    mkdir -p "$capture_dir"
    capture_dir=$(cd "$capture_dir" && pwd)
    node_port=$(free_port)
    prom_port=$(free_port)
    cat >"$capture_dir/prometheus.yml" <<EOF
global:
  scrape_interval: 15s
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ['127.0.0.1:$node_port']
  - job_name: prometheus
    static_configs:
      - targets: ['127.0.0.1:$prom_port']
EOF
    /usr/bin/prometheus-node-exporter --web.listen-address="127.0.0.1:$node_port" \
        >"$capture_dir/node.log" 2>&1 &
    node_pid=$!
    /usr/bin/prometheus --config.file="$capture_dir/prometheus.yml" \
        --storage.tsdb.path="$capture_dir/tsdb" --web.listen-address="127.0.0.1:$prom_port" \
        >"$capture_dir/prometheus.log" 2>&1 &
    prom_pid=$!
    # Stop exactly the two processes started here, also on Ctrl-C.
    trap 'kill "$prom_pid" "$node_pid" 2>/dev/null || true' EXIT
    echo "bench-storage: capturing real data for $capture into $capture_dir (node_exporter :$node_port, prometheus :$prom_port)"
    sleep "$capture"
    kill "$prom_pid" "$node_pid" 2>/dev/null || true
    wait "$prom_pid" "$node_pid" 2>/dev/null || true
    trap - EXIT
    echo "bench-storage: capture done: $capture_dir/tsdb"
    extra+=(--real-tsdb "$capture_dir/tsdb")
fi

exec "$target_dir/release/storage_bench" --strata-bin "$target_dir/release/strata" "${extra[@]}" "$@"
