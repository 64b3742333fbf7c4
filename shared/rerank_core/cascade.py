"""Multi-stage reranking, coarse to fine: a :class:`Cascade` of engines.

Each stage is a real :class:`~rerank_core.engine.Reranker` (its own windows, batching,
micro-batcher and cache). Stage ``i`` ranks what it is given and passes its best ``keep``
to stage ``i + 1``; the last stage ranks everything it gets. An optional pairwise stage
(:class:`PairwiseStage`, e.g. :class:`~rerank_core.backends.t5.DuoT5Stage`) reorders the
last stage's top ``top_k``.

The result of ``rerank`` is the final stage's ranking of its inputs, then the texts
dropped by earlier stages, later drops first (each group in the order its stage ranked
it). Only texts the final stage scored carry a score: the others are marked
``scored=False`` with a NaN score, like the engine's unscored texts, and their earlier
stage's score is in :attr:`CascadeRanking.stage_scores`. A :class:`Cascade` has the
engine's calling surface (``score``, ``rerank``, ``rerank_many``, their async variants,
``describe``, ``close``), so the adapters and ``crossrank eval`` take one wherever they
take a ``Reranker``. :attr:`Cascade.last_stats` reports each stage's texts, pairs scored
and seconds for the latest call; :meth:`Cascade.from_spec` builds one from a short spec
(``"minilm:model=DIR2,keep=30;minilm:model=DIR6"``), checked before any model loads.

A stage may rank by its score **fused** with the first stage's (:mod:`~rerank_core.fusion`:
``Stage(engine, keep=30, fusion="rrf")``, ``fusion=rrf`` or ``fusion=linear:0.3`` in a spec
stage): a weak small model then keeps what it and the first stage (BM25, ...) agree on
instead of its own top ``keep`` alone. Each call passes ``first_stage_scores=`` (one
number per text, higher is better; one list per job for ``rerank_many``) and every
fusing stage gets the scores of the texts in its pool, in the pool's order. When the
final stage fuses, the result's ``score`` is its fused score (``rerank_score``: its
model's own), exactly as the engine's; :meth:`Cascade.score` returns the final model's
own scores (like ``Reranker.score``), earlier stages still fusing to choose its pool.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ._validate import int_at_least, number, positive_int
from .cache import close_quietly
from .cascade_spec import FUSION_KEY, PAIRWISE_NAMES, parse_spec
from .config import OnError
from .deadline import Deadline, check_deadline_ms
from .engine import Reranker
from .errors import ConfigError, FirstStageScoreError
from .fusion import Fusion, FusionLike, check_per_job, parse_fusion, scores_per_job
from .planning import Job, check_jobs
from .scales import CutoffScale, check_cutoff_scale
from .types import Backend, RankedText, Ranking, ScoreScale

__all__ = [
    "AnyReranker",
    "Cascade",
    "CascadeRanking",
    "CascadeStats",
    "PairwiseStage",
    "Stage",
    "StageStats",
    "parse_spec",
]

Jobs = Iterable[tuple[str, Sequence[str]]]


@runtime_checkable
class PairwiseStage(Protocol):
    """A final stage that reorders the first ``top_k`` of a ranking by comparing texts
    pairwise (``k·(k−1)`` model inputs): ``rerank(query, ranked)`` takes the previous
    stage's :class:`RankedText` list, best first, and returns the first ``top_k`` reordered
    (their ``index`` kept) followed by the rest. :class:`~rerank_core.backends.t5.DuoT5Stage`
    is one."""

    top_k: int

    def rerank(self, query: str, ranked: Sequence[RankedText]) -> list[RankedText]: ...


@dataclass(frozen=True)
class Stage:
    """One pointwise stage: an engine and how many of its best texts go on (``keep``;
    ``None`` for the last stage, which ranks everything it gets). ``name`` labels the stage
    in stats (default: its model id). ``fusion``: rank by the engine's score fused with the
    first stage's (``"rrf"``, ``"linear:0.3"``, a :class:`~rerank_core.fusion.Fusion`, ...;
    ``None``: the engine's own default fusion, usually none; ``"none"``: never fuse)."""

    reranker: Reranker
    keep: int | None = None
    name: str | None = None
    fusion: FusionLike = None


