#!/usr/bin/env bash
# Bounded fuzz run (CI): builds the cargo-fuzz targets in fuzz/ and runs each
# for FUZZ_SECONDS (default 60) from its corpus in the repo. Fails if
# cargo-fuzz cannot be installed, the targets do not build, or any target
# finds a crash, a hang (timeout) or a memory blow-up. Nothing here is
# skipped silently: there is no "fuzzing unavailable" pass.
#
# No nightly toolchain: the pinned stable toolchain accepts the -Z flags
# cargo fuzz passes when RUSTC_BOOTSTRAP=1 is set. See fuzz/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${FUZZ_SECONDS:-60}
flags=(-O --sanitizer none --codegen-units 16)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> cargo install cargo-fuzz --locked"
    cargo install cargo-fuzz --locked --version 0.13.2
fi

export RUSTC_BOOTSTRAP=1
cd fuzz
echo "==> cargo fuzz build ${flags[*]}"
build_log=$(mktemp)
if ! cargo fuzz build "${flags[@]}" 2>&1 | tee "$build_log"; then
    # A failed link prints the whole linker command (tens of kilobytes on
    # one line) before the linker's own words: repeat those, cut short.
    echo "fuzz build failed; its messages without the linker command line:" >&2
    grep -v '^ *= note: *"cc"' "$build_log" | cut -c1-400 | grep -iE "error|ld:|collect2|signal|space|memory|killed" | tail -n 40 >&2 || true
    echo "disk free: $(df -h --output=avail . | tail -1), memory available: $(free -m | awk '/^Mem:/ {print $7}') MiB" >&2
    rm -f "$build_log"
    exit 1
fi
rm -f "$build_log"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
targets=$(cargo fuzz list)
[ -n "$targets" ] || { echo "no fuzz targets found" >&2; exit 1; }
for t in $targets; do
    [ -d "corpus/$t" ] || { echo "corpus/$t is missing" >&2; exit 1; }
    echo "==> cargo fuzz run $t for ${secs}s"
    # New inputs go to a scratch directory; the repo corpus is only read.
    mkdir -p "$scratch/$t"
    log="$scratch/$t.log"
    if cargo fuzz run "${flags[@]}" "$t" "$scratch/$t" "corpus/$t" -- \
        -max_total_time="$secs" -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 \
        >"$log" 2>&1; then
        status=0
    else
        status=$?
    fi
    grep -E "^(#[0-9]+ +(INITED|DONE)|stat::number_of_executed_units|stat::peak_rss_mb)" "$log" || true
    if [ "$status" -ne 0 ]; then
        tail -n 60 "$log" >&2
        echo "fuzz target $t failed (exit $status); the input is in fuzz/artifacts/$t/" >&2
        exit "$status"
    fi
done
echo "fuzz: every target ran ${secs}s without a finding"
