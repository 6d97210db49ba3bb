#!/usr/bin/env bash
# Validates the deployment definitions (Helm chart, compose, Dockerfile, Grafana dashboards, shipped
# collector configs) with deploy/tests/validate.py in a virtualenv of pinned packages from PyPI
# (kept in target/deploy-venv and reused while deploy/tests/requirements.txt is unchanged).
#
#   bash scripts/test-deploy.sh [COLLECTOR_BIN]      # default target/debug/shadowai-collector
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
collector=${1:-target/debug/shadowai-collector}
venv=target/deploy-venv
stamp=$venv/requirements.sha256
want=$(sha256sum deploy/tests/requirements.txt | cut -d' ' -f1)
if [[ ! -x $venv/bin/python || $(cat "$stamp" 2>/dev/null) != "$want" ]]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r deploy/tests/requirements.txt
    echo "$want" >"$stamp"
fi
args=()
[[ -x $collector ]] && args=(--collector "$collector")
exec "$venv/bin/python" deploy/tests/validate.py "${args[@]}"
