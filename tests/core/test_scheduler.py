"""The micro-batcher: shared batches across threads and asyncio tasks, cancellation,
error isolation, lifecycle; and the engine routed through it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
from helpers import KeywordBackend
from hypothesis import given, settings
from hypothesis import strategies as st
from rerank_core import BackendError, BackendInfo, BatcherStats, ConfigError, Reranker
from rerank_core.scheduler import MicroBatcher
from rerank_core.scoring import wants_micro_batching

Pair = tuple[str, str]


def word_score(pair: Pair) -> float:
    q, t = pair
    words = set(t.lower().split())
    return float(sum(w in words for w in q.lower().split())) + len(t) / 1000.0


class Recorder:
    """A run_batch that records every batch; optionally slow, gated or failing."""

    def __init__(self, delay: float = 0.0, poison: str | None = None) -> None:
        self.batches: list[list[Pair]] = []
        self.delay = delay
        self.poison = poison
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, pairs: list[Pair]) -> list[float]:
        with self.lock:
            self.batches.append(list(pairs))
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10), "test gate never opened"
        if self.delay:
            time.sleep(self.delay)
        if self.poison is not None and any(self.poison in t for _, t in pairs):
            raise BackendError(f"cannot score {self.poison!r}")
        return [word_score(p) for p in pairs]

    @property
    def scored(self) -> list[Pair]:
        return [p for b in self.batches for p in b]


def job(i: int, n: int = 5) -> list[Pair]:
    return [
        (f"query {i} cat", f"text {i}-{k} " + "cat " * (k % 3) + "x" * (i + k)) for k in range(n)
    ]


def test_results_in_order_and_equal_to_direct_scoring() -> None:
    rec = Recorder()
    mb = MicroBatcher(rec, batch_size=4, max_batch_tokens=1000)
    pairs = job(3, 11)
    got = mb.score(pairs, [len(t) for _, t in pairs])
    assert got == [word_score(p) for p in pairs]
    assert all(len(b) <= 4 for b in rec.batches)
    assert mb.score([], []) == []
    with pytest.raises(ValueError, match="lengths"):
        mb.submit(pairs, [1])
    mb.close()


def test_concurrent_threads_share_batches() -> None:
    rec = Recorder()
    rec.gate = threading.Event()
    mb = MicroBatcher(rec, batch_size=64)
    first = mb.submit(job(0), [5] * 5)  # occupies the worker until the gate opens
    assert rec.entered.wait(5)
    results: dict[int, list[float]] = {}

    def call(i: int) -> None:
        results[i] = mb.score(job(i), [5 + i] * 5)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(1, 17)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while len(mb._queue) < 16 and time.monotonic() < deadline:
        time.sleep(0.005)
    rec.gate.set()
    for t in threads:
        t.join(10)
    assert first.result(5) == [word_score(p) for p in job(0)]
    for i in range(1, 17):
        assert results[i] == [word_score(p) for p in job(i)]
    # 16 callers of 5 pairs: one generation, 80 pairs in batches of up to 64
    assert len(rec.batches) == 1 + 2
    assert mb.stats.max_requests_per_generation == 16
    assert mb.stats.requests == 17
    mb.close()


def test_identical_pairs_of_different_callers_are_scored_once() -> None:
    rec = Recorder()
    rec.gate = threading.Event()
    mb = MicroBatcher(rec, batch_size=32)
    blocker = mb.submit([("q", "blocker")], [2])
    assert rec.entered.wait(5)
    same = [("what is a cat", "a cat is an animal"), ("what is a cat", "dogs bark")]
    futs = [mb.submit(same, [6, 5]) for _ in range(5)]
    rec.gate.set()
    assert blocker.result(5) == [word_score(("q", "blocker"))]
    for f in futs:
        assert f.result(5) == [word_score(p) for p in same]
    assert rec.scored.count(same[0]) == 1 and rec.scored.count(same[1]) == 1
    assert mb.stats.deduplicated == 8
    mb.close()


def test_a_failing_caller_does_not_fail_the_others_of_its_batch() -> None:
    rec = Recorder(poison="POISON")
    rec.gate = threading.Event()
    mb = MicroBatcher(rec, batch_size=64)
    blocker = mb.submit([("q", "x")], [1])
    assert rec.entered.wait(5)
    good = [mb.submit(job(i), [3] * 5) for i in range(4)]
    bad = mb.submit([("q", "POISON here"), ("q", "fine")], [3, 3])
    rec.gate.set()
    blocker.result(5)
    for i, f in enumerate(good):
        assert f.result(5) == [word_score(p) for p in job(i)]
    with pytest.raises(BackendError, match="POISON"):
        bad.result(5)
    # and the worker goes on serving
    assert mb.score(job(9), [3] * 5) == [word_score(p) for p in job(9)]
    mb.close()


async def test_cancelled_asyncio_caller_is_dropped_and_others_go_on() -> None:
    rec = Recorder()
    rec.gate = threading.Event()
    mb = MicroBatcher(rec, batch_size=8)
    blocker = asyncio.ensure_future(mb.ascore([("q", "blocker")], [2]))
    while not rec.entered.is_set():
        await asyncio.sleep(0.005)
    victim_pairs = [("victim", f"text {k}") for k in range(6)]
    victim = asyncio.ensure_future(mb.ascore(victim_pairs, [3] * 6))
    others = [asyncio.ensure_future(mb.ascore(job(i), [3] * 5)) for i in range(3)]
    await asyncio.sleep(0.02)  # all queued behind the blocker
    victim.cancel()
    with pytest.raises(asyncio.CancelledError):
        await victim
    rec.gate.set()
    assert await blocker == [word_score(("q", "blocker"))]
    for i, o in enumerate(others):
        assert await o == [word_score(p) for p in job(i)]
    assert not any(p in rec.scored for p in victim_pairs)  # its work was skipped
    assert await mb.ascore(job(7), [3] * 5) == [word_score(p) for p in job(7)]
    mb.close()


async def test_cancelling_mid_batch_leaves_the_worker_healthy() -> None:
    rec = Recorder(delay=0.05)
    mb = MicroBatcher(rec, batch_size=2)
    tasks = [asyncio.ensure_future(mb.ascore(job(i, 6), [4] * 6)) for i in range(6)]
    await asyncio.sleep(0.08)
    for t in tasks[::2]:
        t.cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    for i, d in enumerate(done):
        if i % 2:
            assert d == [word_score(p) for p in job(i, 6)]
        else:
            assert isinstance(d, asyncio.CancelledError)
    assert await mb.ascore(job(8), [4] * 5) == [word_score(p) for p in job(8)]
    mb.close()


def test_worker_stops_when_idle_and_restarts_on_demand() -> None:
    rec = Recorder()
    mb = MicroBatcher(rec, batch_size=8, idle_timeout=0.05)
    assert mb.score(job(1), [3] * 5) == [word_score(p) for p in job(1)]
    worker = mb._worker
    assert worker is not None
    worker.join(2)
    assert not worker.is_alive() and mb._worker is None
    assert mb.score(job(2), [3] * 5) == [word_score(p) for p in job(2)]
    mb.close()
    assert mb._worker is None or not mb._worker.is_alive()
    assert mb.score(job(3), [3] * 5) == [word_score(p) for p in job(3)]  # usable after close
    mb.close()


def test_reentrant_use_from_the_worker_does_not_deadlock() -> None:
    holder: dict[str, MicroBatcher] = {}

    def run_batch(pairs: list[Pair]) -> list[float]:
        if pairs[0][0] == "outer":
            inner = holder["mb"].score([("inner", "x")], [2])
            return [inner[0]] * len(pairs)
        return [1.5] * len(pairs)

    mb = MicroBatcher(run_batch, batch_size=4)
    holder["mb"] = mb
    assert mb.score([("outer", "a"), ("outer", "b")], [2, 2]) == [1.5, 1.5]
    mb.close()


@settings(max_examples=25, deadline=None)
@given(
    requests=st.lists(
        st.lists(
            st.tuples(st.sampled_from(["a b", "b c", "c"]), st.text("abc ", max_size=12)),
            max_size=7,
        ),
        min_size=1,
        max_size=6,
    ),
    batch_size=st.integers(1, 5),
)
def test_any_mix_of_callers_gets_exactly_its_own_scores(
    requests: list[list[Pair]], batch_size: int
) -> None:
    rec = Recorder()
    mb = MicroBatcher(rec, batch_size=batch_size, max_batch_tokens=12)
    futs = [mb.submit(r, [len(t) + 1 for _, t in r]) for r in requests]
    for r, f in zip(requests, futs, strict=True):
        assert f.result(5) == [word_score(p) for p in r]
    assert all(len(b) <= batch_size for b in rec.batches)
    mb.close()


def test_which_backends_get_a_micro_batcher(keyword_backend: KeywordBackend) -> None:
    class Async(KeywordBackend):
        async def ascore_pairs(self, pairs: Sequence[Pair]) -> list[float]:
            return self.score_pairs(pairs)

    class OptOut(KeywordBackend):
        info = BackendInfo(micro_batching=False)

    class AsyncOptIn(Async):
        info = BackendInfo(micro_batching=True)

    class Undeclared(KeywordBackend):
        micro_batching = False  # not the declared capability: ignored

    assert wants_micro_batching(keyword_backend)  # declares nothing, not async: shares
    assert not wants_micro_batching(Async())
    assert not wants_micro_batching(OptOut())
    assert wants_micro_batching(AsyncOptIn())
    assert wants_micro_batching(Undeclared())
    assert Reranker(keyword_backend).batcher_stats == BatcherStats()
    assert Reranker(Async()).batcher_stats is None
    assert Reranker(OptOut()).batcher_stats is None
    assert Reranker(OptOut()).describe()["engine"]["scorer"] == "direct"
    assert Reranker(Async()).describe()["engine"]["scorer"] == "async"
    assert Reranker(AsyncOptIn()).describe()["engine"]["scorer"] == "micro-batched"


def test_bad_micro_batcher_options_are_config_errors() -> None:
    for kwargs in ({"batch_size": 0}, {"batch_size": 2, "max_wait": -1}, {"batch_size": True}):
        with pytest.raises(ConfigError):
            MicroBatcher(Recorder(), **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------- through the engine


class SlowKeyword(KeywordBackend):
    """Takes a little time per batch, so that concurrent callers pile up."""

    def score_pairs(self, pairs: Sequence[Pair]) -> list[float]:
        time.sleep(0.01)
        return super().score_pairs(pairs)


def caller_jobs(n: int) -> list[tuple[str, list[str]]]:
    return [
        (f"cat {i} dog", [f"the cat {k} sat " * (1 + (i + k) % 4) + f"dog {i}" for k in range(20)])
        for i in range(n)
    ]


def test_engine_threads_and_tasks_get_their_solo_results() -> None:
    backend = SlowKeyword()
    rr = Reranker(backend, cache=None, batch_size=16)
    jobs = caller_jobs(16)
    solo = [Reranker(KeywordBackend(), cache=None).rerank(q, ts) for q, ts in jobs]
    got: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []
    gate = threading.Barrier(len(jobs))

    def call(i: int) -> None:
        gate.wait()
        try:
            got[i] = rr.rerank(*jobs[i])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and got == solo

    async def tasks() -> list[Any]:
        return list(await asyncio.gather(*(rr.arerank(q, ts) for q, ts in jobs)))

    assert asyncio.run(tasks()) == solo
    stats = rr.batcher_stats
    assert stats is not None and stats.max_requests_per_generation > 1
    # callers shared model batches: alone, each call of 20 pairs needs two batches of 16
    assert stats.batches < stats.requests * 2
    rr.close()


async def test_engine_cancelled_task_does_not_break_other_callers() -> None:
    backend = SlowKeyword()
    rr = Reranker(backend, cache="memory", batch_size=4)
    jobs = caller_jobs(8)
    solo = [Reranker(KeywordBackend(), cache=None).rerank(q, ts) for q, ts in jobs]
    tasks = [asyncio.ensure_future(rr.arerank(q, ts)) for q, ts in jobs]
    await asyncio.sleep(0.03)
    tasks[1].cancel()
    tasks[5].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    for i, d in enumerate(done):
        if i in (1, 5):
            assert isinstance(d, asyncio.CancelledError)
        else:
            assert d == solo[i]
    assert await rr.arerank(*jobs[1]) == solo[1]  # the cancelled query works later
    assert rr.rerank(*jobs[5]) == solo[5]
    rr.close()


def test_engine_passthrough_and_raise_still_apply(keyword_backend: KeywordBackend) -> None:
    keyword_backend.fail = RuntimeError("model fell over")
    with pytest.raises(BackendError, match="model fell over"):
        Reranker(keyword_backend, cache=None).rerank("q", ["a", "b"])
    out = Reranker(keyword_backend, cache=None, on_error="passthrough").rerank("q", ["a", "b"])
    assert [r.index for r in out] == [0, 1] and not any(r.scored for r in out)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_micro_batcher_works_in_a_forked_child(keyword_backend: KeywordBackend) -> None:
    import multiprocessing

    rr = Reranker(keyword_backend, cache=None)
    expected = rr.score("cat dog", ["a cat", "a dog and a cat", "nothing"])
    assert any(t.name == "crossrank-batcher" and t.is_alive() for t in threading.enumerate())
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()

    def child() -> None:
        queue.put(rr.score("cat dog", ["a cat", "a dog and a cat", "nothing"]))

    proc = ctx.Process(target=child)
    proc.start()
    assert queue.get(timeout=30) == expected
    proc.join(10)
    assert proc.exitcode == 0
