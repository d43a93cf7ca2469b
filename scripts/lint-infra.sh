#!/usr/bin/env bash
# Lints infra/: the CloudFormation/SAM templates with cfn-lint (PyPI package,
# installed into .ci/venv if missing), and the local compose setup with a
# structural check in Python (plus `docker compose config` where the compose
# plugin exists). No AWS account or Docker daemon is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.ci/venv
CFN_LINT_VERSION=1.51.0
if [[ ! -x $VENV/bin/cfn-lint ]]; then
    echo "lint-infra: installing cfn-lint $CFN_LINT_VERSION into $VENV"
    [[ -x $VENV/bin/python ]] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "cfn-lint==$CFN_LINT_VERSION"
fi

echo "==> cfn-lint infra/*.yaml ($("$VENV/bin/cfn-lint" --version))"
"$VENV/bin/cfn-lint" infra/*.yaml

echo "==> infra/compose and infra/Dockerfile (structure)"
# PyYAML comes with cfn-lint; tomllib with Python >= 3.11.
"$VENV/bin/python" - <<'PY'
import os, re, sys, tomllib, yaml

errors = []
def check(ok, msg):
    if not ok:
        errors.append(msg)

root = "infra/compose"
with open(f"{root}/compose.yaml") as f:
    compose = yaml.safe_load(f)
services = compose.get("services") or {}
for name in ["minio", "minio-init", "strata", "prometheus", "grafana"]:
    check(name in services, f"compose: service {name!r} missing")
declared_volumes = set((compose.get("volumes") or {}).keys())
for name, svc in services.items():
    check("image" in svc or "build" in svc, f"compose: {name}: neither image nor build")
    deps = svc.get("depends_on") or []
    for dep in deps if isinstance(deps, list) else deps.keys():
        check(dep in services, f"compose: {name} depends on unknown service {dep!r}")
    for vol in svc.get("volumes") or []:
        src = vol.split(":")[0]
        if src.startswith("."):
            check(os.path.exists(os.path.join(root, src)), f"compose: {name}: bind mount {src} does not exist")
        else:
            check(src in declared_volumes, f"compose: {name}: volume {src!r} not declared")
    for port in svc.get("ports") or []:
        check(str(port).startswith("127.0.0.1:"), f"compose: {name}: port {port} not bound to 127.0.0.1")

build = services.get("strata", {}).get("build", {})
context = os.path.normpath(os.path.join(root, build.get("context", ".")))
dockerfile = os.path.join(context, build.get("dockerfile", "Dockerfile"))
check(os.path.isfile(dockerfile), f"compose: strata: {dockerfile} does not exist")

# Strata's config: S3 on the bucket that minio-init creates.
with open(f"{root}/strata.toml", "rb") as f:
    strata = tomllib.load(f)
s3 = strata.get("storage", {}).get("s3", {})
check(strata.get("storage", {}).get("backend") == "s3", "strata.toml: storage.backend is not s3")
init = " ".join(services.get("minio-init", {}).get("command") or [])
check(f"local/{s3.get('bucket')}" in init, f"strata.toml: bucket {s3.get('bucket')!r} is not the one minio-init creates")
check(s3.get("endpoint", "").startswith("http://minio:"), "strata.toml: endpoint is not the minio service")

with open(f"{root}/prometheus.yml") as f:
    prom = yaml.safe_load(f)
urls = [rw.get("url", "") for rw in prom.get("remote_write") or []]
check(any(u.startswith("http://strata:9201/") for u in urls), "prometheus.yml: no remote_write to strata")

with open(f"{root}/grafana/provisioning/datasources/strata.yaml") as f:
    ds = yaml.safe_load(f)
check(any(d.get("type") == "prometheus" and d.get("url") == "http://strata:9201"
          for d in ds.get("datasources") or []), "grafana: no prometheus data source at http://strata:9201")

# Dockerfile: multi-stage, non-root final stage, an entry point.
with open("infra/Dockerfile") as f:
    lines = [l.strip() for l in f if l.strip() and not l.lstrip().startswith("#")]
froms = [i for i, l in enumerate(lines) if l.upper().startswith("FROM ")]
check(len(froms) >= 2, "Dockerfile: not multi-stage")
final = lines[froms[-1]:] if froms else []
users = [l.split()[1] for l in final if l.upper().startswith("USER ")]
check(bool(users) and not re.match(r"^(0|root)(:|$)", users[-1]), "Dockerfile: final stage runs as root")
check(any(l.upper().startswith("ENTRYPOINT ") for l in final), "Dockerfile: no ENTRYPOINT in the final stage")
check(os.path.isfile("infra/Dockerfile.dockerignore"), "infra/Dockerfile.dockerignore missing")

for e in errors:
    print(f"lint-infra: {e}", file=sys.stderr)
if errors:
    sys.exit(1)
print(f"lint-infra: compose ({len(services)} services), strata.toml, prometheus.yml, grafana data source, Dockerfile: ok")
PY

if docker compose version >/dev/null 2>&1; then
    echo "==> docker compose config"
    docker compose -f infra/compose/compose.yaml config -q
fi
echo "lint-infra: ok"
