"""``crossrank eval --fusion``: choose a fusion weight on a dev split, report it on test.

Each query's first-stage top ``max(depths)`` is scored by the reranker once (one
``Reranker.score`` call per query; every depth and every weight reuses those scores), then
fused with the first stage's scores by :func:`rerank_core.fusion.fuse_scores` — the same
function the engine ranks with. For each depth N:

* the linear interpolation's first-stage weight is swept over ``weights`` on the **dev**
  split and the weight with the best dev nDCG@10 is chosen (ties: the smaller weight);
* the **test** split is reported for the first stage, the reranker alone, RRF (k=60) and the
  linear fusion at the chosen weight. The test value of every weight is recorded too, for
  information only (``test_curve``): it never takes part in the choice.

As everywhere in ``crossrank eval``, documents below N keep their first-stage order under
the reranked ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rerank_core import Fusion, Reranker
from rerank_core.fusion import fuse_scores

from .data import Dataset, Run
from .metrics import DEFAULT_METRICS, evaluate_run

__all__ = [
    "DEFAULT_WEIGHTS",
    "Scored",
    "choose_weight",
    "fused_run",
    "fusion_markdown",
    "fusion_study",
    "score_candidates",
]

DEFAULT_WEIGHTS = tuple(round(i * 0.05, 2) for i in range(21))

#: qid -> [(doc id, first-stage score, reranker score)] in first-stage order
Scored = dict[str, list[tuple[str, float, float]]]


@dataclass(frozen=True)
class Split:
    """One split of the study: its dataset, first-stage run and relevance level."""

    label: str
    dataset: Dataset
    first: Run
    rel_level: int


def score_candidates(
    reranker: Reranker,
    dataset: Dataset,
    first: Run,
    depth: int,
    *,
    progress: Callable[..., Any] | None = None,
) -> tuple[Scored, float]:
    """The reranker's score of each query's first-stage top ``depth`` (one call per query)
    and the seconds it took."""
    out: Scored = {}
    qids = list(dataset.queries)
    bar = progress(total=len(qids), desc=f"score top-{depth}", unit="q") if progress else None
    t0 = time.perf_counter()
    try:
        for qid in qids:
            top = first.get(qid, [])[:depth]
            scores = reranker.score(dataset.queries[qid], [dataset.body(d) for d, _ in top])
            out[qid] = [(d, f, s) for (d, f), s in zip(top, scores, strict=True)]
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return out, time.perf_counter() - t0


def fused_run(scored: Scored, first: Run, n: int, fusion: Fusion | None) -> Run:
    """Each query's top ``n`` ranked by the fused score (``fusion=None``: the reranker's
    score alone), then the rest of the first stage in its order."""
    out: Run = {}
    for qid, cands in scored.items():
        top = cands[:n]
        if not top:
            out[qid] = []
            continue
        rerank = [s for _, _, s in top]
        values = rerank if fusion is None else fuse_scores(rerank, [f for _, f, _ in top], fusion)
        head = sorted(
            ((d, v) for (d, _, _), v in zip(top, values, strict=True)),
            key=lambda dv: -dv[1],
        )
        floor = min(v for _, v in head)
        tail = [(d, floor - 1.0 - i) for i, (d, _) in enumerate(first.get(qid, [])[n:])]
        out[qid] = head + tail
    return out


def choose_weight(curve: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """The (weight, metric) with the best metric; ties go to the smaller weight."""
    return max(curve, key=lambda wm: (wm[1], -wm[0]))


def _ndcg(split: Split, run: Run, metrics: Sequence[str]) -> dict[str, float]:
    return evaluate_run(split.dataset.qrels, run, rel_level=split.rel_level, metrics=metrics)


def fusion_study(
    reranker: Reranker,
    dev: Split,
    test: Split,
    depths: Sequence[int],
    *,
    weights: Sequence[float] = DEFAULT_WEIGHTS,
    rrf_k: int = 60,
    metrics: Sequence[str] = DEFAULT_METRICS,
    progress: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """The study's result (JSON-able): per depth, the dev sweep, the chosen weight and the
    test metrics of the first stage, the reranker alone, RRF and the chosen linear fusion."""
    deepest = max(depths)
    dev_scored, dev_s = score_candidates(
        reranker, dev.dataset, dev.first, deepest, progress=progress
    )
    test_scored, test_s = score_candidates(
        reranker, test.dataset, test.first, deepest, progress=progress
    )
    rows = []
    for n in sorted(depths):
        dev_curve = [
            (
                w,
                _ndcg(dev, fused_run(dev_scored, dev.first, n, Fusion.linear(w)), ["ndcg@10"])[
                    "ndcg@10"
                ],
            )
            for w in weights
        ]
        w, dev_best = choose_weight(dev_curve)
        test_curve = [
            (
                x,
                _ndcg(test, fused_run(test_scored, test.first, n, Fusion.linear(x)), ["ndcg@10"])[
                    "ndcg@10"
                ],
            )
            for x in weights
        ]
        rows.append(
            {
                "candidates": n,
                "dev_curve": [{"first_stage_weight": x, "ndcg@10": m} for x, m in dev_curve],
                "chosen_weight": w,
                "dev_ndcg@10_at_chosen": dev_best,
                "dev": {
                    "reranker": _ndcg(dev, fused_run(dev_scored, dev.first, n, None), ["ndcg@10"]),
                    "rrf": _ndcg(
                        dev, fused_run(dev_scored, dev.first, n, Fusion.rrf(rrf_k)), ["ndcg@10"]
                    ),
                },
                "test": {
                    "first_stage": _ndcg(test, test.first, metrics),
                    "reranker": _ndcg(test, fused_run(test_scored, test.first, n, None), metrics),
                    "rrf": _ndcg(
                        test, fused_run(test_scored, test.first, n, Fusion.rrf(rrf_k)), metrics
                    ),
                    "linear": _ndcg(
                        test, fused_run(test_scored, test.first, n, Fusion.linear(w)), metrics
                    ),
                },
                # for information only: never used to choose the weight
                "test_curve": [{"first_stage_weight": x, "ndcg@10": m} for x, m in test_curve],
            }
        )
    return {
        "dev": {
            "label": dev.label,
            "queries": len(dev.dataset.queries),
            "first_stage": _ndcg(dev, dev.first, ["ndcg@10"]),
            "score_seconds": dev_s,
        },
        "test": {
            "label": test.label,
            "queries": len(test.dataset.queries),
            "score_seconds": test_s,
        },
        "rrf_k": rrf_k,
        "weights": list(weights),
        "depths": rows,
    }


def fusion_markdown(study: dict[str, Any]) -> str:
    """The study as a markdown table (test nDCG@10 per depth; the weight chosen on dev)."""
    dev, test = study["dev"], study["test"]
    lines = [
        f"Fusion weight chosen on **{dev['label']}** ({dev['queries']} queries), reported on "
        f"**{test['label']}** ({test['queries']} queries); nDCG@10.",
        "",
        "| top-N | first stage | reranker | RRF (k="
        f"{study['rrf_k']}) | linear (w chosen on dev) | w | dev nDCG@10 at w |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in study["depths"]:
        t = r["test"]
        lines.append(
            f"| {r['candidates']} | {t['first_stage']['ndcg@10']:.4f} | "
            f"{t['reranker']['ndcg@10']:.4f} | {t['rrf']['ndcg@10']:.4f} | "
            f"{t['linear']['ndcg@10']:.4f} | {r['chosen_weight']:g} | "
            f"{r['dev_ndcg@10_at_chosen']:.4f} |"
        )
    return "\n".join(lines) + "\n"
