"""Scoring: one scorer, chosen once per engine, behind one cached-scoring step.

A :class:`Scorer` turns (query, window) pairs into scores in length-sorted batches:

* :class:`DirectScorer` calls ``score_pairs`` batch by batch (async: in a worker thread);
* :class:`MicroBatchedScorer` hands pairs to a :class:`MicroBatcher`, so concurrent
  callers (threads and asyncio tasks) share model batches — local models;
* :class:`AsyncBackendScorer` awaits the backend's ``ascore_pairs`` (truly async
  clients, e.g. HTTP APIs); its sync path is the direct one.

:func:`choose_scorer` picks one from the backend's declared capabilities
(:class:`~rerank_core.types.BackendInfo`, :class:`~rerank_core.types.AsyncBackend`).
:class:`CachedScoring` wraps the scorer with the cache (lookup, score the misses,
store) and the counters; the sync and async paths run the same steps.

Every backend failure becomes a :class:`BackendError` (typed crossrank errors pass
unchanged); ``KeyboardInterrupt`` and ``SystemExit`` are never caught here.

Local model calls go through a :class:`~rerank_core.memory.MemoryGuard` (an out-of-memory
batch is retried in halves, and the smaller token budget is kept). A
:class:`~rerank_core.deadline.Deadline` stops scoring between batches: the pairs not
scored by then come back as NaN (unscored), and nothing is cached for them.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

from .batching import plan_batches
from .cache import ManagedCache, cache_key
from .deadline import Deadline, priority_batches
from .errors import BackendError, ConfigError, CrossrankError
from .memory import MemoryGuard
from .scheduler import BatcherStats, MicroBatcher
from .types import AsyncBackend, Backend, Pair, info_of

__all__ = [
    "AsyncBackendScorer",
    "CachedScoring",
    "Counters",
    "DirectScorer",
    "MicroBatchedScorer",
    "Scorer",
    "ScorerKind",
    "checked",
    "choose_scorer",
    "run_batch",
    "wants_micro_batching",
]

ScorerKind = Literal["direct", "micro-batched", "async"]
R = TypeVar("R")


def checked(got: Sequence[float], expected: int) -> list[float]:
    """The backend's answer as finite floats, one per pair, or a BackendError."""
    try:
        out = [float(s) for s in got]
    except (TypeError, ValueError) as exc:
        raise BackendError(f"backend returned something other than numbers: {exc}") from exc
    if len(out) != expected:
        raise BackendError(f"backend returned {len(out)} scores for {expected} pairs")
    if not all(math.isfinite(s) for s in out):
        raise BackendError("backend returned a non-finite score")
    return out


def _backend_error(exc: Exception) -> BackendError:
    return BackendError(f"backend failed: {type(exc).__name__}: {exc}")


def run_batch(backend: Backend, pairs: list[Pair]) -> list[float]:
    """One model call: the backend's scores, checked; any failure is a BackendError."""
    try:
        got = backend.score_pairs(pairs)
    except CrossrankError:
        raise
    except Exception as exc:  # not BaseException: Ctrl-C is never a BackendError
        raise _backend_error(exc) from exc
    return checked(got, len(pairs))


def wants_micro_batching(backend: Backend) -> bool:
    """What the backend declares (``info.micro_batching``); a backend that declares no
    info shares batches unless it is an :class:`AsyncBackend`."""
    return info_of(backend).micro_batching


class Scorer(Protocol):
    """Scores pairs in batches; results in input order."""

    @property
    def kind(self) -> ScorerKind: ...

    @property
    def batcher_stats(self) -> BatcherStats | None: ...

    @property
    def batch_tokens(self) -> int:
        """Padded tokens per model call now (smaller than ``max_batch_tokens`` after an
        out-of-memory error)."""
        ...

    def score(
        self, pairs: list[Pair], lengths: list[int], deadline: Deadline | None = None
    ) -> list[float]: ...

    async def ascore(
        self, pairs: list[Pair], lengths: list[int], deadline: Deadline | None = None
    ) -> list[float]: ...

    def close(self) -> None: ...