@dataclass(frozen=True)
class StageStats:
    """One stage in one call (or, in :attr:`Cascade.stats`, summed over calls): texts it
    was given, texts it passed on (or ranked, for the last), (query, window) pairs its model
    scored (``k·(k−1)`` texts pairs for a pairwise stage), wall-clock seconds and the
    fusion it ranked by (its spec, ``None``: the model's score alone)."""

    name: str
    texts: int
    kept: int
    pairs_scored: int
    seconds: float
    fusion: str | None = None


@dataclass(frozen=True)
class CascadeStats:
    """What a call (or all calls) cost, stage by stage; ``skipped``: stages a deadline
    left out."""

    stages: tuple[StageStats, ...]
    seconds: float
    skipped: int = 0
    calls: int = 1

    @property
    def pairs_scored(self) -> int:
        return sum(s.pairs_scored for s in self.stages)

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "seconds": self.seconds,
            "pairs_scored": self.pairs_scored,
            "skipped": self.skipped,
            "stages": [dataclasses.asdict(s) for s in self.stages],
        }


class CascadeRanking(Ranking):
    """A :class:`Ranking` from a :class:`Cascade`. ``top_score``, ``low_confidence``,
    ``score_scale`` and ``unscored`` are the last pointwise stage's (``unscored``: texts
    it left unscored, a deadline or a passthrough failure); ``dropped``: texts ranked out
    by an earlier stage (or below a pairwise stage's ``top_k``), listed after the final
    ranking with ``scored=False``; ``stage_of``/``stage_scores``: for every text any stage
    scored, by input index, the last stage that scored it (0-based) and its score there
    (the score it ranked by: fused when that stage fuses)."""

    dropped: int
    stage_of: dict[int, int]
    stage_scores: dict[int, float]

    def __init__(
        self,
        items: Sequence[RankedText] = (),
        *,
        dropped: int = 0,
        stage_of: Mapping[int, int] | None = None,
        stage_scores: Mapping[int, float] | None = None,
        **facts: Any,
    ) -> None:
        super().__init__(items, **facts)
        self.dropped = dropped
        self.stage_of = dict(stage_of or {})
        self.stage_scores = dict(stage_scores or {})

    def facts(self) -> dict[str, Any]:
        return {**super().facts(), "dropped": self.dropped}


@dataclass
class _Job:
    """One job's state through the stages (input indices throughout)."""

    query: str
    texts: list[str]
    pool: list[int]
    first: list[float] | None = None
    seen: dict[int, tuple[int, RankedText]] = field(default_factory=dict)
    drops: list[list[int]] = field(default_factory=list)
    final: Ranking | None = None
    head: list[RankedText] = field(default_factory=list)


@dataclass(frozen=True)
class _Call:
    """One call's options, checked."""

    top_n: int | None
    min_score: float | None
    confidence_threshold: float | None
    cutoff_scale: CutoffScale
    deadline: Deadline | None
    score_only: bool = False

    def final_options(self) -> dict[str, Any]:
        return {
            "min_score": self.min_score,
            "confidence_threshold": self.confidence_threshold,
            "cutoff_scale": self.cutoff_scale,
        }

    def deadline_ms(self) -> float | None:
        return None if self.deadline is None else max(self.deadline.left() * 1000.0, 1e-3)

    def passed(self) -> bool:
        return self.deadline is not None and self.deadline.passed()


