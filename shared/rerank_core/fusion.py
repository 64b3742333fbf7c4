"""Score fusion: the reranker's score combined with the first stage's.

A cross-encoder helps most where the domain is close to its training data; far from it
(scientific claims, legal text, ...) the first stage's own score still knows something the
reranker does not. :class:`Fusion` combines the two per call:

* ``Fusion.rrf(k=60)`` — reciprocal-rank fusion: ``1/(k + rank_rerank) + 1/(k +
  rank_first)`` (ranks from 1, ties broken by input position). Only the orders matter,
  so any first-stage score works (BM25, cosine, a hybrid's).
* ``Fusion.linear(first_stage_weight=w)`` — normalized linear interpolation:
  ``(1 - w) * minmax(rerank) + w * minmax(first)``, each min–max normalized over the
  call's scored texts (a constant list normalizes to 0). ``w=0`` is the reranker alone,
  ``w=1`` the first stage alone.

Anywhere a fusion is accepted it may be written as a :class:`Fusion`, ``"rrf"``,
``"rrf:20"`` (k), ``"linear:0.3"`` (the first stage's weight), ``("linear", 0.3)``,
``("rrf", 20)``, ``None`` (the default: the engine's own, else none) or ``"none"`` (off
for this call). :meth:`Fusion.spec` is the canonical string (what the adapters serialize).

First-stage scores are higher-is-better (negate a distance; pass ``-rank`` when all you
have is ranks) and come with the call (``first_stage_scores=``), one finite number per
text; a missing or invalid one is a :class:`~rerank_core.errors.FirstStageScoreError`
naming its position.

What the results carry: ``RankedText.score`` is the fused score (the order),
``RankedText.rerank_score`` the reranker's own score and ``first_stage_score`` the first
stage's. ``min_score`` and ``confidence_threshold`` keep their meaning: they are read on the
**reranker's** score (its scale, ``cutoff_scale`` converted as without fusion), because a
fused score is relative to the call (RRF depends only on ranks, the min–max normalization
always gives the best text 1) and says nothing absolute about relevance.
``Ranking.top_score`` is the best reranker score of the call.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ._validate import number, positive_int
from .confidence import log_ranking, ranking
from .errors import ConfigError, FirstStageScoreError
from .planning import Plan
from .ranking import Cut
from .types import RankedText, Ranking

__all__ = [
    "DEFAULT_RRF_K",
    "FirstStage",
    "Fusion",
    "FusionLike",
    "FusionMethod",
    "check_first_stage_scores",
    "check_per_job",
    "fuse_scores",
    "fused_ranking",
    "parse_fusion",
    "scores_per_job",
]

FusionMethod = Literal["rrf", "linear"]
DEFAULT_RRF_K = 60
_DEFAULT_WEIGHT = 0.5


@dataclass(frozen=True, slots=True, kw_only=True)
class Fusion:
    """How the reranker's score and the first stage's combine (see the module).

    ``method``: ``"rrf"`` or ``"linear"``; ``k``: the RRF constant (default 60);
    ``first_stage_weight``: the linear interpolation's weight of the first stage, in
    [0, 1] (the reranker gets ``1 - first_stage_weight``; default 0.5).
    """

    method: FusionMethod = "rrf"
    k: int = DEFAULT_RRF_K
    first_stage_weight: float = _DEFAULT_WEIGHT

    def __post_init__(self) -> None:
        if self.method not in ("rrf", "linear"):
            raise ConfigError(f"fusion method must be 'rrf' or 'linear', got {self.method!r}")
        positive_int("fusion k", self.k)
        number("fusion first_stage_weight", self.first_stage_weight)
        if not 0.0 <= float(self.first_stage_weight) <= 1.0:
            raise ConfigError(
                f"fusion first_stage_weight must be in [0, 1], got {self.first_stage_weight!r}"
            )

    @classmethod
    def rrf(cls, k: int = DEFAULT_RRF_K) -> Fusion:
        return cls(method="rrf", k=k)

    @classmethod
    def linear(cls, first_stage_weight: float = _DEFAULT_WEIGHT) -> Fusion:
        return cls(method="linear", first_stage_weight=first_stage_weight)

    def spec(self) -> str:
        """The canonical string: ``"rrf"`` (k=60), ``"rrf:20"`` or ``"linear:0.3"``."""
        if self.method == "rrf":
            return "rrf" if self.k == DEFAULT_RRF_K else f"rrf:{self.k}"
        return f"linear:{float(self.first_stage_weight):g}"

    def fuse(self, rerank: Sequence[float], first: Sequence[float]) -> list[float]:
        """The fused score of each text (same order as the inputs)."""
        return fuse_scores(rerank, first, self)


FusionLike = Fusion | str | tuple[str, float] | None


def parse_fusion(value: object) -> Fusion | None:
    """A :class:`Fusion` from any accepted spelling; ``None``/``"none"`` give ``None``.
    Anything else is a ``ConfigError`` naming the accepted forms."""
    if value is None or isinstance(value, Fusion):
        return value
    hint = "a Fusion, 'rrf', 'rrf:K', 'linear:W', ('linear', W), ('rrf', K) or 'none'"
    if isinstance(value, str):
        name, sep, arg = value.strip().lower().partition(":")
        if name == "none" and not sep:
            return None
        return _named(name, arg.strip() if sep else None, value, hint)
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        return _named(value[0].lower(), value[1], value, hint)
    raise ConfigError(f"fusion must be {hint}; got {value!r:.80}")


def _named(name: str, arg: object, value: object, hint: str) -> Fusion:
    if name not in ("rrf", "linear"):
        raise ConfigError(f"unknown fusion {value!r:.80}: expected {hint}")
    if arg is None:
        return Fusion(method=name)  # type: ignore[arg-type]
    try:
        if isinstance(arg, bool):
            raise ValueError
        if name == "rrf":
            k = int(arg) if isinstance(arg, (int, str)) else -1
            if isinstance(arg, str) and str(k) != arg:
                raise ValueError
            return Fusion.rrf(k)
        w = float(arg) if isinstance(arg, (int, float, str)) else math.nan
        return Fusion.linear(w)
    except ValueError:
        what = "an integer k >= 1" if name == "rrf" else "a first-stage weight in [0, 1]"
        raise ConfigError(f"fusion {value!r:.80}: {name} takes {what}") from None


def _ranks(scores: Sequence[float]) -> list[int]:
    """1-based rank of each score, best (highest) first; ties by position."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    ranks = [0] * len(scores)
    for r, i in enumerate(order, start=1):
        ranks[i] = r
    return ranks


