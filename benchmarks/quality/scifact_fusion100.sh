#!/usr/bin/env bash
# Score fusion on all 300 SciFact test queries at top-20 and top-100 (issue 16 item 1), in
# two processes of one torch thread each (the 300 test queries split in two halves of 150 in
# qrels order; on 2 cores this halves the wall time). The weight is chosen on the first
# DEV_QUERIES (default 60) judged SciFact *train* queries, the same for both halves, so both
# choose the same weight and the whole test set's figures are the halves' means (150 + 150
# queries). Writes OUT_DIR/half_{a,b}.{json,md} and OUT_DIR/scifact_300.{json,md}.
#   bash benchmarks/quality/scifact_fusion100.sh OUT_DIR [MODEL]
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:?usage: bash benchmarks/quality/scifact_fusion100.sh OUT_DIR [MODEL]}
MODEL=${2:-models/crossrank-minilm-l6}
D=${DATA:-../shared/data}/scifact
DEV=${DEV_QUERIES:-60}
export HF_HUB_OFFLINE=1
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"
.venv/bin/python -m benchmarks.quality.split_queries "$D" "$WORK/a" "$WORK/b"
# the dev folder: SciFact's train qrels as its test split (never the test queries)
mkdir -p "$WORK/dev/qrels"
ln -s "$(realpath "$D/corpus.jsonl")" "$WORK/dev/corpus.jsonl"
ln -s "$(realpath "$D/queries.jsonl")" "$WORK/dev/queries.jsonl"
cp "$D/qrels/train.tsv" "$WORK/dev/qrels/test.tsv"
uptime
for h in a b; do
  .venv/bin/crossrank eval "$WORK/$h" --bm25 --model "$MODEL" --fusion \
    --fusion-dev "$WORK/dev:$DEV" --candidates 20,100 --threads 1 --quiet \
    --json "$OUT/half_$h.json" --markdown "$OUT/half_$h.md" &
done
wait
uptime
.venv/bin/python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
a, b = (json.loads((out / f"half_{h}.json").read_text()) for h in "ab")
na, nb = a["test"]["queries"], b["test"]["queries"]
rows, lines = [], ["| top-N | BM25 | reranker | RRF (k=60) | linear (w picked on dev) |",
                   "|---:|---:|---:|---:|---:|"]
for da, db in zip(a["depths"], b["depths"], strict=True):
    assert da["chosen_weight"] == db["chosen_weight"], "the halves chose different weights"
    mean = {m: (da["test"][m]["ndcg@10"] * na + db["test"][m]["ndcg@10"] * nb) / (na + nb)
            for m in ("first_stage", "reranker", "rrf", "linear")}
    rows.append({"candidates": da["candidates"], "chosen_weight": da["chosen_weight"],
                 "test_ndcg@10": mean})
    lines.append(f"| {da['candidates']} | {mean['first_stage']:.4f} | {mean['reranker']:.4f} | "
                 f"{mean['rrf']:.4f} | {mean['linear']:.4f} (w = {da['chosen_weight']}) |")
result = {"test_queries": na + nb, "dev": a["dev"]["label"], "model": a["model"],
          "seconds": {"a": a["test"]["score_seconds"] + a["dev"]["score_seconds"],
                      "b": b["test"]["score_seconds"] + b["dev"]["score_seconds"]},
          "depths": rows}
(out / "scifact_300.json").write_text(json.dumps(result, indent=2) + "\n")
(out / "scifact_300.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
