"""Long documents: truncation vs chunk-max vs chunk-mean on the same model.

Two document sets (``--set``):

* ``buried`` (default): each DL19 BM25 top-N candidate is buried in a document of
  unrelated MS MARCO passages from the same corpus, starting after 512–768 tokens of
  filler (see crossrank_lab.quality.longdocs), so a reranker that truncates to 512 tokens
  never sees it. Writes ``longdocs.{json,md}``.
* ``scifact``: a real long-document set built from SciFact test: each BM25 (bm25s) top-N
  candidate abstract becomes a document of ``--abstracts`` K whole SciFact abstracts, the
  candidate at a random slot, the others random unjudged non-candidate abstracts (built on
  the fly, seeded; qrels carried over). Writes ``longdocs-scifact.{json,md}``.

Every configuration reranks the same documents with the same model in a cold pass
(no score cache); the "passages alone" row reranks the candidates without anything around
them (the ceiling). Cost is the (query, window) pairs the model scored and the wall time.

    .venv/bin/python -m benchmarks.quality.longdocs --model models/crossrank-minilm-l6
    .venv/bin/python -m benchmarks.quality.longdocs --set scifact --max-queries 100 --rows 0,2,5,6
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from crossrank_lab.quality.data import Run, load_beir, read_trec_run
from crossrank_lab.quality.first_stage import bm25_run
from crossrank_lab.quality.longdocs import long_documents, multi_abstract_documents
from crossrank_lab.quality.metrics import evaluate_run
from rerank_core import Reranker, WindowConfig

ROOT = Path(__file__).resolve().parents[2]

# (name, documents, window config, max tokens per (query, window) pair)
CONFIGS: list[tuple[str, str, WindowConfig, int]] = [
    ("passages alone (reference: nothing buried)", "short", WindowConfig(), 512),
    ("truncation: first 512 tokens (max_windows=1)", "long", WindowConfig(max_windows=1), 512),
    ("chunk-max (crossrank default), 512-token windows", "long", WindowConfig(), 512),
    ("chunk-mean, 512-token windows", "long", WindowConfig(aggregate="mean"), 512),
    ("chunk top-2 mean, 512-token windows", "long", WindowConfig(aggregate="topk_mean"), 512),
    ("chunk-max, 256-token windows", "long", WindowConfig(overlap=32), 256),
    # 0: the backend's default max_length (the length the model was trained on, when its
    # crossrank_training.json records it)
    ("chunk-max, default windows (the model's trained length)", "long", WindowConfig(), 0),
    # the reference again, scored the way the default scores: passages longer than the
    # trained length (SciFact abstracts) are windowed too
    ("passages alone, default windows", "short", WindowConfig(), 0),
    # wider overlap: any passage up to ~half a window lies whole inside one window
    ("chunk-max, default windows, overlap 88", "long", WindowConfig(overlap=88), 0),
    ("chunk-max, 128-token windows", "long", WindowConfig(overlap=32), 128),
    # the engine's default overlap before 2026-11-30: min(64, a quarter of the window
    # budget beside a query of half max_length) = 23 tokens at 192
    (
        "chunk-max, default windows, overlap 23 (the old default)",
        "long",
        WindowConfig(overlap=23),
        0,
    ),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--model", default=str(ROOT / "models" / "crossrank-minilm-l6"))
    ap.add_argument(
        "--set",
        default="buried",
        choices=("buried", "scifact"),
        help="buried: DL19 passages buried in MS MARCO filler (default); scifact: SciFact "
        "test candidates inside multi-abstract documents of --abstracts abstracts",
    )
    ap.add_argument(
        "--abstracts",
        type=int,
        default=4,
        help="--set scifact: abstracts per document, the candidate at a random one (default 4)",
    )
    ap.add_argument(
        "--seed", type=int, help="document builder seed (default 19 buried, 16 scifact)"
    )
    ap.add_argument("--depth", type=int, default=20, help="BM25 candidates per query")
    ap.add_argument(
        "--precision",
        default="bf16",
        choices=("fp32", "bf16", "auto"),
        help="the minilm backend's precision (default bf16, torch; auto: the engine's default)",
    )
    ap.add_argument("--threads", type=int, help="torch CPU threads")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "quality")
    ap.add_argument("--max-queries", type=int, help="only the first N judged queries")
    ap.add_argument(
        "--rows", help="comma-separated row numbers of CONFIGS to run (default: all), e.g. 0,2,6"
    )
    args = ap.parse_args()

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    def load(max_length: int | None) -> Any:
        options: dict[str, Any] = {"precision": args.precision, "cache": None}
        if max_length:
            options["max_length"] = max_length
        if args.threads:
            options["num_threads"] = args.threads
        return Reranker("minilm", model=args.model, **options).backend

    backend, default, short_windows = load(512), load(None), load(256)
    backends = {512: backend, 256: short_windows, 0: default}
    configs = CONFIGS
    if args.rows:
        configs = [CONFIGS[int(i)] for i in args.rows.split(",")]
    for *_, length in configs:  # another window length a row names (e.g. 128)
        if length not in backends:
            backends[length] = load(length)
    load_before = os.getloadavg()

    def count(text: str) -> int:
        return len(backend.tokenizer.token_spans([text])[0])

    if args.set == "buried":
        ds = load_beir(args.data / "trec-dl-2019-passage", max_queries=args.max_queries)
        first = read_trec_run(ds.runs["bm25_top100"])
        first = {q: first[q][: args.depth] for q in ds.queries}
        seed = 19 if args.seed is None else args.seed
        longs = long_documents(ds, first, args.depth, count_tokens=count, seed=seed)
        dataset_name, stem = "trec-dl-2019-passage, BM25 run", "longdocs"
    else:
        ds = load_beir(args.data / "scifact", "test", max_queries=args.max_queries)
        first = bm25_run(ds, args.depth)
        first = {q: first.get(q, [])[: args.depth] for q in ds.queries}
        seed = 16 if args.seed is None else args.seed
        longs = multi_abstract_documents(
            ds, first, args.depth, k=args.abstracts, count_tokens=count, seed=seed
        )
        dataset_name = f"scifact test, BM25 (bm25s), {args.abstracts} abstracts per document"
        stem = "longdocs-scifact"
    lengths = [count(d.text) for docs in longs.values() for d in docs.values()]
    offsets = [d.tokens_before for docs in longs.values() for d in docs.values()]
    print(
        f"{len(lengths)} long documents: {statistics.mean(lengths):.0f} tokens on average "
        f"(max {max(lengths)}); candidate starts after {min(offsets)}–{max(offsets)} tokens",
        flush=True,
    )
    rel_level = ds.default_rel_level()
    first_metrics = evaluate_run(ds.qrels, first, rel_level=rel_level)
    slots = [d.position for docs in longs.values() for d in docs.values()]
    rows: list[dict[str, Any]] = []
    result: dict[str, Any] = {
        "dataset": dataset_name,
        "set": args.set,
        "abstracts_per_document": args.abstracts if args.set == "scifact" else None,
        "seed": seed,
        "threads": args.threads,
        "load_average_before": list(load_before),
        "depth": args.depth,
        "model": args.model,
        "precision": args.precision,
        "max_length": backend.max_length,
        "default_max_length": default.max_length,
        "queries": len(first),
        "documents": len(lengths),
        "mean_tokens": statistics.mean(lengths),
        "max_tokens": max(lengths),
        "candidate_offset_tokens": [min(offsets), max(offsets)],
        "candidate_first_fraction": (
            sum(1 for p in slots if p == 0) / len(slots) if args.set == "scifact" else 0.0
        ),
        "bm25_ndcg@10": first_metrics["ndcg@10"],
        "rows": rows,
    }
    for name, kind, window, length_key in configs:
        max_length = backends[length_key].max_length
        rr = Reranker(backends[length_key], window=window, cache=None)
        rr.score("warm up", ["a short text"])
        rr.reset_stats()
        run: Run = {}
        seconds = []
        windows = 0
        for qid, docs in first.items():
            ids = [d for d, _ in docs]
            texts = [ds.body(d) if kind == "short" else longs[qid][d].text for d in ids]
            t0 = time.perf_counter()
            ranked = rr.rerank(ds.queries[qid], texts)
            seconds.append(time.perf_counter() - t0)
            windows += sum(r.n_windows for r in ranked)
            run[qid] = [(ids[r.index], r.score) for r in ranked]
        metrics = evaluate_run(ds.qrels, run, rel_level=rel_level)
        row = {
            "scoring": name,
            "documents": kind,
            "window": {
                "max_windows": window.max_windows,
                "aggregate": window.aggregate,
                "overlap": window.overlap,
                "max_length": max_length,
            },
            "ndcg@10": metrics["ndcg@10"],
            "mrr@10": metrics["mrr@10"],
            "pairs_scored": rr.pairs_scored,
            "windows_per_doc": windows / len(lengths),
            "seconds": sum(seconds),
            "ms_per_query": 1000 * statistics.mean(seconds),
            "load_average_after": list(os.getloadavg()),
        }
        rows.append(row)
        print(
            f"{name}: nDCG@10 {row['ndcg@10']:.4f}, {row['pairs_scored']} pairs, "
            f"{row['seconds']:.0f}s",
            flush=True,
        )
        # written after every row, so a run stopped early keeps the rows it finished
        _write(args.out, stem, result, first_metrics)


def _write(out: Path, stem: str, result: dict[str, Any], first: dict[str, float]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [
        "| scoring | nDCG@10 | MRR@10 | pairs scored | windows/doc | time (s) | ms/query |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| BM25 order (first stage) | {first['ndcg@10']:.4f} | {first['mrr@10']:.4f} | "
        "— | — | — | — |",
    ]
    md += [
        f"| {r['scoring']} | {r['ndcg@10']:.4f} | {r['mrr@10']:.4f} | {r['pairs_scored']} | "
        f"{r['windows_per_doc']:.2f} | {r['seconds']:.0f} | {r['ms_per_query']:.0f} |"
        for r in result["rows"]
    ]
    (out / f"{stem}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md), flush=True)


if __name__ == "__main__":
    main()
