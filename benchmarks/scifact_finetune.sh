#!/usr/bin/env bash
# Domain fine-tuning on SciFact train, never its test (issue 16 item 2): the bundled
# models/crossrank-minilm-l6 trained further on the 809 SciFact train claims, 4 lists of 8
# per claim, hard negatives from BM25's and the bi-encoder's top 30 (judged-relevant ones
# skipped), listwise on a teacher that mixes the bi-encoder's cosine, BM25 and the labels.
# REHEARSE=N (optional): rehearsal, the general-domain lists the bundled model learned from
# mixed into the SciFact ones (DL20's judged queries, 8 lists each, and N pseudo-queries cut
# from DL20 passages), so the fine-tune keeps what it knew; no SciFact test and no DL19 data.
# TEACHER / TEACHER_RERANKER (optional): another teacher mix, and the cross-encoder for its
# 'reranker=W' signal (e.g. the bundled model itself: learning without forgetting).
# One torch thread, bf16 where the CPU has it; MAX_MINUTES (default 40) is the time budget
# (the learning rate decays to 0 over it); MAX_MINUTES=0 with MAX_STEPS=N: no time budget,
# the learning rate decays to 0 over N steps (the same run on any machine). LR: peak rate.
# The recipe that meets issue 16's target (SciFact test top-20 0.7084, TREC DL19 0.5866;
# docs/finetune.md, "Rehearsal"):
#   REHEARSE=800 LR=2e-5 MAX_STEPS=760 MAX_MINUTES=0 bash benchmarks/scifact_finetune.sh OUT_DIR
#   bash benchmarks/scifact_finetune.sh OUT_DIR [AVG_DIR]
#     OUT_DIR: the fine-tuned model (e.g. /work/models/scifact-ft)
#     AVG_DIR (optional): OUT_DIR's weights averaged 50/50 with the bundled model's
#       (benchmarks/average_weights.py; e.g. /work/models/scifact-ft-avg50)
# Evaluate (docs/finetune.md):
#   crossrank eval ../shared/data/scifact --bm25 --model OUT_DIR --candidates 20 --threads 1
#   crossrank eval ../shared/data/trec-dl-2019-passage --model OUT_DIR --candidates 100 --threads 1
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: bash benchmarks/scifact_finetune.sh OUT_DIR}
D=${DATA:-../shared/data}
export HF_HUB_OFFLINE=1
mkdir -p "$(dirname "$OUT")"
BUDGET=(--max-minutes "${MAX_MINUTES:-40}")
if [ "${MAX_MINUTES:-40}" = "0" ]; then BUDGET=(); fi
TRAIN=(--train "$D/scifact:train" --groups-per-query 4)
if [ -n "${REHEARSE:-}" ]; then
  TRAIN=(--train "$D/scifact:train" --train "$D/trec-dl-2020-passage:test" --groups-per-query 4,8
         --pseudo-queries "$REHEARSE" --pseudo-from trec-dl-2020-passage)
fi
TEACHER_ARGS=(--teacher "${TEACHER:-dense=0.7,bm25=0.3,label=0.2,temperature=0.05}")
if [ -n "${TEACHER_RERANKER:-}" ]; then TEACHER_ARGS+=(--teacher-reranker "$TEACHER_RERANKER"); fi
.venv/bin/crossrank finetune --threads 1 --quiet \
  --base-model models/crossrank-minilm-l6 \
  "${TRAIN[@]}" \
  --negatives mixed --depth 30 --group-size 8 \
  "${TEACHER_ARGS[@]}" \
  --teacher-cache "${TEACHER_CACHE:-$OUT.teacher.npz}" \
  --loss listnet --batch-size 2 --lr "${LR:-2e-5}" --warmup 0.05 --max-length 192 \
  --max-steps "${MAX_STEPS:-5000}" "${BUDGET[@]}" --seed 42 \
  --output "$OUT"
if [ -n "${2:-}" ]; then
  .venv/bin/python -m benchmarks.average_weights "$OUT" models/crossrank-minilm-l6 "$2" --weight 0.5
fi