class DirectScorer:
    """Length-sorted batches straight to ``score_pairs``; async callers use a thread."""

    kind: ScorerKind = "direct"
    batcher_stats: BatcherStats | None = None

    def __init__(self, backend: Backend, *, batch_size: int, max_batch_tokens: int) -> None:
        self._backend = backend
        self._batch_size = batch_size
        self._max_batch_tokens = max_batch_tokens
        self._guard = MemoryGuard(lambda pairs: run_batch(backend, pairs), max_batch_tokens)

    @property
    def batch_tokens(self) -> int:
        return self._guard.budget

    def _batches(self, lengths: list[int], deadline: Deadline | None = None) -> list[list[int]]:
        planner = plan_batches if deadline is None else priority_batches
        return planner(lengths, batch_size=self._batch_size, max_tokens=self._guard.budget)

    def score(
        self, pairs: list[Pair], lengths: list[int], deadline: Deadline | None = None
    ) -> list[float]:
        out = [math.nan] * len(pairs)
        for batch in self._batches(lengths, deadline):
            if deadline is not None and deadline.passed():
                break
            got = self._guard.run([pairs[i] for i in batch], [lengths[i] for i in batch])
            for i, s in zip(batch, got, strict=True):
                out[i] = s
        return out

    async def ascore(
        self, pairs: list[Pair], lengths: list[int], deadline: Deadline | None = None
    ) -> list[float]:
        if not pairs:
            return []
        return await asyncio.to_thread(self.score, pairs, lengths, deadline)

    def close(self) -> None:
        pass


class AsyncBackendScorer(DirectScorer):
    """Awaits ``ascore_pairs`` batch by batch on async paths (no threads)."""

    kind: ScorerKind = "async"

    def __init__(self, backend: Backend, *, batch_size: int, max_batch_tokens: int) -> None:
        if not isinstance(backend, AsyncBackend):
            raise ConfigError(f"{type(backend).__name__} has no ascore_pairs")
        super().__init__(backend, batch_size=batch_size, max_batch_tokens=max_batch_tokens)
        self._async_backend = backend

    async def _abatch(self, pairs: list[Pair]) -> list[float]:
        try:
            got = await self._async_backend.ascore_pairs(pairs)
        except CrossrankError:
            raise
        except Exception as exc:  # not BaseException: cancellation and Ctrl-C pass
            raise _backend_error(exc) from exc
        return checked(got, len(pairs))

    async def ascore(
        self, pairs: list[Pair], lengths: list[int], deadline: Deadline | None = None
    ) -> list[float]:
        out = [math.nan] * len(pairs)
        for batch in self._batches(lengths, deadline):
            call = self._abatch([pairs[i] for i in batch])
            if deadline is None:
                got = await call
            elif deadline.passed():
                call.close()
                break
            else:
                try:  # a request still out at the deadline is abandoned
                    got = await asyncio.wait_for(call, deadline.left())
                except TimeoutError:
                    break
            for i, s in zip(batch, got, strict=True):
                out[i] = s
        return out


class MicroBatchedScorer:
    """Concurrent callers share model batches through one :class:`MicroBatcher`."""

    kind: ScorerKind = "micro-batched"

    def __init__(self, backend: Backend, *, batch_size: int, max_batch_tokens: int) -> None:
        self._guard = MemoryGuard(lambda pairs: run_batch(backend, pairs), max_batch_tokens)
        self._batcher = MicroBatcher(
            self._guard.run,
            batch_size=batch_size,
            max_batch_tokens=max_batch_tokens,
            with_lengths=True,
        )

    @property
    def batcher_stats(self) -> BatcherStats | None:
        return self._batcher.stats

    @property
    def batch_tokens(self) -> int:
        return self._guard.budget

    def score(
        self, pairs: list[Pair], lengths: list[int], deadline: Deadline | None = None
    ) -> list[float]:
        return self._batcher.score(pairs, lengths, deadline=deadline)

    async def ascore(
        self, pairs: list[Pair], lengths: list[int], deadline: Deadline | None = None
    ) -> list[float]:
        return await self._batcher.ascore(pairs, lengths, deadline=deadline)

    def close(self) -> None:
        self._batcher.close()


