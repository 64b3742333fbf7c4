#!/usr/bin/env bash
# The main job: set up .venv if needed, then rerank real SciFact passages for a claim and
# print the BM25 ranking beside the cross-encoder's. Extra arguments go to `crossrank rerank`
# (e.g. --model PATH, --query "...", --top-n 5).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/crossrank rerank "$@"
