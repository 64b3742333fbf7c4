"""Pure ranking: window scores → text scores (aggregate, optional sigmoid) → sorted, cut.

:func:`score_texts` turns a plan's pair scores into one :class:`RankedText` per text in
input order; :func:`unscored` gives the same list marked unscored (the
``on_error="passthrough"`` answer); :func:`rank` sorts best first and applies
``min_score`` then ``top_n`` — except for unscored texts, which keep the input order
and are only cut by ``top_n`` (never dropped by ``min_score``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ._validate import number, positive_int
from .config import Aggregate, WindowConfig
from .planning import Plan
from .types import RankedText
from .windows import aggregate

__all__ = ["Cut", "rank", "results", "score_texts", "sigmoid", "unscored"]


@dataclass(frozen=True, slots=True)
class Cut:
    """How a ranked list is cut: ``min_score`` first, then ``top_n`` (``None``: no cut)."""

    top_n: int | None = None
    min_score: float | None = None

    def __post_init__(self) -> None:
        positive_int("top_n", self.top_n, allow_none=True)
        number("min_score", self.min_score, allow_none=True)


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def score_texts(
    plan: Plan,
    scores: Sequence[float],
    *,
    how: Aggregate = "max",
    topk: int = 2,
    apply_sigmoid: bool = False,
) -> list[list[RankedText]]:
    """One scored :class:`RankedText` per text, per job, in input order; ``scores`` are
    the scores of ``plan.pairs``."""
    results: list[list[RankedText]] = []
    for texts, text_plans in zip(plan.texts, plan.plans, strict=True):
        ranked: list[RankedText] = []
        for i, (text, tp) in enumerate(zip(texts, text_plans, strict=True)):
            window_scores = [scores[u] for u in tp.uids]
            if apply_sigmoid:
                window_scores = [sigmoid(s) for s in window_scores]
            value, best = aggregate(window_scores, how, topk)
            w = tp.windows[best]
            ranked.append(
                RankedText(
                    index=i,
                    score=value,
                    text=text,
                    window=(w.start, w.end),
                    n_windows=len(tp.windows),
                    truncated=tp.truncated,
                )
            )
        results.append(ranked)
    return results


def unscored(plan: Plan) -> list[list[RankedText]]:
    """Every text, per job, in input order, marked unscored (``score`` NaN, the whole text
    as its window)."""
    return [
        [
            RankedText(
                index=i,
                score=math.nan,
                text=text,
                window=(0, len(text)),
                n_windows=len(tp.windows),
                truncated=tp.truncated,
                scored=False,
            )
            for i, (text, tp) in enumerate(zip(texts, text_plans, strict=True))
        ]
        for texts, text_plans in zip(plan.texts, plan.plans, strict=True)
    ]


def rank(items: Sequence[RankedText], cut: Cut) -> list[RankedText]:
    """Best first (ties by input index), then ``min_score``, then ``top_n``. Unscored
    items keep their order and are cut by ``top_n`` only."""
    if any(not r.scored for r in items):
        out = list(items)
    else:
        out = sorted(items, key=lambda r: (-r.score, r.index))
        if cut.min_score is not None:
            out = [r for r in out if r.score >= cut.min_score]
    return out[: cut.top_n] if cut.top_n is not None else out


def results(
    plan: Plan,
    scores: Sequence[float] | None,
    cut: Cut | None,
    *,
    window: WindowConfig,
    apply_sigmoid: bool = False,
) -> list[list[RankedText]]:
    """Per job: the scored texts (``scores=None``: unscored), ranked and cut when ``cut``
    is given, else in input order."""
    per_job = (
        unscored(plan)
        if scores is None
        else score_texts(
            plan, scores, how=window.aggregate, topk=window.topk, apply_sigmoid=apply_sigmoid
        )
    )
    return per_job if cut is None else [rank(items, cut) for items in per_job]
