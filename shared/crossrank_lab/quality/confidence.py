"""A confidence threshold from data: how well the rank-1 score tells whether the top-1 hit
is relevant, and the score below which it is relevant less than X% of the time.

A reranker's rank-1 score is a cheap out-of-domain signal: when even the best candidate
scores low, the first stage probably found nothing relevant. :func:`top1_outcomes` pairs
each query's top-1 score with whether that document is judged relevant (grade >=
``rel_level``; unjudged counts as not relevant); :func:`suggest_threshold` picks the
highest threshold under which the top-1 is relevant less than ``max_relevant`` of the time
and says how the flag ``score < threshold`` does as a detector of *not relevant* top-1
hits (precision, recall, queries flagged); :func:`roc_auc` is the threshold-free
separation of the two groups.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Suggestion", "roc_auc", "suggest_threshold", "top1_outcomes"]

Run = Mapping[str, Sequence[tuple[str, float]]]
Qrels = Mapping[str, Mapping[str, int]]


def top1_outcomes(run: Run, qrels: Qrels, *, rel_level: int) -> list[tuple[float, bool]]:
    """``(top-1 score, top-1 judged relevant)`` per query with a non-empty ranking."""
    out = []
    for qid, ranked in run.items():
        if not ranked:
            continue
        doc, score = max(ranked, key=lambda d: d[1])
        out.append((float(score), qrels.get(qid, {}).get(doc, 0) >= rel_level))
    return out


def roc_auc(outcomes: Sequence[tuple[float, bool]]) -> float | None:
    """The probability that a relevant top-1 scores above a non-relevant one (ties: half);
    ``None`` when one group is empty."""
    pos = [s for s, rel in outcomes if rel]
    neg = [s for s, rel in outcomes if not rel]
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


@dataclass(frozen=True)
class Suggestion:
    """A threshold and how the flag ``top-1 score < threshold`` does.

    ``relevant_below``: share of flagged queries whose top-1 is relevant anyway.
    ``precision``/``recall``: of the flag as a detector of non-relevant top-1 hits.
    ``flagged``/``queries``: queries flagged / evaluated; ``relevant_top1``: queries whose
    top-1 is relevant; ``auc``: :func:`roc_auc`; ``threshold`` is ``None`` when no score
    keeps the relevant share below ``max_relevant``."""

    threshold: float | None
    max_relevant: float
    relevant_below: float
    precision: float
    recall: float
    flagged: int
    queries: int
    relevant_top1: int
    auc: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self, scale: str = "") -> str:
        """One line for a report."""
        auc = "n/a" if self.auc is None else f"{self.auc:.3f}"
        head = (
            f"{self.relevant_top1} of {self.queries} queries have a relevant top-1; "
            f"top-1 score separates them with ROC AUC {auc}"
        )
        if self.threshold is None:
            return f"{head}; no threshold keeps the relevant share below {self.max_relevant:.0%}"
        unit = f" ({scale})" if scale else ""
        return (
            f"{head}. Suggested confidence_threshold={self.threshold:.4f}{unit}: below it the "
            f"top-1 is relevant {self.relevant_below:.0%} of the time (< {self.max_relevant:.0%}); "
            f"flags {self.flagged} of {self.queries} queries, precision {self.precision:.2f} "
            f"recall {self.recall:.2f} for 'top-1 not relevant'"
        )


def suggest_threshold(
    outcomes: Sequence[tuple[float, bool]], *, max_relevant: float = 0.5, min_flagged: int = 3
) -> Suggestion:
    """The highest threshold ``t`` (one of the observed scores) such that among queries with
    top-1 score below ``t`` — at least ``min_flagged`` of them — the top-1 is relevant less
    than ``max_relevant`` of the time."""
    if not 0.0 < max_relevant <= 1.0:
        raise ValueError(f"max_relevant must be in (0, 1], got {max_relevant!r}")
    ordered = sorted(outcomes)
    n = len(ordered)
    n_bad = sum(1 for _, rel in ordered if not rel)
    best: tuple[float, int, int] | None = None  # threshold, flagged, relevant among flagged
    relevant = 0
    for k in range(1, n + 1):  # flag the k lowest: threshold = the (k+1)-th lowest score
        relevant += ordered[k - 1][1]
        if k < n and ordered[k][0] == ordered[k - 1][0]:
            continue  # a threshold cannot split tied scores
        if k >= min_flagged and relevant / k < max_relevant:
            threshold = ordered[k][0] if k < n else ordered[-1][0] + 1e-6
            best = (threshold, k, relevant)
    auc = roc_auc(ordered)
    rel_total = n - n_bad
    if best is None:
        return Suggestion(None, max_relevant, 0.0, 0.0, 0.0, 0, n, rel_total, auc)
    threshold, k, rel_k = best
    bad_k = k - rel_k
    return Suggestion(
        threshold=threshold,
        max_relevant=max_relevant,
        relevant_below=rel_k / k,
        precision=bad_k / k,
        recall=bad_k / n_bad if n_bad else 0.0,
        flagged=k,
        queries=n,
        relevant_top1=rel_total,
        auc=auc,
    )
