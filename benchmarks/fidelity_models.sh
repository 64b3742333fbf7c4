#!/usr/bin/env bash
# The differently trained MiniLM-L6 cross-encoders that docs/fidelity.md measures the
# fidelity guard on (besides the bundled models/crossrank-minilm-l6). Each is one
# `crossrank finetune` run on ../shared/data; about 6-25 minutes each on 2 cores.
#   bash benchmarks/fidelity_models.sh [OUT_DIR]      (default /tmp/crossrank-fidelity-models)
# then:
#   python -m benchmarks.fidelity --models models/crossrank-minilm-l6,OUT/var-listnet,OUT/var-mix,OUT/var-bce-ft
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/crossrank-fidelity-models}
D=../shared/data
X=.venv/bin/crossrank
export HF_HUB_OFFLINE=1
mkdir -p "$OUT"
# listwise distillation from the bi-encoder alone, SciFact train only
$X finetune --threads 2 --quiet \
  --train $D/scifact:train --teacher dense=1,temperature=0.05 \
  --loss listnet --group-size 8 --depth 20 --batch-size 2 --lr 6e-5 --warmup 0.1 --max-length 128 \
  --max-steps 120 --seed 11 --teacher-cache "$OUT/teacher-scifact.npz" --output "$OUT/var-listnet"
# listwise, teacher half bi-encoder half BM25, SciFact + DL20
$X finetune --threads 2 --quiet \
  --train $D/scifact:train --train $D/trec-dl-2020-passage:test --groups-per-query 1,4 \
  --teacher dense=0.5,bm25=0.5,temperature=0.1 --teacher-cache "$OUT/teacher-mix.npz" \
  --loss listnet --group-size 8 --depth 30 --batch-size 2 --lr 3e-5 --warmup 0.05 --max-length 192 \
  --max-steps 250 --seed 23 --output "$OUT/var-mix"
# the bundled model fine-tuned further with pointwise BCE on the labels (another score scale)
$X finetune --threads 2 --quiet --base-model models/crossrank-minilm-l6 \
  --train $D/scifact:train --train $D/trec-dl-2020-passage:test --groups-per-query 1,4 \
  --loss bce --group-size 8 --depth 30 --batch-size 16 --lr 3e-5 --warmup 0.1 --max-length 160 \
  --max-steps 150 --seed 5 --output "$OUT/var-bce-ft"
