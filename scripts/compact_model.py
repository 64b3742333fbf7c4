"""Store a trained cross-encoder compactly (fp16 weights) and check it still ranks the same.

    .venv/bin/python scripts/compact_model.py SRC_DIR models/crossrank-minilm-l6 \
        [--check ../shared/data/trec-dl-2019-passage] [--report check.json]

Copies the tokenizer and configuration files of SRC_DIR (a ``crossrank finetune`` output,
fp32), writes ``model.safetensors`` with every floating-point tensor in fp16 (half the
size) and keeps ``"dtype": "float32"`` in ``config.json``, so that transformers loads the
weights back as fp32 and the model computes in fp32 as before: only the stored weights
are rounded. With ``--check`` it scores the dataset's official BM25 top-100 (TREC run)
with both models through ``CrossEncoder.predict`` and reports the largest score
difference, whether every query's ranking is unchanged, and nDCG@10 of both.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

WEIGHTS = "model.safetensors"
SKIP = {WEIGHTS, "README.md", "training_args.bin", "optimizer.pt", "scheduler.pt"}


def compact(src: Path, dst: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir()):
        if f.is_file() and f.name not in SKIP:
            shutil.copy2(f, dst / f.name)
    state = load_file(str(src / WEIGHTS))
    half = {
        k: (v.to(torch.float16) if v.is_floating_point() else v).contiguous()
        for k, v in state.items()
    }
    save_file(half, str(dst / WEIGHTS), metadata={"format": "pt"})
    config_path = dst / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["dtype"] = "float32"  # transformers 5: load the fp16 file as fp32
    config["torch_dtype"] = "float32"  # the same for transformers 4
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _read_dataset(root: Path) -> tuple[dict[str, str], dict[str, str], dict[str, list[str]], Any]:
    queries = {q["_id"]: q["text"] for q in map(json.loads, (root / "queries.jsonl").open())}
    run: dict[str, list[str]] = {}
    for line in (root / "runs" / "bm25_top100.trec").open():
        qid, _, doc, *_ = line.split()
        run.setdefault(qid, []).append(doc)
    qrels: dict[str, dict[str, int]] = {}
    with (root / "qrels" / "test.tsv").open() as f:
        for row in csv.DictReader(f, delimiter="\t"):
            qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = int(row["score"])
    wanted = {d for qid in qrels for d in run.get(qid, [])}
    corpus: dict[str, str] = {}
    for line in (root / "corpus.jsonl").open():
        d = json.loads(line)
        if d["_id"] in wanted:
            title = d.get("title") or ""
            corpus[d["_id"]] = f"{title}. {d['text']}" if title else d["text"]
    return queries, corpus, run, qrels


def _ndcg10(ranking: list[str], judged: dict[str, int]) -> float:
    dcg = sum(judged.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranking[:10]))
    ideal = sorted(judged.values(), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def check(src: Path, dst: Path, dataset: Path) -> dict[str, Any]:
    import torch
    from sentence_transformers import CrossEncoder

    queries, corpus, run, qrels = _read_dataset(dataset)
    qids = [q for q in qrels if q in run]
    pairs = [(queries[q], corpus[d]) for q in qids for d in run[q]]
    scores: dict[str, list[float]] = {}
    dtypes: dict[str, str] = {}
    for name, path in (("fp32", src), ("fp16_stored", dst)):
        ce = CrossEncoder(str(path), device="cpu")
        dtypes[name] = str(next(ce.model.parameters()).dtype)
        t0 = time.perf_counter()
        got = ce.predict(pairs, batch_size=32, activation_fn=torch.nn.Identity())
        print(f"{name}: {len(pairs)} pairs in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
        scores[name] = [float(x) for x in got]
    diff = max(abs(a - b) for a, b in zip(scores["fp32"], scores["fp16_stored"], strict=True))
    same, ndcg = 0, {"bm25": 0.0, "fp32": 0.0, "fp16_stored": 0.0}
    pos = 0
    for q in qids:
        docs = run[q]
        n = len(docs)
        ranks = {}
        for name in ("fp32", "fp16_stored"):
            part = scores[name][pos : pos + n]
            order = sorted(range(n), key=part.__getitem__, reverse=True)
            ranks[name] = [docs[i] for i in order]
            ndcg[name] += _ndcg10(ranks[name], qrels[q])
        ndcg["bm25"] += _ndcg10(docs, qrels[q])
        same += ranks["fp32"] == ranks["fp16_stored"]
        pos += n
    return {
        "dataset": dataset.name,
        "queries": len(qids),
        "pairs": len(pairs),
        "loaded_dtype": dtypes,
        "max_abs_score_diff": diff,
        "queries_with_identical_top100_order": same,
        "ndcg@10": {k: round(v / len(qids), 4) for k, v in ndcg.items()},
        "note": "CrossEncoder.predict on the official BM25 top-100, linear-gain nDCG@10",
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", type=Path, help="the fp32 model directory")
    p.add_argument("dst", type=Path, help="where to write the compact copy")
    p.add_argument("--check", type=Path, help="a BEIR-layout TREC DL folder with runs/")
    p.add_argument("--report", type=Path, help="write the check as JSON here")
    args = p.parse_args()
    compact(args.src, args.dst)
    size = (args.dst / WEIGHTS).stat().st_size / 1e6
    print(f"wrote {args.dst} ({WEIGHTS}: {size:.1f} MB)")
    if args.check:
        result = check(args.src, args.dst, args.check)
        print(json.dumps(result, indent=2))
        if args.report:
            args.report.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
