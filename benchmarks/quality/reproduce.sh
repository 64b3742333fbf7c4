#!/usr/bin/env bash
# Reproduce the quality tables of the README: train the reranker, evaluate it on DL19,
# SciFact test and the DBpedia subset, and run the long-document comparison.
# On 2 shared CPU cores this takes about two hours in all; each step can be run on its own.
# --threads 1: on a CPU shared with other jobs, one torch thread per process avoids OpenMP
# spin-waiting and was 3-4x faster here than the default two.
#   DATA=../shared/data MODEL=models/crossrank-minilm-l6 bash benchmarks/quality/reproduce.sh [step...]
# steps: teacher train dl19 scifact dbpedia longdocs (default: all)
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-../shared/data}
MODEL=${MODEL:-models/crossrank-minilm-l6}
OUT=${OUT:-benchmarks/results/quality}
CACHE=${CACHE:-.crossrank-cache/teacher-minilm.npz}
TAG=${TAG:-v1}  # suffix of the result files
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(teacher train dl19 scifact dbpedia longdocs)

for step in "${steps[@]}"; do
  case "$step" in
    teacher)  # choose the teacher mix on the training splits only
      .venv/bin/python -m benchmarks.quality.teacher_check --data "$DATA" --cache "$CACHE" ;;
    train)
      .venv/bin/crossrank finetune \
        --train "$DATA/scifact:train" --train "$DATA/trec-dl-2020-passage:test" \
        --groups-per-query 1,8 --pseudo-queries 800 --pseudo-from trec-dl-2020-passage \
        --teacher dense=0.7,bm25=0.3,label=0.2,temperature=0.05 \
        --group-size 8 --depth 30 --batch-size 2 --lr 5e-5 --warmup 0.05 --max-length 192 \
        --max-steps 5000 --max-minutes 35 --threads 1 \
        --teacher-cache "$CACHE" --output "$MODEL" ;;
    dl19)
      .venv/bin/crossrank eval --threads 1 "$DATA/trec-dl-2019-passage" --model "$MODEL" \
        --candidates 10,20,50,100 --json "$OUT/dl19_$TAG.json" --markdown "$OUT/dl19_$TAG.md" \
        --plot "$OUT/dl19_knee_$TAG.png" ;;
    scifact)
      .venv/bin/crossrank eval --threads 1 "$DATA/scifact" --bm25 --model "$MODEL" \
        --candidates 20 --json "$OUT/scifact_$TAG.json" --markdown "$OUT/scifact_$TAG.md"
      .venv/bin/crossrank eval --threads 1 "$DATA/scifact" --bm25 --model "$MODEL" \
        --candidates 100 --json "$OUT/scifact_top100_$TAG.json" \
        --markdown "$OUT/scifact_top100_$TAG.md" ;;
    dbpedia)
      .venv/bin/crossrank eval --threads 1 "$DATA/dbpedia-entity-subset" --bm25 --model "$MODEL" \
        --candidates 100 --json "$OUT/dbpedia_$TAG.json" --markdown "$OUT/dbpedia_$TAG.md" ;;
    longdocs)
      .venv/bin/python -m benchmarks.quality.longdocs --data "$DATA" --model "$MODEL" --threads 1 ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
