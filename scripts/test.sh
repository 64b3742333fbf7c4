#!/usr/bin/env bash
# Set up everything the tests need (venv, dev tools, redis-server) and run lint, types and
# the whole test suite, examples included. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
if ! command -v redis-server >/dev/null 2>&1; then
  echo "installing redis-server (apt) for the Redis cache tests"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) \
    || echo "WARNING: could not install redis-server; Redis tests will be skipped"
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
echo "== ruff"; .venv/bin/ruff check .
echo "== mypy (strict on rerank_core)"; .venv/bin/mypy
echo "== pytest"; .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
