"""The micro-batcher: one worker thread that scores the pairs of many concurrent callers.

Callers (threads blocking in :meth:`MicroBatcher.score`, asyncio tasks awaiting
:meth:`MicroBatcher.ascore`) hand in their pairs. The worker takes everything waiting
as one *generation*, scores identical pairs once, sorts the rest by token length
across all callers, cuts batches by pair count and padded-token budget, and resolves
each caller as soon as its last pair is scored. What arrives meanwhile forms the next
generation, so no caller waits behind more than one generation of others.

* A cancelled caller (``asyncio`` task cancellation, ``Future.cancel``) is dropped:
  its remaining pairs are skipped and nobody else notices.
* A failing batch that mixes several callers is retried caller by caller, so only
  the caller whose pairs fail gets the error.
* The worker starts on first use and stops after ``idle_timeout`` seconds without
  work (or on :meth:`close`); it is a daemon thread and is restarted after a fork.
* Interrupts are never swallowed nor turned into other errors. A caller interrupted
  while it waits (Ctrl-C in the main thread: ``KeyboardInterrupt``, ``SystemExit``)
  withdraws its request and the interrupt propagates. A backend that raises
  ``KeyboardInterrupt``/``SystemExit`` on the worker thread fails every caller of
  that generation with that very exception (re-raised in each caller's thread or
  task); the worker survives and serves the callers that come next.
* Model calls happen on the worker thread only, one at a time: the backend never
  sees two batches at once (no tokenizer "Already borrowed", no oversubscribed cores).
* A caller with a :class:`~rerank_core.deadline.Deadline` stops waiting when it passes —
  after the model batch holding some of its pairs, if one is running, so that work is not
  lost (deadline plus at most one batch) — and takes what was scored so far (NaN for the
  rest); its remaining pairs are dropped like a cancelled caller's. While such a caller
  waits, its generation's batches follow the callers' own order
  (:func:`~rerank_core.deadline.priority_batches`), so each caller's first candidates are
  scored first.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

from ._validate import number, positive_int
from .batching import plan_batches
from .deadline import Deadline, priority_batches
from .types import Pair

__all__ = ["BatcherStats", "MicroBatcher"]

RunBatch = Callable[[list[Pair]], list[float]]
SizedRunBatch = Callable[[list[Pair], list[int]], list[float]]


@dataclass(frozen=True, slots=True)
class BatcherStats:
    """What the worker did: requests served, generations, model batches, pairs scored,
    pairs saved by cross-caller dedup, and the most requests one generation served."""

    requests: int = 0
    generations: int = 0
    batches: int = 0
    pairs: int = 0
    deduplicated: int = 0
    max_requests_per_generation: int = 0


@dataclass(slots=True, eq=False)
class _Request:
    pairs: list[Pair]
    lengths: list[int]
    future: Future[list[float]]
    scores: list[float] = field(default_factory=list)
    left: int = 0
    deadline: Deadline | None = None
    idle: threading.Event = field(default_factory=threading.Event)  # no batch of it running

    def dead(self) -> bool:
        """Resolved, failed or cancelled, or past its deadline (no batch starts for it)."""
        return self.future.done() or (self.deadline is not None and self.deadline.passed())


_batchers: weakref.WeakSet[MicroBatcher] = weakref.WeakSet()


def _after_fork() -> None:  # pragma: no cover - exercised only in forked children
    for b in list(_batchers):
        b._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


class MicroBatcher:
    """Coalesces concurrent scoring requests into shared, length-sorted model batches.

    ``run_batch(pairs) -> scores`` is called on the worker thread with at most
    ``batch_size`` pairs whose padded size stays within ``max_batch_tokens``
    (``with_lengths=True``: ``run_batch(pairs, lengths)``, the pairs' token lengths too).
    ``max_wait``: seconds the worker lingers for more callers before a generation
    that starts with a single request (0: take what is there; callers that arrive
    while a generation runs join the next one anyway).
    """

    def __init__(
        self,
        run_batch: RunBatch | SizedRunBatch,
        *,
        batch_size: int,
        max_batch_tokens: int | None = None,
        max_wait: float = 0.0,
        idle_timeout: float = 5.0,
        name: str = "crossrank-batcher",
        with_lengths: bool = False,
    ) -> None:
        self._run_any: Callable[..., list[float]] = run_batch
        self._with_lengths = with_lengths
        self._batch_size = positive_int("batch_size", batch_size)
        self._max_batch_tokens = positive_int("max_batch_tokens", max_batch_tokens, allow_none=True)
        self._max_wait = number("max_wait", max_wait, at_least=0.0)
        self._idle_timeout = number("idle_timeout", idle_timeout, above=0.0)
        self._name = name
        self._cond = threading.Condition()
        self._queue: list[_Request] = []
        self._worker: threading.Thread | None = None
        self._stopping = False
        self._stats = BatcherStats()
        _batchers.add(self)

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def max_batch_tokens(self) -> int | None:
        return self._max_batch_tokens

    # ------------------------------------------------------------------ callers

    def submit(self, pairs: Sequence[Pair], lengths: Sequence[int]) -> Future[list[float]]:
        """Queue ``pairs`` (with their token lengths); the future gives scores in order."""
        return self._submit(pairs, lengths, None).future

    def _submit(
        self, pairs: Sequence[Pair], lengths: Sequence[int], deadline: Deadline | None
    ) -> _Request:
        if len(pairs) != len(lengths):
            raise ValueError(f"{len(pairs)} pairs but {len(lengths)} lengths")
        fut: Future[list[float]] = Future()
        req = _Request(list(pairs), [max(1, int(n)) for n in lengths], fut, deadline=deadline)
        req.idle.set()
        if not pairs:
            fut.set_result([])
            return req
        req.scores = [math.nan] * len(req.pairs)
        with self._cond:
            self._stopping = False
            self._queue.append(req)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._worker.start()
            self._cond.notify()
        return req

    def score(
        self, pairs: Sequence[Pair], lengths: Sequence[int], *, deadline: Deadline | None = None
    ) -> list[float]:
        """Score ``pairs`` in shared batches, blocking this thread until they are done (or
        ``deadline`` passes: then NaN for the pairs not scored yet)."""
        if not pairs:
            return []
        if threading.current_thread() is self._worker:  # re-entrant use from a backend
            return self._direct(list(pairs), list(lengths))
        req = self._submit(pairs, lengths, deadline)
        fut = req.future
        try:
            return fut.result(timeout=None if deadline is None else deadline.left())
        except FutureTimeout:
            req.idle.wait()  # a batch with our pairs is running: let it finish (one batch)
            if fut.cancel():
                return list(req.scores)  # what was scored by the deadline
            return fut.result()
        except BaseException:
            fut.cancel()  # interrupted while waiting (Ctrl-C): withdraw the request
            raise

    async def ascore(
        self, pairs: Sequence[Pair], lengths: Sequence[int], *, deadline: Deadline | None = None
    ) -> list[float]:
        """Score ``pairs`` in shared batches without blocking the event loop (until
        ``deadline``, if given: then NaN for the pairs not scored yet).

        Cancelling the awaiting task withdraws the request; other callers go on.
        """
        if not pairs:
            return []
        req = self._submit(pairs, lengths, deadline)
        waiting = asyncio.wrap_future(req.future)
        if deadline is None:
            return await waiting
        try:
            done, _ = await asyncio.wait({waiting}, timeout=deadline.left())
        except BaseException:
            req.future.cancel()  # the awaiting task was cancelled: withdraw the request
            raise
        if not done:
            await asyncio.to_thread(req.idle.wait)  # a running batch with our pairs finishes
            if req.future.cancel():
                return list(req.scores)  # what was scored by the deadline
        return await waiting

    @property
    def stats(self) -> BatcherStats:
        return self._stats

    def close(self, timeout: float | None = 5.0) -> None:
        """Finish queued work, then stop the worker (a later submit starts a new one)."""
        with self._cond:
            self._stopping = True
            worker = self._worker
            self._cond.notify_all()
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout)

    # ------------------------------------------------------------------ worker

    def _loop(self) -> None:
        while True:
            with self._cond:
                if not self._queue and not self._stopping:
                    self._cond.wait(self._idle_timeout)
                if not self._queue:
                    if self._worker is threading.current_thread():
                        self._worker = None
                    return
                if self._max_wait and len(self._queue) == 1:
                    deadline = time.monotonic() + self._max_wait
                    while len(self._queue) == 1 and not self._stopping:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self._cond.wait(left)
                generation, self._queue = self._queue, []
            try:
                self._run_generation(generation)
            except BaseException as exc:  # handed to the callers (re-raised there), not swallowed
                # Never leave a caller waiting forever. An interrupt (KeyboardInterrupt,
                # SystemExit) raised by the backend reaches each caller of this generation
                # unchanged and is re-raised there; the worker goes on for later callers.
                for req in generation:
                    _fail(req, exc)

    def _run_generation(self, generation: list[_Request]) -> None:
        # unique pairs across callers; each slot lists the (request, position) it feeds
        slot_of: dict[Pair, int] = {}
        pairs: list[Pair] = []
        lengths: list[int] = []
        users: list[list[tuple[_Request, int]]] = []
        live = [r for r in generation if not r.dead()]
        for req in live:
            req.left = len(req.pairs)
            for pos, (pair, n) in enumerate(zip(req.pairs, req.lengths, strict=True)):
                slot = slot_of.get(pair)
                if slot is None:
                    slot = slot_of[pair] = len(pairs)
                    pairs.append(pair)
                    lengths.append(n)
                    users.append([])
                users[slot].append((req, pos))
        n_items = sum(len(r.pairs) for r in live)
        if any(r.deadline is not None for r in live):
            # each slot's place: the earliest position any of its callers gave it
            first = [min(pos for _, pos in u) for u in users]
            batches = priority_batches(
                lengths,
                batch_size=self._batch_size,
                max_tokens=self._max_batch_tokens,
                priorities=first,
            )
        else:
            batches = plan_batches(
                lengths, batch_size=self._batch_size, max_tokens=self._max_batch_tokens
            )
        ran = 0
        for batch in batches:
            batch = [s for s in batch if any(not r.dead() for r, _ in users[s])]
            if not batch:
                continue
            ran += 1
            inside = list({id(r): r for s in batch for r, _ in users[s]}.values())
            for req in inside:
                req.idle.clear()
            try:
                self._run_and_deliver(batch, pairs, lengths, users)
            finally:
                for req in inside:
                    req.idle.set()
        old = self._stats
        self._stats = BatcherStats(
            requests=old.requests + len(live),
            generations=old.generations + 1,
            batches=old.batches + ran,
            pairs=old.pairs + len(pairs),
            deduplicated=old.deduplicated + n_items - len(pairs),
            max_requests_per_generation=max(old.max_requests_per_generation, len(live)),
        )

    def _run_and_deliver(
        self,
        batch: list[int],
        pairs: list[Pair],
        lengths: list[int],
        users: list[list[tuple[_Request, int]]],
    ) -> None:
        try:
            got = self._run_batch([pairs[s] for s in batch], [lengths[s] for s in batch])
        except Exception as exc:
            self._isolate(batch, pairs, lengths, users, exc)
            return
        for s, score in zip(batch, got, strict=True):
            for req, pos in users[s]:
                req.scores[pos] = score
                req.left -= 1
                if req.left == 0:
                    _resolve(req)

    def _isolate(
        self,
        batch: list[int],
        pairs: list[Pair],
        lengths: list[int],
        users: list[list[tuple[_Request, int]]],
        exc: Exception,
    ) -> None:
        """A batch failed: retry it caller by caller so only the culprits fail."""
        owners: dict[int, _Request] = {}
        for s in batch:
            for req, _ in users[s]:
                owners.setdefault(id(req), req)
        if len(owners) == 1:
            for req in owners.values():
                _fail(req, exc)
            return
        for req in owners.values():
            if req.dead():
                continue
            mine = [s for s in batch if any(r is req for r, _ in users[s])]
            try:
                got = self._run_batch([pairs[s] for s in mine], [lengths[s] for s in mine])
            except Exception as own:
                _fail(req, own)
                continue
            for s, score in zip(mine, got, strict=True):
                for r, pos in users[s]:
                    if r is req:
                        r.scores[pos] = score
                        r.left -= 1
            if req.left == 0:
                _resolve(req)

    def _run_batch(self, pairs: list[Pair], lengths: list[int]) -> list[float]:
        if self._with_lengths:
            return self._run_any(pairs, lengths)
        return self._run_any(pairs)

    def _direct(self, pairs: list[Pair], lengths: list[int]) -> list[float]:
        out = [0.0] * len(pairs)
        for batch in plan_batches(
            lengths, batch_size=self._batch_size, max_tokens=self._max_batch_tokens
        ):
            got = self._run_batch([pairs[i] for i in batch], [lengths[i] for i in batch])
            for i, s in zip(batch, got, strict=True):
                out[i] = s
        return out

    def _reset_after_fork(self) -> None:  # pragma: no cover - runs in forked children
        self._cond = threading.Condition()
        self._worker = None
        self._queue = []


def _resolve(req: _Request) -> None:
    with contextlib.suppress(InvalidStateError):  # cancelled meanwhile
        req.future.set_result(req.scores)


def _fail(req: _Request, exc: BaseException) -> None:
    with contextlib.suppress(InvalidStateError):  # already resolved, failed or cancelled
        req.future.set_exception(exc)
