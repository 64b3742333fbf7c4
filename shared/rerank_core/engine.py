"""The scoring engine: validate → windows → cache lookup → batch → score → aggregate → rank."""

from __future__ import annotations

import asyncio
import logging
import math
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .backends import load_backend
from .batching import plan_batches
from .cache import (
    CacheStats,
    GuardedCache,
    MemoryCache,
    ScoreCache,
    SQLiteCache,
    TieredCache,
    cache_key,
)
from .config import WindowConfig
from .errors import (
    BackendError,
    ConfigError,
    CrossrankError,
    EmptyQueryError,
    InputError,
    InvalidTextError,
)
from .scheduler import BatcherStats, MicroBatcher, wants_micro_batching
from .types import Backend, Pair, RankedText
from .windows import Window, aggregate, make_windows, window_budget

__all__ = ["CacheLike", "OnError", "Reranker"]

logger = logging.getLogger("crossrank")

OnError = Literal["raise", "passthrough"]
Normalize = Literal["sigmoid"] | None
CacheLike = ScoreCache | str | Path | None

_SURROGATES = re.compile("[\ud800-\udfff]")
_DEFAULT_CACHE = "memory"


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _check_positive(name: str, value: object, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive int, got {value!r}")


def _build_cache(cache: CacheLike) -> ScoreCache | None:
    if cache is None:
        return None
    if isinstance(cache, str) and cache == _DEFAULT_CACHE:
        return GuardedCache(MemoryCache())
    if isinstance(cache, (str, Path)):
        return TieredCache(MemoryCache(), SQLiteCache(cache))
    if isinstance(cache, (GuardedCache, TieredCache)):
        return cache
    if callable(getattr(cache, "get_many", None)) and callable(getattr(cache, "set_many", None)):
        return GuardedCache(cache)
    raise ConfigError(
        "cache must be None, 'memory', a file path (SQLite) or an object with "
        f"get_many/set_many; got {type(cache).__name__}"
    )


@dataclass(slots=True)
class _TextPlan:
    windows: list[Window]
    truncated: bool
    uids: list[int]


@dataclass(slots=True)
class _Plan:
    texts: list[list[str]]  # the caller's texts, per job
    plans: list[list[_TextPlan]]  # per job, per text
    pairs: list[Pair] = field(default_factory=list)  # unique (query, window) pairs
    lengths: list[int] = field(default_factory=list)  # tokens of each unique pair


class Reranker:
    """Reranks texts for a query with a cross-encoder (or any :class:`Backend`).

    ``backend``: a preset name (``"minilm"``, ``"bge"``, ``"cohere"``) or a backend
    object. ``model``/``device`` and any other keyword go to the backend when it is
    built from a name. ``batch_size``: pairs per model call (default: the backend's
    ``preferred_batch_size`` if it has one, else 32; an HTTP API takes up to 1,000
    documents a request); ``max_batch_tokens``: padded tokens per model call (default
    ``batch_size * max_length``).
    ``window``: a :class:`WindowConfig`. ``cache``: ``"memory"`` (default, a bounded
    LRU), a file path (SQLite behind the LRU), ``None`` (off) or any cache object.
    ``normalize="sigmoid"`` maps logits to 0–1. ``on_error="passthrough"`` returns
    the input order, marked unscored, when the backend fails. ``top_n``: default
    cut for :meth:`rerank`.
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
        cache: CacheLike = _DEFAULT_CACHE,
        normalize: Normalize = None,
        on_error: OnError = "raise",
        top_n: int | None = None,
        **backend_options: Any,
    ) -> None:
        _check_positive("batch_size", batch_size, allow_none=True)
        _check_positive("max_batch_tokens", max_batch_tokens, allow_none=True)
        _check_positive("top_n", top_n, allow_none=True)
        if normalize not in (None, "sigmoid"):
            raise ConfigError(f"normalize must be None or 'sigmoid', got {normalize!r}")
        if on_error not in ("raise", "passthrough"):
            raise ConfigError(f"on_error must be 'raise' or 'passthrough', got {on_error!r}")
        window = window if window is not None else WindowConfig()
        if not isinstance(window, WindowConfig):
            raise ConfigError(f"window must be a WindowConfig, got {type(window).__name__}")
        cache_obj = _build_cache(cache)
        if isinstance(backend, str):
            if model is not None:
                backend_options["model"] = model
            if device is not None:
                backend_options["device"] = device
            self.backend: Backend = load_backend(backend, **backend_options)
        else:
            if model is not None or device is not None or backend_options:
                raise ConfigError("model/device/backend options only apply when backend is a name")
            for attr in ("fingerprint", "max_length", "score_scale", "tokenizer", "score_pairs"):
                if not hasattr(backend, attr):
                    raise ConfigError(f"backend object has no {attr!r}; see rerank_core.Backend")
            self.backend = backend
        max_length = int(self.backend.max_length)
        special = int(self.backend.tokenizer.pair_special_tokens)
        self.max_query_tokens = window.max_query_tokens or max(1, max_length // 2)
        smallest_budget = window_budget(max_length, self.max_query_tokens, special)
        if smallest_budget < 1:
            raise ConfigError(
                f"max_query_tokens={self.max_query_tokens} leaves no room for text in "
                f"max_length={max_length}"
            )
        if window.overlap is None:
            self.overlap = min(64, smallest_budget // 4)
        elif window.overlap >= smallest_budget:
            raise ConfigError(
                f"window overlap ({window.overlap} tokens) must be smaller than the window budget "
                f"({smallest_budget} tokens for a query of {self.max_query_tokens} tokens at "
                f"max_length={max_length})"
            )
        else:
            self.overlap = window.overlap
        if batch_size is None:
            batch_size = int(getattr(self.backend, "preferred_batch_size", 32))
            _check_positive("backend preferred_batch_size", batch_size)
        self.batch_size: int = batch_size
        self.max_batch_tokens = max_batch_tokens or batch_size * max_length
        self.window = window
        self.cache = cache_obj
        self.normalize: Normalize = normalize
        self.on_error: OnError = on_error
        self.top_n = top_n
        self._stats_lock = threading.Lock()
        self._hits = 0
        self._misses = 0
        self._pairs_scored = 0
        self._warned_long_query = False
        # local models: concurrent callers (threads and asyncio tasks) share model batches
        self._batcher: MicroBatcher | None = None
        if wants_micro_batching(self.backend):
            self._batcher = MicroBatcher(
                self._run_batch, batch_size=self.batch_size, max_batch_tokens=self.max_batch_tokens
            )

    # ------------------------------------------------------------------ public API

    @property
    def fingerprint(self) -> str:
        return self.backend.fingerprint

    @property
    def cache_stats(self) -> CacheStats:
        errors = getattr(self.cache, "errors", 0)
        if isinstance(self.cache, TieredCache):
            errors = sum(t.errors for t in self.cache.tiers)
        return CacheStats(hits=self._hits, misses=self._misses, errors=int(errors))

    @property
    def pairs_scored(self) -> int:
        """(query, window) pairs the backend has scored since construction."""
        return self._pairs_scored

    @property
    def batcher_stats(self) -> BatcherStats | None:
        """What the micro-batcher shared among concurrent callers (requests, generations,
        model batches, pairs, cross-caller duplicates saved); ``None`` for backends that
        do not use it (HTTP APIs)."""
        return self._batcher.stats if self._batcher is not None else None

    def reset_stats(self) -> None:
        with self._stats_lock:
            self._hits = self._misses = self._pairs_scored = 0

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        """One score per text, in input order (NaN for unscored texts under passthrough)."""
        ranked = self.rerank_many([(query, texts)], top_n=None, min_score=None, _sort=False)[0]
        return [r.score for r in ranked]

    def rerank(
        self,
        query: str,
        texts: Sequence[str],
        *,
        top_n: int | None = None,
        min_score: float | None = None,
    ) -> list[RankedText]:
        """Texts ranked best first, cut by ``min_score`` and then ``top_n``."""
        return self.rerank_many([(query, texts)], top_n=top_n, min_score=min_score)[0]

    def rerank_many(
        self,
        jobs: Iterable[tuple[str, Sequence[str]]],
        *,
        top_n: int | None = None,
        min_score: float | None = None,
        _sort: bool = True,
    ) -> list[list[RankedText]]:
        """Rerank several (query, texts) jobs in one batched pass over the model."""
        job_list = self._check_jobs(jobs, top_n, min_score)
        plan = self._prepare(job_list)
        try:
            scores = self._score_plan(plan)
        except CrossrankError as exc:
            return self._on_backend_error(plan, exc, top_n, _sort)
        return self._finish(plan, scores, top_n, min_score, _sort)

    async def ascore(self, query: str, texts: Sequence[str]) -> list[float]:
        ranked = (await self._arun([(query, texts)], None, None, _sort=False))[0]
        return [r.score for r in ranked]

    async def arerank(
        self,
        query: str,
        texts: Sequence[str],
        *,
        top_n: int | None = None,
        min_score: float | None = None,
    ) -> list[RankedText]:
        return (await self._arun([(query, texts)], top_n, min_score))[0]

    async def arerank_many(
        self,
        jobs: Iterable[tuple[str, Sequence[str]]],
        *,
        top_n: int | None = None,
        min_score: float | None = None,
    ) -> list[list[RankedText]]:
        return await self._arun(jobs, top_n, min_score)

    def close(self) -> None:
        """Release the cache's resources (SQLite connections, Redis pools) and the backend's
        (HTTP clients). Never raises."""
        if self._batcher is not None:
            self._batcher.close()
        tiers = getattr(self.cache, "tiers", (self.cache,))
        owners = [getattr(t, "inner", t) for t in tiers if t is not None] + [self.backend]
        for owner in owners:
            closer = getattr(owner, "close", None)
            if callable(closer):
                try:
                    closer()
                except Exception:  # closing must never raise
                    logger.debug("closing %r failed", owner, exc_info=True)

    def __enter__(self) -> Reranker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Reranker(backend={self.backend!r}, batch_size={self.batch_size}, "
            f"window={self.window!r}, normalize={self.normalize!r}, on_error={self.on_error!r})"
        )

    # ------------------------------------------------------------------ pipeline

    async def _arun(
        self,
        jobs: Iterable[tuple[str, Sequence[str]]],
        top_n: int | None,
        min_score: float | None,
        *,
        _sort: bool = True,
    ) -> list[list[RankedText]]:
        job_list = self._check_jobs(jobs, top_n, min_score)
        plan = await asyncio.to_thread(self._prepare, job_list)
        try:
            if self._batcher is not None or callable(getattr(self.backend, "ascore_pairs", None)):
                scores = await self._ascore_plan(plan)
            else:
                scores = await asyncio.to_thread(self._score_plan, plan)
        except CrossrankError as exc:
            return self._on_backend_error(plan, exc, top_n, _sort)
        return self._finish(plan, scores, top_n, min_score, _sort)

    def _check_jobs(
        self,
        jobs: Iterable[tuple[str, Sequence[str]]],
        top_n: int | None,
        min_score: float | None,
    ) -> list[tuple[str, list[str]]]:
        if top_n is not None:
            _check_positive("top_n", top_n)
        if min_score is not None and (
            isinstance(min_score, bool)
            or not isinstance(min_score, (int, float))
            or math.isnan(min_score)
        ):
            raise ConfigError(f"min_score must be a number, got {min_score!r}")
        out: list[tuple[str, list[str]]] = []
        for qi, job in enumerate(jobs):
            try:
                query, texts = job
            except (TypeError, ValueError):
                raise InputError(f"job {qi} must be a (query, texts) pair") from None
            where = "" if qi == 0 else f" (job {qi})"
            if not isinstance(query, str) or not query.strip():
                raise EmptyQueryError(f"query{where} must be a non-blank string, got {query!r:.80}")
            if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
                raise InputError(
                    f"texts{where} must be a list of strings, got {type(texts).__name__}"
                )
            items = list(texts)  # a copy: the caller's list is never touched
            for i, t in enumerate(items):
                if not isinstance(t, str):
                    raise InvalidTextError(
                        f"texts[{i}]{where} must be a string, got {type(t).__name__}",
                        index=i,
                        query_index=qi,
                    )
            out.append((query, items))
        return out

    def _model_query(self, query: str) -> tuple[str, int]:
        """The query as the model sees it (cut to max_query_tokens) and its token count."""
        clean = _SURROGATES.sub("\ufffd", query)
        spans = self.backend.tokenizer.token_spans([clean])[0]
        if len(spans) <= self.max_query_tokens:
            return clean, len(spans)
        if not self._warned_long_query:
            self._warned_long_query = True
            logger.warning(
                "query of %d tokens cut to max_query_tokens=%d so that text fits beside it",
                len(spans),
                self.max_query_tokens,
            )
        return clean[: spans[self.max_query_tokens - 1][1]], self.max_query_tokens

    def _prepare(self, jobs: list[tuple[str, list[str]]]) -> _Plan:
        tok = self.backend.tokenizer
        special = int(tok.pair_special_tokens)
        max_length = int(self.backend.max_length)
        cfg = self.window
        plan = _Plan(texts=[t for _, t in jobs], plans=[])
        uid_of: dict[Pair, int] = {}
        clean_texts = [[_SURROGATES.sub("\ufffd", t) for t in texts] for _, texts in jobs]
        flat = [t for texts in clean_texts for t in texts]
        all_spans = tok.token_spans(flat) if flat else []
        pos = 0
        for (query, _), texts in zip(jobs, clean_texts, strict=True):
            mq, qn = self._model_query(query)
            budget = window_budget(max_length, qn, special)
            text_plans: list[_TextPlan] = []
            for text in texts:
                spans = all_spans[pos]
                pos += 1
                windows, truncated = make_windows(
                    spans,
                    len(text),
                    budget=budget,
                    overlap=self.overlap,
                    max_windows=cfg.max_windows,
                )
                uids = []
                for w in windows:
                    pair = (mq, text[w.start : w.end])
                    uid = uid_of.get(pair)
                    if uid is None:
                        uid = uid_of[pair] = len(plan.pairs)
                        plan.pairs.append(pair)
                        plan.lengths.append(qn + w.n_tokens + special)
                    uids.append(uid)
                text_plans.append(_TextPlan(windows, truncated, uids))
            plan.plans.append(text_plans)
        return plan

    def _keys(self, plan: _Plan) -> list[str]:
        fp = self.backend.fingerprint
        return [cache_key(fp, q, t) for q, t in plan.pairs]

    def _lookup(self, plan: _Plan) -> tuple[list[float | None], list[str]]:
        if self.cache is None or not plan.pairs:
            return [None] * len(plan.pairs), []
        keys = self._keys(plan)
        return self.cache.get_many(keys), keys

    def _count(self, found: Sequence[float | None], scored: int) -> None:
        hits = sum(v is not None for v in found) if self.cache is not None else 0
        with self._stats_lock:
            self._hits += hits
            self._misses += (len(found) - hits) if self.cache is not None else 0
            self._pairs_scored += scored

    def _store(self, keys: list[str], missing: list[int], fresh: list[float]) -> None:
        if self.cache is not None and missing:
            self.cache.set_many({keys[i]: s for i, s in zip(missing, fresh, strict=True)})

    def _score_plan(self, plan: _Plan) -> list[float]:
        found, keys = self._lookup(plan)
        missing = [i for i, v in enumerate(found) if v is None]
        fresh = self._score_pairs(
            [plan.pairs[i] for i in missing], [plan.lengths[i] for i in missing]
        )
        self._count(found, len(missing))
        self._store(keys, missing, fresh)
        return _merge(found, missing, fresh)

    async def _ascore_plan(self, plan: _Plan) -> list[float]:
        """Like :meth:`_score_plan` without blocking the loop: cache I/O in a worker thread,
        scoring awaited (the micro-batcher, or an async backend's ``ascore_pairs``)."""
        if self.cache is not None and plan.pairs:
            found, keys = await asyncio.to_thread(self._lookup, plan)
        else:
            found, keys = [None] * len(plan.pairs), []
        missing = [i for i, v in enumerate(found) if v is None]
        pairs = [plan.pairs[i] for i in missing]
        lengths = [plan.lengths[i] for i in missing]
        if self._batcher is None or callable(getattr(self.backend, "ascore_pairs", None)):
            fresh = await self._ascore_pairs(pairs, lengths)
        else:
            fresh = await self._batcher.ascore(pairs, lengths)
        self._count(found, len(missing))
        if missing:
            await asyncio.to_thread(self._store, keys, missing, fresh)
        return _merge(found, missing, fresh)

    async def _ascore_pairs(self, pairs: list[Pair], lengths: list[int]) -> list[float]:
        """Score pairs through an async backend in length-sorted batches; input order."""
        fresh: list[float] = [math.nan] * len(pairs)
        ascore = self.backend.ascore_pairs  # type: ignore[attr-defined]
        for batch in plan_batches(
            lengths, batch_size=self.batch_size, max_tokens=self.max_batch_tokens
        ):
            try:
                got = await ascore([pairs[i] for i in batch])
            except CrossrankError:
                raise
            except Exception as exc:
                raise BackendError(f"backend failed: {type(exc).__name__}: {exc}") from exc
            for i, s in zip(batch, _checked(got, len(batch)), strict=True):
                fresh[i] = s
        return fresh

    def _score_pairs(self, pairs: list[Pair], lengths: list[int]) -> list[float]:
        """Score pairs in length-sorted batches; results in input order."""
        if self._batcher is not None:
            return self._batcher.score(pairs, lengths)
        out: list[float] = [math.nan] * len(pairs)
        for batch in plan_batches(
            lengths, batch_size=self.batch_size, max_tokens=self.max_batch_tokens
        ):
            for i, s in zip(batch, self._run_batch([pairs[i] for i in batch]), strict=True):
                out[i] = s
        return out

    def _run_batch(self, pairs: list[Pair]) -> list[float]:
        """One model call: the backend's scores, checked; any failure is a BackendError."""
        try:
            got = self.backend.score_pairs(pairs)
        except CrossrankError:
            raise
        except Exception as exc:
            raise BackendError(f"backend failed: {type(exc).__name__}: {exc}") from exc
        return _checked(got, len(pairs))

    def _finish(
        self,
        plan: _Plan,
        scores: list[float],
        top_n: int | None,
        min_score: float | None,
        sort: bool,
    ) -> list[list[RankedText]]:
        cfg = self.window
        sigmoid = self.normalize == "sigmoid" and self.backend.score_scale == "logit"
        top_n = top_n if top_n is not None else (self.top_n if sort else None)
        results: list[list[RankedText]] = []
        for texts, text_plans in zip(plan.texts, plan.plans, strict=True):
            ranked: list[RankedText] = []
            for i, (text, tp) in enumerate(zip(texts, text_plans, strict=True)):
                window_scores = [scores[u] for u in tp.uids]
                if sigmoid:
                    window_scores = [_sigmoid(s) for s in window_scores]
                value, best = aggregate(window_scores, cfg.aggregate, cfg.topk)
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
            if sort:
                ranked.sort(key=lambda r: (-r.score, r.index))
                if min_score is not None:
                    ranked = [r for r in ranked if r.score >= min_score]
                if top_n is not None:
                    ranked = ranked[:top_n]
            results.append(ranked)
        return results

    def _on_backend_error(
        self, plan: _Plan, exc: CrossrankError, top_n: int | None, sort: bool
    ) -> list[list[RankedText]]:
        if self.on_error == "raise" or not isinstance(exc, BackendError):
            raise exc
        logger.warning("backend failed, returning texts unscored in input order: %s", exc)
        top_n = top_n if top_n is not None else (self.top_n if sort else None)
        results: list[list[RankedText]] = []
        for texts, text_plans in zip(plan.texts, plan.plans, strict=True):
            items = [
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
            results.append(items[:top_n] if top_n is not None else items)
        return results


def _checked(got: Sequence[float], expected: int) -> list[float]:
    try:
        out = [float(s) for s in got]
    except (TypeError, ValueError) as exc:
        raise BackendError(f"backend returned something other than numbers: {exc}") from exc
    if len(out) != expected:
        raise BackendError(f"backend returned {len(out)} scores for {expected} pairs")
    if not all(math.isfinite(s) for s in out):
        raise BackendError("backend returned a non-finite score")
    return out


def _merge(found: list[float | None], missing: list[int], fresh: list[float]) -> list[float]:
    out = [0.0 if v is None else v for v in found]
    for i, s in zip(missing, fresh, strict=True):
        out[i] = s
    return out
