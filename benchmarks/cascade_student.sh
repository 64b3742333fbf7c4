#!/usr/bin/env bash
# The 2-layer student of the cascade that docs/cascade.md measures (issue 14 item 5): the
# first 2 transformer layers of the bundled 6-layer reranker, distilled listwise from that
# 6-layer's own scores (teacher `reranker=1`: its raw logits are the targets), on the data
# of the bundled model's recipe (models/crossrank-minilm-l6/README.md), fewer lists of it
# (SciFact train once, DL20 4 times, 400 pseudo-queries: about 1,400 lists of 8) because
# the teacher scores every pair once. One torch thread; on a busy 2-core machine (load 3-8)
# the teacher scored 11,217 pairs in 18 min, then the 24-minute budget (--max-minutes;
# MAX_MINUTES overrides it) allowed 992 steps (1.4 epochs of the 1,425 lists).
#   bash benchmarks/cascade_student.sh [OUT_DIR]   (default /work/models/student-l2-kd)
# then:
#   python -m benchmarks.cascade --small OUT_DIR --large models/crossrank-minilm-l6
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/work/models/student-l2-kd}
D=../shared/data
export HF_HUB_OFFLINE=1
.venv/bin/crossrank finetune --threads 1 --quiet \
  --base-model models/crossrank-minilm-l6 --layers 2 \
  --train $D/scifact:train --train $D/trec-dl-2020-passage:test \
  --groups-per-query 1,4 --pseudo-queries 400 --pseudo-from trec-dl-2020-passage \
  --teacher reranker=1 --teacher-reranker models/crossrank-minilm-l6 \
  --teacher-cache "$OUT.teacher.npz" \
  --group-size 8 --depth 100 --batch-size 2 --lr 1e-4 --warmup 0.05 --max-length 192 \
  --max-steps 4000 --max-minutes "${MAX_MINUTES:-24}" --seed 42 --output "$OUT"
