"""Pure ranking: window scores → text scores (aggregate, optional sigmoid) → sorted, cut.

:func:`score_texts` turns a plan's pair scores into one :class:`RankedText` per text in
input order (a text with an unscored window — NaN, a deadline passed first — is
unscored); :func:`unscored` gives the same list marked unscored (the
``on_error="passthrough"`` answer); :func:`rank` sorts the scored texts best first and
applies ``min_score``, puts the unscored ones after them in input order (never dropped by
``min_score``), then cuts at ``top_n``. :func:`results` wraps each job's list as a
:class:`~rerank_core.types.Ranking` with its best score and confidence flag.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ._validate import number, positive_int
from .confidence import ranking
from .config import Aggregate, WindowConfig
from .planning import Plan, TextPlan
from .types import RankedText, Ranking, ScoreScale
from .windows import aggregate

__all__ = ["Cut", "rank", "results", "score_texts", "sigmoid", "unscored"]


@dataclass(frozen=True, slots=True)
class Cut:
    """How a ranked list is cut: ``min_score`` first, then ``top_n`` (``None``: no cut),
    and the ``confidence_threshold`` its best score is held against; all on the scale of
    the results."""

    top_n: int | None = None
    min_score: float | None = None
    confidence_threshold: float | None = None

    def __post_init__(self) -> None:
        positive_int("top_n", self.top_n, allow_none=True)
        number("min_score", self.min_score, allow_none=True)
        number("confidence_threshold", self.confidence_threshold, allow_none=True)


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
            if any(math.isnan(s) for s in window_scores):  # a deadline passed first
                ranked.append(_unscored(i, text, tp))
                continue
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
        [_unscored(i, text, tp) for i, (text, tp) in enumerate(zip(texts, text_plans, strict=True))]
        for texts, text_plans in zip(plan.texts, plan.plans, strict=True)
    ]


def _unscored(i: int, text: str, tp: TextPlan) -> RankedText:
    return RankedText(
        index=i,
        score=math.nan,
        text=text,
        window=(0, len(text)),
        n_windows=len(tp.windows),
        truncated=tp.truncated,
        scored=False,
    )


def rank(items: Sequence[RankedText], cut: Cut) -> list[RankedText]:
    """The scored items best first (ties by input index) and cut by ``min_score``, then
    the unscored ones in input order (never dropped by ``min_score``), then ``top_n``."""
    out = sorted((r for r in items if r.scored), key=lambda r: (-r.score, r.index))
    if cut.min_score is not None:
        out = [r for r in out if r.score >= cut.min_score]
    out += [r for r in items if not r.scored]
    return out[: cut.top_n] if cut.top_n is not None else out


def results(
    plan: Plan,
    scores: Sequence[float] | None,
    cut: Cut | None,
    *,
    window: WindowConfig,
    apply_sigmoid: bool = False,
    scale: ScoreScale = "logit",
) -> list[Ranking]:
    """Per job: the scored texts (``scores=None``: unscored), ranked and cut when ``cut``
    is given, else in input order; each a :class:`Ranking` (best score, confidence flag
    against ``cut.confidence_threshold``, unscored count; ``deadline_passed`` when the
    scores left some of its texts unscored). ``scale``: the scale of the results."""
    per_job = (
        unscored(plan)
        if scores is None
        else score_texts(
            plan, scores, how=window.aggregate, topk=window.topk, apply_sigmoid=apply_sigmoid
        )
    )
    threshold = cut.confidence_threshold if cut is not None else None
    return [
        ranking(
            items if cut is None else rank(items, cut),
            items,
            threshold=threshold,
            scale=scale,
            deadline_passed=scores is not None and any(not r.scored for r in items),
        )
        for items in per_job
    ]