class Cascade:
    """Rerank coarse to fine: each stage a :class:`Reranker`, each passing its best
    ``keep`` texts to the next (see the module docstring for the order and scores of the
    result).

    ``stages``: :class:`Stage` objects, ``(reranker, keep)`` pairs, or a bare ``Reranker``
    for the last stage; every stage but the last needs ``keep`` (non-increasing), and a
    stage's engine must not cut by itself (``top_n`` unset: use ``keep``). ``pairwise``: an
    optional :class:`PairwiseStage` after the last stage. ``top_n``: default cut of
    :meth:`rerank`. ``owns_stages``: :meth:`close` also closes the stages' engines (true
    for a cascade built by :meth:`from_spec`).

    Per call, ``top_n`` cuts the final list; ``min_score``, ``confidence_threshold`` and
    ``cutoff_scale`` apply to the last pointwise stage (with ``min_score``, texts dropped
    earlier are left out too: nothing shows they clear it); ``first_stage_scores``: one
    number per text (one list per job for the ``*_many`` calls), needed when a stage fuses
    (see :class:`Stage`; a missing or invalid list is a ``FirstStageScoreError`` before any
    model runs, scores with no fusing stage a ``ConfigError``); ``deadline_ms`` covers the whole
    call: each stage gets what is left, and a stage that would start after it is skipped
    (its inputs follow in the previous stage's order, ``scored=False``,
    ``deadline_passed=True``).
    """

    def __init__(
        self,
        stages: Sequence[Stage | Reranker | tuple[Reranker, int]],
        *,
        pairwise: PairwiseStage | None = None,
        top_n: int | None = None,
        owns_stages: bool = False,
    ) -> None:
        self._stages = _check_stages(stages)
        self._fusions = [_stage_fusion(s, i) for i, s in enumerate(self._stages)]
        if pairwise is not None:
            if not isinstance(pairwise, PairwiseStage):
                raise ConfigError(
                    "pairwise must have top_k and rerank(query, ranked) (e.g. "
                    f"rerank_core.backends.t5.DuoT5Stage), got {type(pairwise).__name__}"
                )
            int_at_least("pairwise.top_k", pairwise.top_k, 2)
        self._pairwise = pairwise
        self._top_n = positive_int("top_n", top_n, allow_none=True)
        self._owns = bool(owns_stages)
        self._names = [s.name or _model_name(s.reranker, i) for i, s in enumerate(self._stages)]
        if pairwise is not None:
            self._names.append(f"pairwise:{getattr(pairwise, 'model_id', type(pairwise).__name__)}")
        self._lock = threading.Lock()
        self._last: CascadeStats | None = None
        self._totals: CascadeStats | None = None
        self._pairwise_pairs = 0

    # ------------------------------------------------------------------ building

    @classmethod
    def from_spec(
        cls, spec: str | Sequence[Mapping[str, Any]], *, top_n: int | None = None, **common: Any
    ) -> Cascade:
        """A cascade from a spec — ``"minilm:model=DIR2,keep=30;minilm:model=DIR6"``
        (stages split by ``;``, ``name:key=value,...``) or a list of dicts
        (``{"backend": "minilm", "model": DIR, "keep": 30}``) — see :func:`parse_spec`.
        ``common``: options for every stage's ``Reranker`` (``batch_size``, ``window``,
        ``cache``, ``device``, ...), a stage's own options win. The whole spec is checked
        before any model loads; engines built here are closed by :meth:`close`."""
        parsed = parse_spec(spec)
        positive_int("top_n", top_n, allow_none=True)
        built: list[Stage] = []
        pairwise: Any = None
        try:
            for st in parsed:
                options = {**common, **st["options"]}
                if st["backend"] in PAIRWISE_NAMES:
                    from .backends.t5 import DuoT5Stage

                    device = {"device": common["device"]} if "device" in common else {}
                    pairwise = DuoT5Stage(**{**device, **st["options"]})
                    continue
                fusion = options.pop(FUSION_KEY, None)
                engine = Reranker(st["backend"], **options)
                built.append(Stage(engine, st["keep"], fusion=fusion))
            return cls(built, pairwise=pairwise, top_n=top_n, owns_stages=True)
        except BaseException:
            for s in built:
                close_quietly(s.reranker)
            raise

    # ------------------------------------------------------------------ facts

    @property
    def stages(self) -> tuple[Stage, ...]:
        return self._stages

    @property
    def pairwise(self) -> PairwiseStage | None:
        return self._pairwise

    @property
    def top_n(self) -> int | None:
        return self._top_n

    @property
    def fusions(self) -> tuple[Fusion | None, ...]:
        """Each pointwise stage's fusion (``None``: it ranks by its model's score alone)."""
        return tuple(self._fusions)

    @property
    def fuses(self) -> bool:
        """Whether any stage fuses, i.e. calls need ``first_stage_scores``."""
        return any(f is not None for f in self._fusions)

    @property
    def backend(self) -> Backend:
        """The last pointwise stage's backend."""
        return self._stages[-1].reranker.backend

    @property
    def on_error(self) -> OnError:
        """``"passthrough"`` only when every stage passes failures through (then a call
        never raises a backend error), else ``"raise"``."""
        every = all(s.reranker.on_error == "passthrough" for s in self._stages)
        return "passthrough" if every else "raise"

    @property
    def score_scale(self) -> ScoreScale:
        """The scale of the last pointwise stage's scores."""
        return self._stages[-1].reranker.score_scale

    @property
    def pairs_scored(self) -> int:
        """Pairs every stage's model has scored since construction (a pairwise stage
        counts its ``k·(k−1)`` inputs)."""
        return sum(s.reranker.pairs_scored for s in self._stages) + self._pairwise_pairs

    @property
    def last_stats(self) -> CascadeStats | None:
        """The latest call's :class:`CascadeStats` (``None`` before the first call)."""
        return self._last

    @property
    def stats(self) -> CascadeStats | None:
        """Every call's stats summed, stage by stage (``None`` before the first call)."""
        return self._totals

    def describe(self) -> dict[str, Any]:
        """``backend: "Cascade"``, ``model_id`` (the stages' models joined by ``→``), each
        stage's ``keep``, engine ``describe()`` and ``fusion`` (the stage's: its spec or
        ``None``), the pairwise stage, and the stats."""
        stages = []
        for name, s, f in zip(self._names, self._stages, self._fusions, strict=False):
            spec = None if f is None else f.spec()
            stages.append({"name": name, "keep": s.keep, **s.reranker.describe(), "fusion": spec})
        pw = self._pairwise
        return {
            "backend": "Cascade",
            "model_id": " → ".join(self._names),
            "top_n": self._top_n,
            "score_scale": self.score_scale,
            "stages": stages,
            "pairwise": None
            if pw is None
            else {"name": self._names[-1], "top_k": pw.top_k, "type": type(pw).__name__},
            "last_stats": None if self._last is None else self._last.as_dict(),
            "stats": None if self._totals is None else self._totals.as_dict(),
        }

    def reset_stats(self) -> None:
        for s in self._stages:
            s.reranker.reset_stats()
        with self._lock:
            self._last = self._totals = None
            self._pairwise_pairs = 0

    # ------------------------------------------------------------------ calls

    def score(
        self,
        query: str,
        texts: Sequence[str],
        *,
        deadline_ms: float | None = None,
        first_stage_scores: Sequence[float] | None = None,
    ) -> list[float]:
        """One score per text, in input order: the final stage's model score (never fused,
        like ``Reranker.score``), NaN for a text it did not score (dropped earlier, or left
        unscored). Earlier fusing stages need ``first_stage_scores``."""
        jobs = check_jobs([(query, texts)])
        call = self._uncut(deadline_ms)
        first = self._first(jobs, first_stage_scores, many=False, call=call)
        return _in_input_order(self._run(jobs, call, first)[0], len(jobs[0][1]))

    async def ascore(
        self,
        query: str,
        texts: Sequence[str],
        *,
        deadline_ms: float | None = None,
        first_stage_scores: Sequence[float] | None = None,
    ) -> list[float]:
        jobs = check_jobs([(query, texts)])
        call = self._uncut(deadline_ms)
        first = self._first(jobs, first_stage_scores, many=False, call=call)
        ranked = (await self._arun(jobs, call, first))[0]
        return _in_input_order(ranked, len(jobs[0][1]))

    def _uncut(self, deadline_ms: float | None) -> _Call:
        """A score call's options: no cut at all (not even the cascade's ``top_n``), and the
        final stage unfused."""
        call = self._call(None, None, None, None, deadline_ms)
        return dataclasses.replace(call, top_n=None, score_only=True)

    def rerank(
        self,
        query: str,
        texts: Sequence[str],
        *,
        top_n: int | None = None,
        min_score: float | None = None,
        confidence_threshold: float | None = None,
        cutoff_scale: CutoffScale = None,
        deadline_ms: float | None = None,
        first_stage_scores: Sequence[float] | None = None,
    ) -> CascadeRanking:
        """Texts ranked through every stage, best first, cut at ``top_n``
        (``first_stage_scores``: one per text, for the stages that fuse)."""
        call = self._call(top_n, min_score, confidence_threshold, cutoff_scale, deadline_ms)
        jobs = check_jobs([(query, texts)])
        return self._run(jobs, call, self._first(jobs, first_stage_scores, many=False))[0]

    def rerank_many(
        self,
        jobs: Jobs,
        *,
        top_n: int | None = None,
        min_score: float | None = None,
        confidence_threshold: float | None = None,
        cutoff_scale: CutoffScale = None,
        deadline_ms: float | None = None,
        first_stage_scores: Sequence[Sequence[float]] | None = None,
    ) -> list[CascadeRanking]:
        """Several (query, texts) jobs; each stage scores all jobs in one batched pass
        (``first_stage_scores``: one list per job)."""
        call = self._call(top_n, min_score, confidence_threshold, cutoff_scale, deadline_ms)
        checked = check_jobs(jobs)
        return self._run(checked, call, self._first(checked, first_stage_scores, many=True))

    async def arerank(
        self,
        query: str,
        texts: Sequence[str],
        *,
        top_n: int | None = None,
        min_score: float | None = None,
        confidence_threshold: float | None = None,
        cutoff_scale: CutoffScale = None,
        deadline_ms: float | None = None,
        first_stage_scores: Sequence[float] | None = None,
    ) -> CascadeRanking:
        call = self._call(top_n, min_score, confidence_threshold, cutoff_scale, deadline_ms)
        jobs = check_jobs([(query, texts)])
        first = self._first(jobs, first_stage_scores, many=False)
        return (await self._arun(jobs, call, first))[0]

    async def arerank_many(
        self,
        jobs: Jobs,
        *,
        top_n: int | None = None,
        min_score: float | None = None,
        confidence_threshold: float | None = None,
        cutoff_scale: CutoffScale = None,
        deadline_ms: float | None = None,
        first_stage_scores: Sequence[Sequence[float]] | None = None,
    ) -> list[CascadeRanking]:
        call = self._call(top_n, min_score, confidence_threshold, cutoff_scale, deadline_ms)
        checked = check_jobs(jobs)
        first = self._first(checked, first_stage_scores, many=True)
        return await self._arun(checked, call, first)

    def _call(
        self,
        top_n: int | None,
        min_score: float | None,
        confidence_threshold: float | None,
        cutoff_scale: CutoffScale,
        deadline_ms: float | None,
    ) -> _Call:
        positive_int("top_n", top_n, allow_none=True)
        number("min_score", min_score, allow_none=True)
        number("confidence_threshold", confidence_threshold, allow_none=True)
        check_cutoff_scale(cutoff_scale)
        ms = check_deadline_ms(deadline_ms)
        call = _Call(
            top_n if top_n is not None else self._top_n,
            min_score,
            confidence_threshold,
            cutoff_scale,
            None,
        )
        # the final engine checks the cutoffs against its scale now (as adapters do)
        self._stages[-1].reranker.rerank_many([], **call.final_options())
        return dataclasses.replace(call, deadline=Deadline.after(ms))

    def _fusing(self, call: _Call | None) -> dict[int, str]:
        """The stages that fuse in this call and their fusion's spec (a score call's final
        stage does not fuse)."""
        fusions = (self._call_fusion(i, call) for i in range(len(self._stages)))
        return {i: f.spec() for i, f in enumerate(fusions) if f is not None}

    def _call_fusion(self, s: int, call: _Call | None) -> Fusion | None:
        """Stage ``s``'s fusion in this call: its own, except a score call's final stage,
        which returns its model's scores unfused."""
        if call is not None and call.score_only and s == len(self._stages) - 1:
            return None
        return self._fusions[s]

    def _first(
        self, jobs: list[Job], scores: object, *, many: bool, call: _Call | None = None
    ) -> list[list[float]] | None:
        """The call's first-stage scores per job, checked (before any model runs), or
        ``None`` when no stage fuses in this call."""
        if scores is not None and not self.fuses:
            raise ConfigError(
                "first_stage_scores given but no cascade stage fuses: give a stage a fusion "
                "(Stage(..., fusion='rrf') or fusion=rrf in the spec)"
            )
        fusing = self._fusing(call)
        if not fusing or not jobs:  # no jobs (e.g. a cutoff check): nothing to fuse
            return None
        if scores is None:
            names = ", ".join(f"stage {i} ({self._names[i]}, {f})" for i, f in fusing.items())
            raise FirstStageScoreError(
                f"{names} fuses with the first stage: pass first_stage_scores= (one number "
                "per text, higher is better" + ("; one list per job)" if many else ")"),
                index=None,
            )
        return check_per_job(scores_per_job(scores, many=many), [t for _, t in jobs])

    def _stage_call(self, s: int, state: list[_Job], call: _Call) -> dict[str, Any]:
        """Stage ``s``'s ``rerank_many`` arguments: its jobs (each job's pool), the final
        options on the last stage, and its fusion with the pool's first-stage scores."""
        last = s == len(self._stages) - 1
        fusion = self._call_fusion(s, call)
        options: dict[str, Any] = {
            "deadline_ms": call.deadline_ms(),
            **(call.final_options() if last else {}),
            "fusion": "none" if fusion is None else fusion,
        }
        if fusion is not None:
            options["first_stage_scores"] = [
                [j.first[i] for i in j.pool] if j.first is not None else None for j in state
            ]
        return {"jobs": [(j.query, [j.texts[i] for i in j.pool]) for j in state], **options}

    def _run(
        self, jobs: list[Job], call: _Call, first: list[list[float]] | None = None
    ) -> list[CascadeRanking]:
        t0 = time.perf_counter()
        state = _state(jobs, first)
        done: list[StageStats] = []
        for s, stage in enumerate(self._stages):
            if call.passed():
                break
            before, ts = stage.reranker.pairs_scored, time.perf_counter()
            ranked = stage.reranker.rerank_many(**self._stage_call(s, state, call))
            done.append(self._advance(s, state, ranked, before, ts, call))
        if self._pairwise is not None and len(done) == len(self._stages) and not call.passed():
            ts = time.perf_counter()
            heads = [self._pairwise_head(j) for j in state]
            done.append(self._pairwise_stats(state, heads, ts))
        return self._finish(state, call, done, t0)

    async def _arun(
        self, jobs: list[Job], call: _Call, first: list[list[float]] | None = None
    ) -> list[CascadeRanking]:
        t0 = time.perf_counter()
        state = _state(jobs, first)
        done: list[StageStats] = []
        for s, stage in enumerate(self._stages):
            if call.passed():
                break
            before, ts = stage.reranker.pairs_scored, time.perf_counter()
            ranked = await stage.reranker.arerank_many(**self._stage_call(s, state, call))
            done.append(self._advance(s, state, ranked, before, ts, call))
        if self._pairwise is not None and len(done) == len(self._stages) and not call.passed():
            ts = time.perf_counter()
            heads = [await asyncio.to_thread(self._pairwise_head, j) for j in state]
            done.append(self._pairwise_stats(state, heads, ts))
        return self._finish(state, call, done, t0)

    def _advance(
        self,
        s: int,
        state: list[_Job],
        ranked: list[Ranking],
        before: int,
        started: float,
        call: _Call,
    ) -> StageStats:
        """Record stage ``s``'s rankings; keep each job's best ``keep`` for the next."""
        stage = self._stages[s]
        texts = kept = 0
        for j, r in zip(state, ranked, strict=True):
            texts += len(j.pool)
            moved = [dataclasses.replace(x, index=j.pool[x.index]) for x in r]
            for x in moved:
                if x.scored:
                    j.seen[x.index] = (s, x)
            if stage.keep is None:  # the last stage: its ranking is the answer
                j.final = r
                j.head = moved
                j.pool = [x.index for x in moved]
            else:
                order = [x.index for x in moved]
                j.pool, dropped = order[: stage.keep], order[stage.keep :]
                j.drops.append(dropped)
            kept += len(j.pool)
        pairs = stage.reranker.pairs_scored - before
        fusion = self._call_fusion(s, call)
        spec = None if fusion is None else fusion.spec()
        return StageStats(self._names[s], texts, kept, pairs, time.perf_counter() - started, spec)

    def _pairwise_head(self, j: _Job) -> list[RankedText]:
        """The pairwise stage over the last stage's scored top ``top_k``; the rest of the
        last stage's ranking becomes dropped."""
        pw = self._pairwise
        assert pw is not None
        scored = [x for x in j.head if x.scored]
        k = min(pw.top_k, len(scored))
        if k < 2:
            return []
        top = pw.rerank(j.query, scored[:k])[:k]
        ids = {x.index for x in top}
        j.drops.append([x.index for x in j.head if x.index not in ids])
        j.head = top
        return top

    def _pairwise_stats(
        self, state: list[_Job], heads: list[list[RankedText]], started: float
    ) -> StageStats:
        n = sum(len(h) for h in heads)
        pairs = sum(len(h) * (len(h) - 1) for h in heads)
        with self._lock:
            self._pairwise_pairs += pairs
        return StageStats(self._names[-1], n, n, pairs, time.perf_counter() - started)

    def _finish(
        self, state: list[_Job], call: _Call, done: list[StageStats], started: float
    ) -> list[CascadeRanking]:
        out = [self._ranking(j, call) for j in state]
        stats = CascadeStats(
            tuple(done), time.perf_counter() - started, len(self._names) - len(done)
        )
        with self._lock:
            self._last = stats
            self._totals = _add(self._totals, stats)
        return out

    def _ranking(self, j: _Job, call: _Call) -> CascadeRanking:
        final = j.final
        if final is not None:
            head = list(j.head)
            facts = {
                "top_score": final.top_score,
                "confidence_threshold": final.confidence_threshold,
                "low_confidence": final.low_confidence,
                "score_scale": final.score_scale,
                "unscored": final.unscored,
                "deadline_passed": final.deadline_passed,
            }
        else:  # a deadline stopped the cascade before its last stage
            head = [_not_scored(j, i) for i in j.pool]
            threshold = call.confidence_threshold
            facts = {
                "top_score": None,
                "confidence_threshold": threshold,
                "low_confidence": threshold is not None,
                "score_scale": self.score_scale,
                "unscored": len(head),
                "deadline_passed": True,
            }
        tail: list[RankedText] = []
        if call.min_score is None:
            tail = [_not_scored(j, i) for group in reversed(j.drops) for i in group]
        dropped = sum(len(g) for g in j.drops)
        items = head + tail
        if call.top_n is not None:
            items = items[: call.top_n]
        return CascadeRanking(
            items,
            dropped=dropped,
            stage_of={i: s for i, (s, _) in j.seen.items()},
            stage_scores={i: x.score for i, (_, x) in j.seen.items()},
            **facts,
        )

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Close the stages' engines when this cascade built them (:meth:`from_spec` or
        ``owns_stages=True``), and a pairwise stage that has ``close()``; never raises."""
        if not self._owns:
            return
        for s in self._stages:
            close_quietly(s.reranker)
        if self._pairwise is not None:
            close_quietly(self._pairwise)

    def __enter__(self) -> Cascade:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        parts = []
        for n, s, f in zip(self._names, self._stages, self._fusions, strict=False):
            args = ([f"keep={s.keep}"] if s.keep else []) + ([f"fusion={f.spec()}"] if f else [])
            parts.append(f"{n}({', '.join(args)})" if args else n)
        if self._pairwise is not None:
            parts.append(f"{self._names[-1]}(top_k={self._pairwise.top_k})")
        return f"Cascade({' → '.join(parts)})"


# ---------------------------------------------------------------------- helpers


def _check_stages(stages: object) -> tuple[Stage, ...]:
    if isinstance(stages, (str, bytes)) or not isinstance(stages, Sequence) or not stages:
        raise ConfigError("stages must be a non-empty list of Stage, (Reranker, keep) or Reranker")
    out: list[Stage] = []
    for i, item in enumerate(stages):
        if isinstance(item, Stage):
            st = item
        elif isinstance(item, Reranker):
            st = Stage(item)
        elif isinstance(item, tuple) and len(item) == 2:
            st = Stage(item[0], item[1])
        else:
            raise ConfigError(
                f"stages[{i}] must be a Stage, a (Reranker, keep) pair or a Reranker, "
                f"got {type(item).__name__}"
            )
        if not isinstance(st.reranker, Reranker):
            raise ConfigError(
                f"stages[{i}] needs a rerank_core.Reranker, got {type(st.reranker).__name__}"
            )
        last = i == len(stages) - 1
        if last and st.keep is not None:
            raise ConfigError(
                f"stages[{i}] is the last stage: it ranks everything it gets, so it takes no "
                "keep (cut the result with top_n)"
            )
        if not last:
            positive_int(f"stages[{i}].keep", st.keep)
            if out and out[-1].keep is not None and st.keep is not None and st.keep > out[-1].keep:
                raise ConfigError(
                    f"stages[{i}].keep={st.keep} is more than stages[{i - 1}].keep="
                    f"{out[-1].keep}: a stage can only pass on what it was given"
                )
        if st.reranker.top_n is not None:
            raise ConfigError(
                f"stages[{i}]'s Reranker has top_n={st.reranker.top_n}: a stage ranks all its "
                "texts (use keep= for what it passes on, and the Cascade's top_n)"
            )
        if any(st.reranker is o.reranker for o in out):
            raise ConfigError(f"stages[{i}] is the same Reranker as an earlier stage")
        out.append(st)
    return tuple(out)


def _stage_fusion(st: Stage, i: int) -> Fusion | None:
    """A stage's fusion: its own (``"none"``: off), else its engine's default."""
    if st.fusion is None:
        return st.reranker.fusion
    try:
        return parse_fusion(st.fusion)
    except ConfigError as exc:
        raise ConfigError(f"stages[{i}]: {exc}") from None


def _state(jobs: list[Job], first: list[list[float]] | None) -> list[_Job]:
    """Each job's start: every text in the pool, with its first-stage scores if given."""
    return [
        _Job(q, texts, list(range(len(texts))), None if first is None else first[j])
        for j, (q, texts) in enumerate(jobs)
    ]