def _minmax(scores: Sequence[float]) -> list[float]:
    lo, hi = min(scores), max(scores)
    if hi <= lo:
        return [0.0] * len(scores)
    return [(s - lo) / (hi - lo) for s in scores]


def fuse_scores(rerank: Sequence[float], first: Sequence[float], fusion: Fusion) -> list[float]:
    """Pure fusion of two score lists of equal length (higher is better in both)."""
    if len(rerank) != len(first):
        raise ValueError(f"{len(rerank)} reranker scores but {len(first)} first-stage scores")
    if not rerank:
        return []
    if fusion.method == "rrf":
        k = fusion.k
        return [
            1.0 / (k + a) + 1.0 / (k + b)
            for a, b in zip(_ranks(rerank), _ranks(first), strict=True)
        ]
    w = float(fusion.first_stage_weight)
    return [(1.0 - w) * a + w * b for a, b in zip(_minmax(rerank), _minmax(first), strict=True)]


def check_first_stage_scores(values: object, n_texts: int, job: int | None) -> list[float]:
    """One job's first-stage scores as floats, one per text (``job``: its index in the
    error message, ``None`` for a single call); anything else raises
    :class:`~rerank_core.errors.FirstStageScoreError`."""
    where = "" if job is None else f" of job {job}"
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise FirstStageScoreError(
            f"first_stage_scores{where} must be a sequence of numbers, got {type(values).__name__}",
            index=None,
        )
    if len(values) != n_texts:
        raise FirstStageScoreError(
            f"first_stage_scores{where} has {len(values)} scores for {n_texts} texts",
            index=None,
        )
    out = []
    for i, v in enumerate(values):
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not ok:
            raise FirstStageScoreError(
                f"first_stage_scores{where}[{i}] must be a finite number, got {v!r:.40}",
                index=i,
            )
        out.append(float(v))
    return out


