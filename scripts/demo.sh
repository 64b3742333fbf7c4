#!/usr/bin/env bash
# The main job: set up .venv if needed, then rerank real SciFact passages for a claim and
# print the BM25 ranking beside the cross-encoder's. Extra arguments go to `crossrank rerank`
# (e.g. --model PATH, --query "...", --top-n 5).
#
# Offline — HF_HUB_OFFLINE=1, or the Hugging Face hub does not answer within about two
# seconds — the default model comes from the local hub cache if it is there, else from
# models/crossrank-minilm-l6, the reranker this repository bundles; one line on stderr says
# which, and the model line of the output gives its measured quality.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/crossrank rerank "$@"