def _model_name(engine: Reranker, i: int) -> str:
    model = engine.describe().get("model_id") or type(engine.backend).__name__
    return f"{i}:{model}"


def _not_scored(j: _Job, i: int) -> RankedText:
    """Text ``i`` as not scored by the final stage: NaN, its last stage's best window."""
    prev = j.seen.get(i)
    text = j.texts[i]
    if prev is None:
        return RankedText(
            index=i, score=math.nan, text=text, window=(0, len(text)), n_windows=1, scored=False
        )
    x = prev[1]
    return dataclasses.replace(
        x, score=math.nan, scored=False, rerank_score=None, first_stage_score=None
    )


def _in_input_order(ranked: Sequence[RankedText], n: int) -> list[float]:
    scores = [math.nan] * n
    for r in ranked:
        scores[r.index] = r.score
    return scores


def _add(total: CascadeStats | None, call: CascadeStats) -> CascadeStats:
    """``total`` plus one call, stage by stage (stages run in order, so position ``k`` is
    the same stage in both; a call a deadline cut short has fewer)."""
    if total is None:
        return call
    merged = list(total.stages)
    for k, s in enumerate(call.stages):
        if k >= len(merged):
            merged.append(s)
            continue
        t = merged[k]
        merged[k] = StageStats(
            s.name,
            t.texts + s.texts,
            t.kept + s.kept,
            t.pairs_scored + s.pairs_scored,
            t.seconds + s.seconds,
            s.fusion,
        )
    return CascadeStats(
        tuple(merged), total.seconds + call.seconds, total.skipped + call.skipped, total.calls + 1
    )


#: What the adapters and ``crossrank eval`` take as a ready engine.
AnyReranker = Reranker | Cascade
