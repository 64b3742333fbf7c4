"""Confidence: the rank-1 score of a call, a threshold that flags weak result sets, and the
record of both in the ``crossrank`` logger.

A query whose best score is below a corpus-specific threshold is probably out of domain:
the first stage found nothing the reranker believes in. :func:`ranking` wraps a ranked
list as a :class:`~rerank_core.types.Ranking` that carries the best score (before any
``min_score``/``top_n`` cut), the threshold and the flag; :func:`log_ranking` records them
at INFO level on the ``crossrank`` logger, with the same facts as ``extra`` fields
(``crossrank_top_score``, ``crossrank_low_confidence``, ...) for structured logging.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

from .types import RankedText, Ranking, ScoreScale

__all__ = ["log_ranking", "ranking", "top_score"]

logger = logging.getLogger("crossrank")


def top_score(items: Sequence[RankedText]) -> float | None:
    """The best score among the scored items (``None`` when none was scored)."""
    scores = [r.score for r in items if r.scored and not math.isnan(r.score)]
    return max(scores) if scores else None


def ranking(
    kept: Sequence[RankedText],
    every: Sequence[RankedText],
    *,
    threshold: float | None,
    scale: ScoreScale,
    deadline_passed: bool = False,
) -> Ranking:
    """``kept`` (the cut ranking) as a :class:`Ranking`; the facts come from ``every``
    (all texts of the job, before the cut). With a ``threshold``, the set is low-confidence
    when its best score is below it or nothing was scored."""
    best = top_score(every)
    low = threshold is not None and (best is None or best < threshold)
    return Ranking(
        kept,
        top_score=best,
        confidence_threshold=threshold,
        low_confidence=low,
        score_scale=scale,
        unscored=sum(1 for r in every if not r.scored),
        deadline_passed=deadline_passed,
    )


def log_ranking(r: Ranking, n_texts: int) -> None:
    """One INFO record per ranked job (never the query or the texts)."""
    if not logger.isEnabledFor(logging.INFO):
        return
    top = "none scored" if r.top_score is None else f"{r.top_score:.4f} ({r.score_scale})"
    flag = ""
    if r.confidence_threshold is not None:
        verdict = "LOW CONFIDENCE" if r.low_confidence else "confident"
        flag = f", {verdict} (threshold {r.confidence_threshold:.4f})"
    late = ", deadline passed" if r.deadline_passed else ""
    logger.info(
        "rerank: top-1 score %s%s; %d of %d texts scored%s",
        top,
        flag,
        n_texts - r.unscored,
        n_texts,
        late,
        extra={
            "crossrank_top_score": r.top_score,
            "crossrank_low_confidence": r.low_confidence,
            "crossrank_confidence_threshold": r.confidence_threshold,
            "crossrank_score_scale": r.score_scale,
            "crossrank_unscored": r.unscored,
            "crossrank_deadline_passed": r.deadline_passed,
        },
    )
