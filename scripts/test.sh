#!/usr/bin/env bash
# The one test command: installs the test dependencies if missing, builds the
# strata binary, runs every test of the workspace (unit and end-to-end, debug
# build), then the PromQL conformance runner: every tier-1 eval must pass
# (tiers 2 and 3 are reported). Exits non-zero if anything failed, including
# when the conformance scripts are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh

echo "==> cargo build --bin strata"
cargo build --bin strata

echo "==> cargo test --workspace"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace 2>&1 | tee "$log"

echo "==> PromQL conformance (tier 1 required, tiers 2 and 3 reported)"
cargo run -q -p querier --bin promqltest -- --require-tier1 ../shared/conformance/promqltest

# One closing line for the whole run: the cargo tests (the conformance
# lines above report tiers 2 and 3, which may still fail by design).
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