def scores_per_job(scores: object, *, many: bool) -> tuple[object, ...]:
    """A call's ``first_stage_scores`` as one entry per job: the one sequence of a single
    call, or (``many``) the sequence of per-job sequences, which must be one."""
    if not many:
        return (scores,)
    if isinstance(scores, (str, bytes)) or not isinstance(scores, Sequence):
        raise FirstStageScoreError(
            "first_stage_scores for rerank_many must be one sequence per job", index=None
        )
    return tuple(scores)


def check_per_job(per_job: Sequence[object], texts: Sequence[Sequence[str]]) -> list[list[float]]:
    """Each job's first-stage scores checked against its texts (one list per job)."""
    n_jobs = len(texts)
    if len(per_job) != n_jobs:
        raise FirstStageScoreError(
            f"first_stage_scores has {len(per_job)} lists for {n_jobs} jobs", index=None
        )
    return [
        check_first_stage_scores(s, len(t), None if n_jobs == 1 else j)
        for j, (s, t) in enumerate(zip(per_job, texts, strict=True))
    ]


@dataclass(frozen=True, slots=True)
class FirstStage:
    """One call's fusion and its first-stage scores (one list per job), checked."""

    fusion: Fusion
    scores: tuple[object, ...] | None

    @classmethod
    def of(
        cls, default: Fusion | None, fusion: object, scores: object, *, many: bool
    ) -> FirstStage | None:
        """The call's fusion (``fusion``: ``None`` takes ``default``, ``"none"`` turns it
        off) with its ``scores`` (one sequence, or with ``many`` one per job; checked
        against the texts when the plan is known). ``None`` when the call fuses nothing;
        scores without a fusion are a ``ConfigError``."""
        chosen = default if fusion is None else parse_fusion(fusion)
        if chosen is None:
            if scores is not None:
                raise ConfigError(
                    "first_stage_scores given but no fusion: pass fusion='rrf' or "
                    "('linear', w), or set it on the Reranker"
                )
            return None
        if scores is None:
            return cls(chosen, None)
        return cls(chosen, scores_per_job(scores, many=many))

    def check(self, plan: Plan) -> list[list[float]]:
        """The first-stage scores per job, checked against the plan's texts."""
        if not plan.texts:
            return []
        if self.scores is None:
            raise FirstStageScoreError(
                f"fusion={self.fusion.spec()!r} needs the first stage's scores: pass "
                "first_stage_scores= (one number per text, higher is better)",
                index=None,
            )
        return check_per_job(self.scores, plan.texts)

    def finish(
        self, in_order: Sequence[Ranking], first: Sequence[Sequence[float]], cut: Cut
    ) -> list[Ranking]:
        """Per job, the fused :class:`Ranking` from its input-order results."""
        out = []
        for items, scores in zip(in_order, first, strict=True):
            fused = fused_ranking(items, scores, self.fusion, cut)
            log_ranking(fused, len(items))
            out.append(fused)
        return out


def fused_ranking(items: Ranking, first: Sequence[float], fusion: Fusion, cut: Cut) -> Ranking:
    """``items`` (one job's results in input order) ranked by the fused score and cut:
    ``min_score`` on the reranker's score, unscored texts after the scored ones in input
    order, then ``top_n``. Facts (best score, confidence) are the reranker's."""
    scored = [r for r in items if r.scored]
    fused = fusion.fuse([r.score for r in scored], [first[r.index] for r in scored])
    ranked = sorted(
        (
            dataclasses.replace(r, score=f, rerank_score=r.score, first_stage_score=first[r.index])
            for r, f in zip(scored, fused, strict=True)
        ),
        key=lambda r: (-r.score, r.index),
    )
    if cut.min_score is not None:
        floor = cut.min_score
        ranked = [r for r in ranked if r.rerank_score is not None and r.rerank_score >= floor]
    kept: list[RankedText] = ranked + [
        dataclasses.replace(r, first_stage_score=first[r.index]) for r in items if not r.scored
    ]
    if cut.top_n is not None:
        kept = kept[: cut.top_n]
    return ranking(
        kept,
        items,
        threshold=cut.confidence_threshold,
        scale=items.score_scale,
        deadline_passed=items.deadline_passed,
    )