def choose_scorer(backend: Backend, *, batch_size: int, max_batch_tokens: int) -> Scorer:
    """Micro-batched when the backend wants shared batches, else the async backend's own
    client when it has one, else direct."""
    if wants_micro_batching(backend):
        return MicroBatchedScorer(backend, batch_size=batch_size, max_batch_tokens=max_batch_tokens)
    if isinstance(backend, AsyncBackend):
        return AsyncBackendScorer(backend, batch_size=batch_size, max_batch_tokens=max_batch_tokens)
    return DirectScorer(backend, batch_size=batch_size, max_batch_tokens=max_batch_tokens)


@dataclass(frozen=True, slots=True)
class _Counts:
    hits: int = 0
    misses: int = 0
    pairs_scored: int = 0


class Counters:
    """Cache hits and misses seen by one engine and the pairs its backend scored."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = _Counts()

    def add(self, *, hits: int, misses: int, scored: int) -> None:
        with self._lock:
            c = self._counts
            self._counts = _Counts(c.hits + hits, c.misses + misses, c.pairs_scored + scored)

    @property
    def hits(self) -> int:
        return self._counts.hits

    @property
    def misses(self) -> int:
        return self._counts.misses

    @property
    def pairs_scored(self) -> int:
        return self._counts.pairs_scored

    def reset(self) -> None:
        with self._lock:
            self._counts = _Counts()


@dataclass(slots=True)
class _Lookup:
    found: list[float | None]
    keys: list[str]
    missing: list[int]


class CachedScoring:
    """Look the pairs up in the cache, score only the misses with the scorer, store them.

    ``fingerprint`` gives the backend's current fingerprint (part of every key). The
    sync and async paths run the same steps; the async one does cache I/O in a worker
    thread and awaits the scorer, so the event loop is never blocked. Nothing is
    stored or counted when scoring fails. Under a deadline, the pairs the scorer did not
    reach stay NaN and are neither stored nor counted as scored.
    """

    def __init__(
        self,
        scorer: Scorer,
        cache: ManagedCache | None,
        fingerprint: Callable[[], str],
        counters: Counters,
    ) -> None:
        self.scorer = scorer
        self.cache = cache
        self._fingerprint = fingerprint
        self.counters = counters

    def _lookup(self, pairs: list[Pair]) -> _Lookup:
        if self.cache is None or not pairs:
            return _Lookup([None] * len(pairs), [], list(range(len(pairs))))
        fp = self._fingerprint()
        keys = [cache_key(fp, q, t) for q, t in pairs]
        found = self.cache.get_many(keys)
        return _Lookup(found, keys, [i for i, v in enumerate(found) if v is None])

    def _commit(self, look: _Lookup, fresh: list[float]) -> list[float]:
        done = [(i, s) for i, s in zip(look.missing, fresh, strict=True) if not math.isnan(s)]
        if self.cache is not None and done:
            self.cache.set_many({look.keys[i]: s for i, s in done})
        cached = self.cache is not None
        n = len(look.found)
        self.counters.add(
            hits=n - len(look.missing) if cached else 0,
            misses=len(look.missing) if cached else 0,
            scored=len(done),
        )
        out = [0.0 if v is None else v for v in look.found]
        for i, s in zip(look.missing, fresh, strict=True):
            out[i] = s
        return out

    async def _io(self, fn: Callable[..., R], *args: object) -> R:
        """Cache I/O off the event loop (inline when there is no cache)."""
        if self.cache is None:
            return fn(*args)
        return await asyncio.to_thread(fn, *args)

    def score(
        self, pairs: list[Pair], lengths: list[int], deadline: Deadline | None = None
    ) -> list[float]:
        look = self._lookup(pairs)
        fresh = self.scorer.score(
            [pairs[i] for i in look.missing], [lengths[i] for i in look.missing], deadline
        )
        return self._commit(look, fresh)

    async def ascore(
        self, pairs: list[Pair], lengths: list[int], deadline: Deadline | None = None
    ) -> list[float]:
        look = await self._io(self._lookup, pairs)
        fresh = await self.scorer.ascore(
            [pairs[i] for i in look.missing], [lengths[i] for i in look.missing], deadline
        )
        return await self._io(self._commit, look, fresh)
