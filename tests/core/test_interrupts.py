"""Ctrl-C is never turned into a BackendError nor swallowed by ``on_error="passthrough"``.

``KeyboardInterrupt`` and ``SystemExit`` reach the caller unchanged on every path: direct,
micro-batched and async backend, sync and async. The micro-batcher hands an interrupt
raised on its worker thread to the callers of that generation and keeps serving later
callers on the same thread; a caller interrupted while it waits (a real SIGINT delivered
to the main thread) withdraws its request, so the worker skips the rest of its pairs.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from helpers import KeywordBackend
from rerank_core import BackendInfo, Reranker
from rerank_core.config import OnError
from rerank_core.scheduler import MicroBatcher

TEXTS = ["the cat sat", "a dog barks", "a cat and a dog", "nothing"]
INTERRUPTS = [KeyboardInterrupt, SystemExit]


class Interrupting(KeywordBackend):
    """Raises ``interrupt`` from ``score_pairs`` while ``armed``; records its threads."""

    def __init__(self, interrupt: type[BaseException] | None = None) -> None:
        super().__init__()
        self.interrupt = interrupt
        self.threads: set[int] = set()

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        self.threads.add(threading.get_ident())
        if self.interrupt is not None:
            raise self.interrupt()
        return super().score_pairs(pairs)


class DirectInterrupting(Interrupting):
    info = BackendInfo(micro_batching=False)  # scored on the caller's thread


class AsyncInterrupting(Interrupting):
    info = BackendInfo(micro_batching=False)

    async def ascore_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        await asyncio.sleep(0)
        return self.score_pairs(pairs)


BACKENDS = [Interrupting, DirectInterrupting, AsyncInterrupting]
IDS = ["micro-batched", "direct", "async-backend"]


@pytest.fixture
def thread_crashes() -> Iterator[list[Any]]:
    """Exceptions that escaped a thread (an interrupt must never kill a worker noisily)."""
    seen: list[Any] = []
    previous = threading.excepthook
    threading.excepthook = seen.append
    try:
        yield seen
    finally:
        threading.excepthook = previous


@pytest.mark.parametrize("on_error", ["raise", "passthrough"])
@pytest.mark.parametrize("interrupt", INTERRUPTS)
@pytest.mark.parametrize("backend_cls", BACKENDS, ids=IDS)
def test_interrupt_propagates_unchanged_sync_and_async(
    backend_cls: type[Interrupting],
    interrupt: type[BaseException],
    on_error: OnError,
    thread_crashes: list[Any],
) -> None:
    backend = backend_cls(interrupt)
    rr = Reranker(backend, on_error=on_error, cache="memory")
    with pytest.raises(interrupt):
        rr.rerank("cat", TEXTS)
    with pytest.raises(interrupt):
        rr.score("cat", TEXTS)
    with pytest.raises(interrupt):
        asyncio.run(rr.arerank("cat", TEXTS))
    with pytest.raises(interrupt):
        asyncio.run(rr.arerank_many([("cat", TEXTS), ("dog", TEXTS)]))
    assert rr.pairs_scored == 0 and rr.cache_stats.hits == 0  # nothing half-done was stored
    backend.interrupt = None  # the engine (and its micro-batcher) still works afterwards
    expected = Reranker(KeywordBackend(), cache=None).rerank("cat", TEXTS)
    assert rr.rerank("cat", TEXTS) == expected
    assert asyncio.run(rr.arerank("dog", TEXTS)) == Reranker(KeywordBackend()).rerank("dog", TEXTS)
    rr.close()
    assert thread_crashes == []


def test_micro_batcher_worker_survives_an_interrupt_and_serves_later_callers(
    thread_crashes: list[Any],
) -> None:
    backend = Interrupting(KeyboardInterrupt)
    rr = Reranker(backend, cache=None)
    with pytest.raises(KeyboardInterrupt):
        rr.rerank("cat", TEXTS)
    (worker,) = backend.threads
    assert worker != threading.get_ident()  # it ran on the micro-batcher's thread
    backend.interrupt = None
    assert rr.score("cat", TEXTS) == [1.0, 0.0, 1.0, 0.0]
    assert backend.threads == {worker}  # the same worker thread served the next caller
    assert any(t.ident == worker and t.is_alive() for t in threading.enumerate())
    rr.close()
    assert thread_crashes == []


def test_an_interrupt_on_the_worker_reaches_every_caller_of_its_generation() -> None:
    gate = threading.Event()
    started = threading.Event()
    calls = 0

    def run_batch(pairs: list[tuple[str, str]]) -> list[float]:
        nonlocal calls
        calls += 1
        if calls == 1:  # hold the worker until the others have queued up together
            started.set()
            assert gate.wait(10)
            return [1.0] * len(pairs)
        if calls == 2:
            raise KeyboardInterrupt
        return [2.0] * len(pairs)

    mb = MicroBatcher(run_batch, batch_size=64)
    first = mb.submit([("q", "first")], [3])
    assert started.wait(10)
    a = mb.submit([("q", "a")], [3])
    b = mb.submit([("q", "b")], [3])
    gate.set()
    assert first.result(10) == [1.0]
    for fut in (a, b):  # both shared the interrupted generation
        with pytest.raises(KeyboardInterrupt):
            fut.result(10)
    assert mb.score([("q", "later")], [3]) == [2.0]  # the worker went on
    mb.close()


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs signal.pthread_kill")
def test_real_sigint_while_waiting_withdraws_the_request(thread_crashes: list[Any]) -> None:
    """Ctrl-C: SIGINT delivered to the main thread while it waits for the micro-batcher."""
    main = threading.main_thread().ident
    assert main == threading.get_ident()
    assert main is not None

    class SlowInterrupted(KeywordBackend):
        def __init__(self) -> None:
            super().__init__(max_length=64)
            self.started = 0
            self.first_done = threading.Event()
            self.withdrawn = threading.Event()

        def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
            self.started += 1
            if self.started == 1:
                signal.pthread_kill(main, signal.SIGINT)  # type: ignore[arg-type]
                # the main thread withdraws meanwhile (an event, not a sleep: on a busy
                # machine the main thread can take longer than any fixed pause)
                self.withdrawn.wait(10)
                self.first_done.set()
            return super().score_pairs(pairs)

    backend = SlowInterrupted()
    rr = Reranker(backend, cache=None, batch_size=2)
    texts = [f"cat {i} " + "word " * i for i in range(12)]  # six batches of two
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            rr.rerank("cat", texts)
        assert not backend.first_done.is_set()  # interrupted while the model was working
        backend.withdrawn.set()
    finally:
        backend.withdrawn.set()
        signal.signal(signal.SIGINT, previous)
    assert backend.first_done.wait(10)
    time.sleep(0.2)  # time enough for the worker to run the other five batches, were they due
    assert backend.started == 1  # the worker skipped the withdrawn caller's other batches
    assert rr.rerank("cat", texts) == Reranker(KeywordBackend(), cache=None).rerank("cat", texts)
    rr.close()
    assert thread_crashes == []
