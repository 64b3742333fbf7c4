"""The engine: a thin facade over planning → cached scoring → ranking.

:class:`Reranker` checks its options, builds (or adopts) the backend, freezes its settings
(:class:`~rerank_core.config.EngineConfig`) and wires pieces chosen once: a
:class:`~rerank_core.planning.Planner` (jobs → windows → unique pairs), one
:class:`~rerank_core.scoring.CachedScoring` step around one scorer (direct, micro-batched
or async backend; the same step serves sync and async callers) and :mod:`~rerank_core.ranking`.
The production controls live in their own modules: :mod:`~rerank_core.confidence`,
:mod:`~rerank_core.deadline`, :mod:`~rerank_core.memory`, :mod:`~rerank_core.scales` and
:mod:`~rerank_core.evidence`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from .backends import load_backend
from .cache import CacheLike, CacheStats, GuardedCache, ManagedCache, TieredCache, close_quietly
from .config import EngineConfig, EngineOptions, Normalize, OnError, WindowConfig
from .controls import CallControls
from .errors import BackendError, ConfigError
from .fusion import FirstStage, Fusion, FusionLike, parse_fusion
from .planning import Job, Plan, Planner, check_jobs
from .ranking import Cut
from .scales import CutoffScale, results_scale
from .scheduler import BatcherStats
from .scoring import CachedScoring, Counters, choose_scorer
from .types import Backend, Ranking, ScoreScale, SupportsDescribe, as_backend, info_of

__all__ = ["CacheLike", "OnError", "Reranker"]

logger = logging.getLogger("crossrank")

Jobs = Iterable[tuple[str, Sequence[str]]]


class Reranker:
    """Reranks texts for a query with a cross-encoder (or any :class:`Backend`).

    ``backend``: a preset name (``"minilm"``, ``"bge"``, ``"cohere"``) or a backend
    object. ``model``/``device`` and any other keyword go to the backend when it is
    built from a name. ``batch_size``: pairs per model call (default: the backend's
    declared ``info.preferred_batch_size``, else 32; an HTTP API takes up to 1,000
    documents a request); ``max_batch_tokens``: padded tokens per model call (default
    ``batch_size * max_length``). ``window``: a :class:`WindowConfig`. ``cache``:
    ``"memory"`` (default, a bounded LRU), a file path (SQLite behind the LRU), ``None``
    (off) or any cache object. ``normalize="sigmoid"`` maps logits to 0–1.
    ``on_error="passthrough"`` returns the input order, marked unscored, when the
    backend fails. ``top_n``: default cut for :meth:`rerank`.

    Production controls (defaults here, each overridable per call):
    ``confidence_threshold`` marks a call whose best score is below it as low-confidence
    (``Ranking.low_confidence``; the best score is always in ``Ranking.top_score`` and the
    ``crossrank`` logger at INFO). ``cutoff_scale`` (``"logit"``/``"probability"``, default
    ``None``: the results' scale) says which scale ``min_score`` and the threshold are
    written on; they are converted exactly (see :attr:`score_scale`). ``deadline_ms``: no
    model batch starts after it; unscored texts follow the scored ones in input order,
    ``scored=False``. Out-of-memory batches are retried in halves (see
    :mod:`~rerank_core.memory`).

    ``fusion`` (default for every ``rerank`` call, overridable per call): combine the
    reranker's score with the first stage's — ``"rrf"`` (reciprocal-rank fusion, k=60) or
    ``("linear", w)`` (min–max normalized interpolation, ``w`` the first stage's weight);
    each call then passes ``first_stage_scores=``. See :mod:`~rerank_core.fusion`.

    Settings are frozen at construction (:attr:`config`). :meth:`close` releases only
    what the engine created (a backend built from a name, a cache built from
    ``"memory"`` or a path); a backend or cache object passed in stays open.
    """

    def __init__(
        self,
        backend: str | Backend = "minilm",
        *,
        model: Any = None,
        device: str | None = None,
        batch_size: int | None = None,
        max_batch_tokens: int | None = None,
        window: WindowConfig | None = None,
        cache: CacheLike = "memory",
        normalize: Normalize = None,
        on_error: OnError = "raise",
        top_n: int | None = None,
        confidence_threshold: float | None = None,
        cutoff_scale: CutoffScale = None,
        deadline_ms: float | None = None,
        fusion: FusionLike = None,
        **backend_options: Any,
    ) -> None:
        self._fusion = parse_fusion(fusion)
        # every option is checked before a model is loaded
        options = EngineOptions(
            batch_size=batch_size,
            max_batch_tokens=max_batch_tokens,
            window=window,
            normalize=normalize,
            on_error=on_error,
            top_n=top_n,
            confidence_threshold=confidence_threshold,
            cutoff_scale=cutoff_scale,
            deadline_ms=deadline_ms,
        )
        self._cache = ManagedCache.build(cache)
        self._backend, self._owns_backend = _adopt(backend, model, device, backend_options)
        b = self._backend
        try:
            self._config = cfg = options.resolve(
                max_length=int(b.max_length),
                special_tokens=int(b.tokenizer.pair_special_tokens),
                preferred_batch_size=info_of(b).preferred_batch_size,
            )
        except BaseException:
            if self._owns_backend:
                close_quietly(self._backend)
            raise
        self._planner = Planner.for_config(b.tokenizer, int(b.max_length), cfg)
        self._counters = Counters()
        scorer = choose_scorer(b, batch_size=cfg.batch_size, max_batch_tokens=cfg.max_batch_tokens)
        self._scoring = CachedScoring(scorer, self._cache, lambda: b.fingerprint, self._counters)
        self._scale = results_scale(b.score_scale, cfg.normalize)
        self._controls = CallControls(
            cfg,
            scale=self._scale,
            apply_sigmoid=cfg.normalize == "sigmoid" and b.score_scale == "logit",
            backend_name=type(b).__name__,
        )
        self._warned_long_query = False

    @property
    def backend(self) -> Backend:
        return self._backend

    @property
    def config(self) -> EngineConfig:
        """The engine's settings, frozen at construction."""
        return self._config

    @property
    def cache(self) -> GuardedCache | TieredCache | None:
        return self._cache.cache if self._cache is not None else None

    @property
    def batch_size(self) -> int:
        return self._config.batch_size

    @property
    def window(self) -> WindowConfig:
        return self._config.window

    @property
    def normalize(self) -> Normalize:
        return self._config.normalize

    @property
    def on_error(self) -> OnError:
        return self._config.on_error

    @property
    def top_n(self) -> int | None:
        return self._config.top_n

    @property
    def fusion(self) -> Fusion | None:
        """The default score fusion of ``rerank`` calls (``None``: the reranker's score alone)."""
        return self._fusion

    @property
    def fingerprint(self) -> str:
        return self._backend.fingerprint

    @property
    def score_scale(self) -> ScoreScale:
        """The scale of the scores this engine returns: ``"logit"`` (raw, unbounded: the
        local cross-encoders) or ``"probability"`` (0–1: Cohere, or ``normalize="sigmoid"``)."""
        return self._scale

    def describe(self) -> dict[str, Any]:
        """The backend's ``describe()`` (backend, model_id, device, runtime, precision, ...)
        and, under ``"engine"``, this engine's settings, scorer and cache."""
        b = self._backend
        facts = dict(b.describe()) if isinstance(b, SupportsDescribe) else {}
        facts.setdefault("backend", type(b).__name__)
        facts.setdefault("model_id", info_of(b).model_id)
        cache = self._cache
        facts["engine"] = {
            "scorer": self._scoring.scorer.kind,
            **dataclasses.asdict(self._config),
            "cache": repr(cache.cache) if cache is not None else None,
            "owns_cache": cache is not None and cache.owned,
            "owns_backend": self._owns_backend,
            "score_scale": self._scale,
            "batch_tokens_now": self._scoring.scorer.batch_tokens,
            "fusion": self._fusion.spec() if self._fusion is not None else None,
        }
        return facts

    @property
    def cache_stats(self) -> CacheStats:
        errors = self._cache.stats.errors if self._cache is not None else 0
        return CacheStats(hits=self._counters.hits, misses=self._counters.misses, errors=errors)

    @property
    def pairs_scored(self) -> int:
        """(query, window) pairs the backend has scored since construction."""
        return self._counters.pairs_scored

    @property
    def batcher_stats(self) -> BatcherStats | None:
        """What the micro-batcher shared among concurrent callers (requests, generations,
        model batches, pairs, cross-caller duplicates saved); ``None`` for backends that
        do not use it (HTTP APIs)."""
        return self._scoring.scorer.batcher_stats

    def reset_stats(self) -> None:
        self._counters.reset()

    def score(
        self, query: str, texts: Sequence[str], *, deadline_ms: float | None = None
    ) -> list[float]:
        """One score per text, in input order (NaN for unscored texts: passthrough, or
        the deadline passed first)."""
        return [r.score for r in self._run([(query, texts)], None, deadline_ms)[0]]

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
        fusion: FusionLike = None,
        first_stage_scores: Sequence[float] | None = None,
    ) -> Ranking:
        """Texts ranked best first, cut by ``min_score`` and then ``top_n``; a
        :class:`~rerank_core.types.Ranking` (a list) that also carries the best score and
        the ``low_confidence`` flag. Options left ``None`` take the engine's defaults.
        ``fusion``/``first_stage_scores``: rank by the reranker's score fused with the
        first stage's (one score per text, higher is better; ``fusion="none"`` turns the
        engine's default off)."""
        cut = self._controls.cut(top_n, min_score, confidence_threshold, cutoff_scale)
        first = FirstStage.of(self._fusion, fusion, first_stage_scores, many=False)
        return self._run([(query, texts)], cut, deadline_ms, first)[0]

    def rerank_many(
        self,
        jobs: Jobs,
        *,
        top_n: int | None = None,
        min_score: float | None = None,
        confidence_threshold: float | None = None,
        cutoff_scale: CutoffScale = None,
        deadline_ms: float | None = None,
        fusion: FusionLike = None,
        first_stage_scores: Sequence[Sequence[float]] | None = None,
    ) -> list[Ranking]:
        """Rerank several (query, texts) jobs in one batched pass over the model
        (``first_stage_scores``: one list per job)."""
        cut = self._controls.cut(top_n, min_score, confidence_threshold, cutoff_scale)
        first = FirstStage.of(self._fusion, fusion, first_stage_scores, many=True)
        return self._run(jobs, cut, deadline_ms, first)

    async def ascore(
        self, query: str, texts: Sequence[str], *, deadline_ms: float | None = None
    ) -> list[float]:
        return [r.score for r in (await self._arun([(query, texts)], None, deadline_ms))[0]]

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
        fusion: FusionLike = None,
        first_stage_scores: Sequence[float] | None = None,
    ) -> Ranking:
        cut = self._controls.cut(top_n, min_score, confidence_threshold, cutoff_scale)
        first = FirstStage.of(self._fusion, fusion, first_stage_scores, many=False)
        return (await self._arun([(query, texts)], cut, deadline_ms, first))[0]

    async def arerank_many(
        self,
        jobs: Jobs,
        *,
        top_n: int | None = None,
        min_score: float | None = None,
        confidence_threshold: float | None = None,
        cutoff_scale: CutoffScale = None,
        deadline_ms: float | None = None,
        fusion: FusionLike = None,
        first_stage_scores: Sequence[Sequence[float]] | None = None,
    ) -> list[Ranking]:
        cut = self._controls.cut(top_n, min_score, confidence_threshold, cutoff_scale)
        first = FirstStage.of(self._fusion, fusion, first_stage_scores, many=True)
        return await self._arun(jobs, cut, deadline_ms, first)

    def _plan(self, jobs: list[Job]) -> Plan:
        plan = self._planner.plan(jobs)
        if plan.cut_queries and not self._warned_long_query:
            self._warned_long_query = True
            logger.warning(
                "query of %d tokens cut to max_query_tokens=%d so that text fits beside it",
                plan.cut_queries[0],
                self._config.max_query_tokens,
            )
        return plan

    def _run(
        self,
        jobs: Jobs,
        cut: Cut | None,
        deadline_ms: float | None,
        first: FirstStage | None = None,
    ) -> list[Ranking]:
        deadline = self._controls.deadline(deadline_ms)
        plan = self._plan(check_jobs(jobs))
        first_scores = first.check(plan) if first is not None else None  # before scoring
        scores: list[float] | None = None
        try:
            scores = self._scoring.score(plan.pairs, plan.lengths, deadline)
        except BackendError as exc:
            self._passthrough(exc)
        return self._finish(plan, scores, cut, first, first_scores)

    async def _arun(
        self,
        jobs: Jobs,
        cut: Cut | None,
        deadline_ms: float | None,
        first: FirstStage | None = None,
    ) -> list[Ranking]:
        deadline = self._controls.deadline(deadline_ms)
        plan = await asyncio.to_thread(self._plan, check_jobs(jobs))
        first_scores = first.check(plan) if first is not None else None
        scores: list[float] | None = None
        try:
            scores = await self._scoring.ascore(plan.pairs, plan.lengths, deadline)
        except BackendError as exc:
            self._passthrough(exc)
        return self._finish(plan, scores, cut, first, first_scores)

    def _finish(
        self,
        plan: Plan,
        scores: list[float] | None,
        cut: Cut | None,
        first: FirstStage | None,
        first_scores: list[list[float]] | None,
    ) -> list[Ranking]:
        if first is None or first_scores is None or cut is None:
            return self._controls.finish(plan, scores, cut)
        return first.finish(self._controls.finish(plan, scores, None), first_scores, cut)

    def _passthrough(self, exc: BackendError) -> None:
        """Re-raise, or under ``on_error="passthrough"`` log it (the texts come back unscored).
        Only a BackendError gets here: Ctrl-C and other errors always propagate."""
        if self._config.on_error == "raise":
            raise exc
        logger.warning("backend failed, returning texts unscored in input order: %s", exc)

    def close(self) -> None:
        """Stop the micro-batcher and release what this engine created (its cache, a backend
        built from a name); a cache or backend passed in stays open. Never raises."""
        owned = (self._backend,) if self._owns_backend else ()
        for part in (self._scoring.scorer, self._cache, *owned):
            close_quietly(part)  # the cache closes itself only when the engine built it

    def __enter__(self) -> Reranker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        c = self._config
        return (
            f"Reranker(backend={self._backend!r}, batch_size={c.batch_size}, "
            f"window={c.window!r}, normalize={c.normalize!r}, on_error={c.on_error!r})"
        )


def _adopt(
    backend: str | Backend, model: Any, device: str | None, options: dict[str, Any]
) -> tuple[Backend, bool]:
    """The backend and whether the engine owns it (built from a name) or not (passed in)."""
    if isinstance(backend, str):
        given = {k: v for k, v in (("model", model), ("device", device)) if v is not None}
        return load_backend(backend, **options, **given), True
    if model is not None or device is not None or options:
        raise ConfigError("model/device/backend options only apply when backend is a name")
    return as_backend(backend), False
