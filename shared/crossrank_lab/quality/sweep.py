"""Rerank the top-N candidates of a first stage for several N and measure each.

Every N is a separate, cold pass (the reranker should run with ``cache=None``), so the
latency of N is what a user pays for N candidates. Each query is one ``rerank`` call
through the engine, so windows, batching and truncation are the engine's. Candidates
below N keep their first-stage order under the reranked ones (rerank depth N).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from rerank_core.cascade import AnyReranker, Cascade

from .data import Dataset, DatasetError, Run
from .metrics import DEFAULT_METRICS, evaluate_run

__all__ = ["evaluate_first_stage", "latency_summary", "rerank_depth", "sweep"]

Progress = Callable[[int, str], Any]


def _check_run(dataset: Dataset, run: Run, depth: int) -> None:
    for qid in dataset.queries:
        for doc, _ in run.get(qid, [])[:depth]:
            if doc not in dataset.corpus:
                raise DatasetError(
                    f"run lists document {doc!r} for query {qid!r}, but it is not in "
                    f"{dataset.path / 'corpus.jsonl'}"
                )


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """Mean, median and 95th percentile in milliseconds."""
    if not seconds:
        return {"mean": 0.0, "p50": 0.0, "p95": 0.0}
    ms = sorted(s * 1000.0 for s in seconds)
    p95 = ms[min(len(ms) - 1, max(0, round(0.95 * len(ms)) - 1))]
    return {"mean": statistics.fmean(ms), "p50": statistics.median(ms), "p95": p95}


def rerank_depth(
    reranker: AnyReranker,
    dataset: Dataset,
    first: Run,
    n: int,
    *,
    progress: Callable[..., Any] | None = None,
) -> tuple[Run, list[float], int]:
    """Rerank each query's top ``n`` with ``reranker``.

    Returns the new run (reranked top ``n``, then the rest in first-stage order), the
    seconds each query's ``rerank`` call took, and the pairs the model scored.
    """
    _check_run(dataset, first, n)
    out: Run = {}
    seconds: list[float] = []
    before = reranker.pairs_scored
    qids = list(dataset.queries)
    bar = progress(total=len(qids), desc=f"rerank top-{n}", unit="q") if progress else None
    try:
        for qid in qids:
            cands = first.get(qid, [])
            top = cands[:n]
            if not top:
                out[qid] = []
                continue
            texts = [dataset.body(d) for d, _ in top]
            t0 = time.perf_counter()
            ranked = reranker.rerank(dataset.queries[qid], texts, **_first_scores(reranker, top))
            seconds.append(time.perf_counter() - t0)
            head = [(top[r.index][0], r.score) for r in ranked]
            floor = min(s for _, s in head) if head else 0.0
            tail = [(d, floor - 1.0 - i) for i, (d, _) in enumerate(cands[n:])]
            out[qid] = head + tail
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return out, seconds, reranker.pairs_scored - before


def _first_scores(reranker: AnyReranker, top: Sequence[tuple[str, float]]) -> dict[str, Any]:
    """The first stage's scores of ``top`` for a cascade whose stages fuse (else nothing)."""
    if isinstance(reranker, Cascade) and reranker.fuses:
        return {"first_stage_scores": [float(s) for _, s in top]}
    return {}


def evaluate_first_stage(
    dataset: Dataset, first: Run, *, rel_level: int, metrics: Sequence[str] = DEFAULT_METRICS
) -> dict[str, float]:
    return evaluate_run(dataset.qrels, first, rel_level=rel_level, metrics=metrics)


def sweep(
    reranker: AnyReranker,
    dataset: Dataset,
    first: Run,
    candidates: Sequence[int],
    *,
    rel_level: int,
    metrics: Sequence[str] = DEFAULT_METRICS,
    progress: Callable[..., Any] | None = None,
    warmup: bool = True,
) -> list[dict[str, Any]]:
    """One result per N: metrics, latency per query (ms), pairs scored, pairs per second."""
    if warmup and dataset.queries:  # the first model call pays one-off setup costs
        qid = next(iter(dataset.queries))
        docs = [d for d, _ in first.get(qid, [])[:2] if d in dataset.corpus]
        if docs:
            fused = _first_scores(reranker, first.get(qid, [])[: len(docs)])
            reranker.score(dataset.queries[qid], [dataset.body(d) for d in docs], **fused)
    results: list[dict[str, Any]] = []
    for n in candidates:
        t0 = time.perf_counter()
        run, seconds, pairs = rerank_depth(reranker, dataset, first, n, progress=progress)
        wall = time.perf_counter() - t0
        scored_time = sum(seconds)
        results.append(
            {
                "candidates": n,
                "metrics": evaluate_run(dataset.qrels, run, rel_level=rel_level, metrics=metrics),
                "latency_ms": latency_summary(seconds),
                "pairs_scored": pairs,
                "pairs_per_s": pairs / scored_time if scored_time > 0 else 0.0,
                "seconds": wall,
                "run": run,
            }
        )
    return results
