"""A two-stage cascade (small model → its top ``keep`` → large model) against the large
model alone: nDCG@10, pairs scored and ms/query p50/p95 on the same candidates, one
``rerank`` call per query, no cache, the two (and the small model alone) interleaved query
by query so that a busy machine slows all of them alike.

    python -m benchmarks.cascade --small /work/models/student-l2 \\
        --large models/crossrank-minilm-l6                       # DL19, BM25 top-100
    python -m benchmarks.cascade --small DIR --large DIR --dataset ../shared/data/scifact \\
        --max-queries 100                                        # SciFact test, bm25s top-100

DL19: the judged queries and the official BM25 top-100 (``load_trec_dl``); any other BEIR
folder: its test split and a bm25s top-``candidates`` run. Prints a markdown table and,
with ``--json``, writes every number.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from ._production import DEFAULT_DATA, DEFAULT_MODEL


def pct(ms: list[float], q: float) -> float:
    s = sorted(ms)
    return s[min(len(s) - 1, max(0, round(q * len(s)) - 1))]


def inputs(data: Path, candidates: int, max_queries: int | None) -> tuple[Any, Any, str]:
    """``(dataset, first-stage run, its name)``."""
    if (data / "bm25_top100.trec").is_file() or "trec-dl" in data.name:
        from crossrank_lab.bench.common import load_trec_dl

        dataset, run = load_trec_dl(data, max_queries=max_queries)
        return dataset, {q: r[:candidates] for q, r in run.items()}, "official BM25"
    from crossrank_lab.quality.data import load_beir
    from crossrank_lab.quality.first_stage import bm25_run

    dataset = load_beir(data, "test", max_queries=max_queries)
    return dataset, bm25_run(dataset, candidates), "bm25s BM25"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", type=Path, required=True, help="first-stage cross-encoder dir")
    p.add_argument("--large", type=Path, default=DEFAULT_MODEL, help="final cross-encoder dir")
    p.add_argument("--dataset", type=Path, default=DEFAULT_DATA, help="TREC DL or BEIR folder")
    p.add_argument("--candidates", type=int, default=100, help="first-stage candidates")
    p.add_argument("--keep", type=int, default=30, help="what the small model passes on")
    p.add_argument("--max-queries", type=int, help="only the first N judged queries")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="torch / ONNX threads")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from crossrank_lab.quality.metrics import evaluate_run
    from rerank_core import Cascade, Reranker

    torch.set_num_threads(args.threads)
    dataset, first, first_name = inputs(args.dataset, args.candidates, args.max_queries)
    rel = dataset.default_rel_level()
    opts: dict[str, Any] = {"cache": None, "batch_size": args.batch_size}
    small = Reranker("minilm", model=str(args.small), num_threads=args.threads, **opts)
    large = Reranker("minilm", model=str(args.large), num_threads=args.threads, **opts)
    cascade = Cascade([(small, args.keep), large])
    systems: dict[str, Any] = {"large": large, "cascade": cascade, "small": small}
    q0 = next(iter(first))
    warm = [dataset.body(d) for d, _ in first[q0][:8]]
    for s in systems.values():  # one-off setup costs (ONNX sessions, first batches)
        s.rerank(dataset.queries[q0], warm)
    runs: dict[str, dict[str, list[tuple[str, float]]]] = {k: {} for k in systems}
    ms: dict[str, list[float]] = {k: [] for k in systems}
    pairs: dict[str, int] = dict.fromkeys(systems, 0)
    per_stage = [0, 0]
    overlap: list[float] = []
    load_before = os.getloadavg()[0]
    t_all = time.perf_counter()
    for n, (qid, cands) in enumerate(first.items()):
        ids = [d for d, _ in cands]
        texts = [dataset.body(d) for d in ids]
        names = list(systems) if n % 2 == 0 else list(reversed(systems))
        for name in names:
            s = systems[name]
            before = s.pairs_scored
            t0 = time.perf_counter()
            ranked = s.rerank(dataset.queries[qid], texts)
            ms[name].append((time.perf_counter() - t0) * 1000.0)
            pairs[name] += s.pairs_scored - before
            # a descending pseudo-score keeps the returned order (dropped after kept)
            runs[name][qid] = [(ids[r.index], float(len(ranked) - i)) for i, r in enumerate(ranked)]
            if name == "cascade":
                stats = cascade.last_stats
                assert stats is not None
                for k, st in enumerate(stats.stages):
                    per_stage[k] += st.pairs_scored
        top_l = {d for d, _ in runs["large"][qid][:10]}
        top_c = {d for d, _ in runs["cascade"][qid][:10]}
        overlap.append(len(top_l & top_c) / max(1, len(top_l)))
    wall = time.perf_counter() - t_all
    nq = len(first)
    rows = {}
    for name in systems:
        m = evaluate_run(dataset.qrels, runs[name], rel_level=rel, metrics=["nDCG@10"])
        rows[name] = {
            "nDCG@10": m["nDCG@10"],
            "pairs_scored": pairs[name],
            "pairs_per_query": pairs[name] / nq,
            "ms_p50": statistics.median(ms[name]),
            "ms_p95": pct(ms[name], 0.95),
            "ms_mean": statistics.fmean(ms[name]),
        }
    first_ndcg = evaluate_run(dataset.qrels, first, rel_level=rel, metrics=["nDCG@10"])["nDCG@10"]
    label = {
        "large": f"{args.large.name} alone (top-{args.candidates})",
        "cascade": f"cascade {args.small.name} → top-{args.keep} → {args.large.name}",
        "small": f"{args.small.name} alone (top-{args.candidates})",
    }
    base = rows["large"]
    print(
        f"{dataset.name}: {nq} queries, {first_name} top-{args.candidates} "
        f"(nDCG@10 {first_ndcg:.4f}); {args.threads} thread(s), batch_size {args.batch_size}; "
        f"1-min load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after "
        f"({os.cpu_count()} CPUs); {wall:.0f} s"
    )
    print()
    print("| system | nDCG@10 | Δ vs large | pairs/query | ms/query p50 | p95 | p50 vs large |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(
            f"| {label[name]} | {r['nDCG@10']:.4f} | {r['nDCG@10'] - base['nDCG@10']:+.4f} | "
            f"{r['pairs_per_query']:.0f} | {r['ms_p50']:.0f} | {r['ms_p95']:.0f} | "
            f"{r['ms_p50'] / base['ms_p50']:.0%} |"
        )
    print()
    print(
        f"cascade pairs per stage: {per_stage[0] / nq:.0f} + {per_stage[1] / nq:.0f} per query; "
        f"top-10 overlap with the large model alone: {statistics.fmean(overlap):.1%}"
    )
    if args.json:
        out = {
            "dataset": dataset.name,
            "queries": nq,
            "first_stage": {
                "name": first_name,
                "candidates": args.candidates,
                "nDCG@10": first_ndcg,
            },
            "keep": args.keep,
            "small": str(args.small),
            "large": str(args.large),
            "threads": args.threads,
            "batch_size": args.batch_size,
            "load_average": [load_before, os.getloadavg()[0]],
            "cpus": os.cpu_count(),
            "rows": {label[k]: v for k, v in rows.items()},
            "cascade_pairs_per_stage": [x / nq for x in per_stage],
            "top10_overlap": statistics.fmean(overlap),
            "cascade": cascade.describe()["stats"],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    for s in (small, large):
        s.close()


if __name__ == "__main__":
    main()
