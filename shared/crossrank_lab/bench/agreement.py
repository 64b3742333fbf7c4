"""How closely a scorer ranks like a reference (fp32 ``CrossEncoder.predict``) on the same
candidate lists: Kendall's τ per query and the overlap of the top k, each averaged over
the queries; and nDCG@10 where the candidates are judged.

Every row of ``crossrank bench`` is reduced to a *ranking* (candidate indices, best
first) because the peers return different things (scores, sorted nodes, sorted
documents); a ranking is compared with the reference's scores as the positions
``n-1 … 0``. numpy only, nothing heavy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Agreement",
    "agreement",
    "kendall_tau",
    "ndcg_at_10",
    "ranking_from_scores",
    "top_k_overlap",
]


def ranking_from_scores(scores: Sequence[float]) -> list[int]:
    """Indices best first; ties keep the input order (a stable sort)."""
    return sorted(range(len(scores)), key=lambda i: -float(scores[i]))


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's τ-b of two score lists over the same items (ties counted as in
    ``scipy.stats.kendalltau``); NaN when either list is constant or has < 2 items."""
    import numpy as np

    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(
            f"kendall_tau: two lists of the same length expected, got {a.shape}, {b.shape}"
        )
    n = a.size
    if n < 2:
        return math.nan
    iu = np.triu_indices(n, k=1)
    da = np.sign(a[:, None] - a[None, :])[iu]
    db = np.sign(b[:, None] - b[None, :])[iu]
    num = float(np.sum(da * db))
    ties_a = float(np.sum(da != 0))
    ties_b = float(np.sum(db != 0))
    if ties_a == 0 or ties_b == 0:
        return math.nan
    return num / math.sqrt(ties_a * ties_b)


def top_k_overlap(a: Sequence[int], b: Sequence[int], k: int = 10) -> float:
    """Share of ``a``'s first ``k`` items that are among ``b``'s first ``k`` (1.0 for
    the same set, whatever its order); over ``min(k, len)`` items for shorter lists."""
    k = min(k, len(a), len(b))
    if k == 0:
        return math.nan
    return len(set(a[:k]) & set(b[:k])) / k


@dataclass(frozen=True, slots=True)
class Agreement:
    """A ranker's agreement with the reference, averaged over queries."""

    tau: float  # mean per-query Kendall τ-b against the reference scores
    top10_overlap: float  # mean share of the reference's top 10 in the ranker's top 10
    queries: int


def agreement(reference: Sequence[Sequence[float]], rankings: Sequence[Sequence[int]]) -> Agreement:
    """Per query: τ between the reference scores and the ranking (as positions), and the
    top-10 overlap of the two rankings; the means over the queries."""
    if len(reference) != len(rankings):
        raise ValueError(f"{len(reference)} reference lists but {len(rankings)} rankings")
    taus: list[float] = []
    overlaps: list[float] = []
    for ref, ranking in zip(reference, rankings, strict=True):
        if sorted(ranking) != list(range(len(ref))):
            raise ValueError(
                f"a ranking must order every one of the {len(ref)} candidates exactly once"
            )
        position = [0.0] * len(ref)
        for pos, i in enumerate(ranking):
            position[i] = float(len(ref) - 1 - pos)
        tau = kendall_tau(ref, position)
        if not math.isnan(tau):
            taus.append(tau)
        overlaps.append(top_k_overlap(ranking_from_scores(ref), ranking))
    return Agreement(_mean(taus), _mean(overlaps), len(rankings))


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def ndcg_at_10(
    qrels: Mapping[str, Mapping[str, int]],
    judged: Sequence[tuple[str, Sequence[str]]],
    rankings: Sequence[Sequence[int]],
    *,
    rel_level: int = 2,
) -> float:
    """nDCG@10 (ir-measures, as ``crossrank eval`` computes it) of the rankings, where
    ``judged[j]`` is query ``j``'s id and its candidates' document ids."""
    from ..quality.metrics import evaluate_run

    run: dict[str, list[tuple[str, float]]] = {}
    for (qid, docs), ranking in zip(judged, rankings, strict=True):
        run[qid] = [(docs[i], float(len(ranking) - pos)) for pos, i in enumerate(ranking)]
    qrels_run: Any = {q: dict(v) for q, v in qrels.items() if q in run}
    return float(evaluate_run(qrels_run, run, rel_level=rel_level, metrics=("ndcg@10",))["ndcg@10"])
