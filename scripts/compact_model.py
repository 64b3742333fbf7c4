"""Store a trained cross-encoder compactly (fp16 weights) and check it still ranks the same.

    .venv/bin/python scripts/compact_model.py SRC_DIR models/crossrank-minilm-l6 \
        [--check ../shared/data/trec-dl-2019-passage] [--report check.json] \
        [--card --dl19 NDCG]

Copies the tokenizer and configuration files of SRC_DIR (a ``crossrank finetune`` output,
fp32), writes ``model.safetensors`` with every floating-point tensor in fp16 (half the
size) and keeps ``"dtype": "float32"`` in ``config.json``, so that transformers loads the
weights back as fp32 and the model computes in fp32 as before: only the stored weights
are rounded. With ``--check`` it scores the dataset's official BM25 top-100 (TREC run)
with both models through ``CrossEncoder.predict`` and reports the largest score
difference, whether every query's ranking is unchanged, and nDCG@10 of both. With
``--card`` it writes the model card (``README.md``, from ``card_template.md`` beside this
script) and ``crossrank.json`` (the one-line summary ``crossrank rerank`` prints) from the
training record, the check and ``--dl19``: the DL19 nDCG@10 that ``crossrank eval`` measured
for the model (``crossrank eval ../shared/data/trec-dl-2019-passage --model DST --threads 1``).
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


def check(src: Path, dst: Path, dataset: Path, depth: int = 100) -> dict[str, Any]:
    import torch
    from sentence_transformers import CrossEncoder

    queries, corpus, run, qrels = _read_dataset(dataset)
    run = {q: docs[:depth] for q, docs in run.items()}
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
        "depth": depth,
        "queries_with_identical_order": same,
        "ndcg@10": {k: round(v / len(qids), 4) for k, v in ndcg.items()},
        "note": f"CrossEncoder.predict on the official BM25 top-{depth}, linear-gain nDCG@10",
    }


BM25_DL19 = 0.5058  # the official BM25 run (a test checks the harness reproduces it)


def write_card(dst: Path, dl19: float, check_result: dict[str, Any] | None) -> None:
    record = json.loads((dst / "crossrank_training.json").read_text(encoding="utf-8"))
    relation = "above" if dl19 > BM25_DL19 else "below"
    summary = (
        f"crossrank-minilm-l6, the reranker this repository bundles (trained on a CPU by "
        f"crossrank finetune): DL19 nDCG@10 {dl19:.3f}, {relation} BM25's {BM25_DL19:.3f} "
        "(the hub's ms-marco-MiniLM-L-6-v2: about 0.74); see models/crossrank-minilm-l6/README.md"
    )
    card = {
        "name": "crossrank-minilm-l6",
        "summary": summary,
        "dl19_ndcg@10": dl19,
        "dl19_bm25_ndcg@10": BM25_DL19,
        "fp16_check": check_result,
    }
    (dst / "crossrank.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    mix = record.get("data", {}).get("by_source", {})
    facts = (
        f"{record['steps']} optimizer steps (of {record['planned_steps']} planned"
        + (", stopped by the time budget" if record.get("stopped_by_time_budget") else "")
        + f") in {record['seconds'] / 60:.0f} min on {record['device']}, "
        f"{record['torch_threads']} torch thread(s), bf16 {'on' if record['bf16'] else 'off'}; "
        f"{record['lists']} lists of {record['pairs_per_list']} ("
        + ", ".join(f"{k}: {v}" for k, v in mix.items())
        + ")."
    )
    if check_result:
        nd = check_result["ndcg@10"]
        fp16 = (
            f"by at most {check_result['max_abs_score_diff']:.1e} (logits) on a DL19 check "
            f"(BM25 top-{check_result['depth']} of {check_result['queries']} queries): "
            f"{check_result['queries_with_identical_order']} of {check_result['queries']} "
            f"queries ranked identically, nDCG@10 {nd['fp32']:.4f} from the fp32 weights and "
            f"{nd['fp16_stored']:.4f} from the fp16 ones"
        )
    else:
        fp16 = "slightly (not checked for this build: run with --check)"
    table = (
        "| dataset | first stage | first stage alone | reranked by this model |\n"
        "|---|---|---:|---:|\n"
        f"| TREC DL 2019 passage (43 queries) | official BM25 run, top-100 | {BM25_DL19:.4f} | "
        f"**{dl19:.4f}** |"
    )
    if dl19 <= BM25_DL19:
        table += (
            "\n\nThis build does **not** beat BM25 on DL19: it trained for "
            f"{record['steps']} steps only. The README's Quality section has the recipe's "
            "better runs."
        )
    config = record.get("config", {})
    steps = f"--max-steps {config.get('max_steps')}"
    if config.get("max_minutes"):
        steps += f" --max-minutes {config['max_minutes']:g}"
    template = (Path(__file__).with_name("card_template.md")).read_text(encoding="utf-8")
    text = (
        template.replace("STEP_ARGS", steps)
        .replace("FP16_CHECK", fp16)
        .replace("QUALITY_TABLE", table)
        .replace("TRAINING_FACTS", facts)
    )
    (dst / "README.md").write_text(text, encoding="utf-8")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", type=Path, help="the fp32 model directory")
    p.add_argument("dst", type=Path, help="where to write the compact copy")
    p.add_argument("--check", type=Path, help="a BEIR-layout TREC DL folder with runs/")
    p.add_argument("--depth", type=int, default=100, help="candidates per query to check")
    p.add_argument("--report", type=Path, help="write the check as JSON here")
    p.add_argument("--card", action="store_true", help="write README.md and crossrank.json")
    p.add_argument("--dl19", type=float, help="DL19 nDCG@10 from crossrank eval (for --card)")
    p.add_argument("--reuse", type=Path, help="a --report JSON to put on the card (no --check)")
    args = p.parse_args()
    if args.card and args.dl19 is None:
        p.error("--card needs --dl19 (the nDCG@10 crossrank eval measured)")
    compact(args.src, args.dst)
    size = (args.dst / WEIGHTS).stat().st_size / 1e6
    print(f"wrote {args.dst} ({WEIGHTS}: {size:.1f} MB)")
    if args.check:
        result = check(args.src, args.dst, args.check, args.depth)
        print(json.dumps(result, indent=2))
        if args.report:
            args.report.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    elif args.reuse:
        result = json.loads(args.reuse.read_text(encoding="utf-8"))
    else:
        result = None
    if args.card:
        write_card(args.dst, args.dl19, result)
        print(f"wrote {args.dst / 'README.md'} and {args.dst / 'crossrank.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
