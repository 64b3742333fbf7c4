"""Scoring alone: the three scorers, the choice among them, and the cached-scoring step."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest
from helpers import KeywordBackend
from rerank_core import APIError, BackendError, BackendInfo, MemoryCache, ModelLoadError
from rerank_core.cache import ManagedCache
from rerank_core.scoring import (
    AsyncBackendScorer,
    CachedScoring,
    Counters,
    DirectScorer,
    MicroBatchedScorer,
    checked,
    choose_scorer,
    run_batch,
)

Pair = tuple[str, str]
PAIRS: list[Pair] = [("cat", "a cat"), ("cat", "dog"), ("cat dog", "cat and dog"), ("q", "x")]
LENGTHS = [5, 4, 7, 3]
EXPECTED = [1.0, 0.0, 2.0, 0.0]


class AsyncKeyword(KeywordBackend):
    def __init__(self) -> None:
        super().__init__()
        self.threads: set[int] = set()

    async def ascore_pairs(self, pairs: Sequence[Pair]) -> list[float]:
        self.threads.add(threading.get_ident())
        await asyncio.sleep(0)
        return self.score_pairs(pairs)


class Local(KeywordBackend):
    info = BackendInfo(micro_batching=False)


def test_run_batch_checks_answers_and_types_failures() -> None:
    b = KeywordBackend()
    assert run_batch(b, PAIRS) == EXPECTED
    b.fail = RuntimeError("CUDA device-side assert")
    with pytest.raises(BackendError, match="RuntimeError: CUDA") as info:
        run_batch(b, PAIRS)
    assert isinstance(info.value.__cause__, RuntimeError)
    typed = APIError("upstream 503", status_code=503)
    b.fail = typed
    with pytest.raises(APIError) as api:
        run_batch(b, PAIRS)
    assert api.value is typed  # typed crossrank errors pass unchanged
    b.fail = ModelLoadError("gone")
    with pytest.raises(ModelLoadError):
        run_batch(b, PAIRS)
    for bad, n in (([1.0], 2), ([float("nan")], 1), (["x"], 1), (None, 1)):
        with pytest.raises(BackendError):
            checked(bad, n)  # type: ignore[arg-type]
    assert checked([1, 2.5], 2) == [1.0, 2.5]


def test_the_scorer_is_chosen_from_declared_capabilities() -> None:
    kw = {"batch_size": 2, "max_batch_tokens": 100}
    assert isinstance(choose_scorer(KeywordBackend(), **kw), MicroBatchedScorer)
    assert isinstance(choose_scorer(AsyncKeyword(), **kw), AsyncBackendScorer)
    assert type(choose_scorer(Local(), **kw)) is DirectScorer

    class AsyncShared(AsyncKeyword):
        info = BackendInfo(micro_batching=True)

    assert isinstance(choose_scorer(AsyncShared(), **kw), MicroBatchedScorer)


@pytest.mark.parametrize("backend_cls", [Local, AsyncKeyword, KeywordBackend])
async def test_every_scorer_gives_input_order_in_length_sorted_batches(
    backend_cls: type[KeywordBackend],
) -> None:
    backend = backend_cls()
    scorer = choose_scorer(backend, batch_size=2, max_batch_tokens=100)
    assert scorer.score(list(PAIRS), list(LENGTHS)) == EXPECTED
    assert [len(c) for c in backend.calls] == [2, 2]
    assert backend.calls[0] == [PAIRS[2], PAIRS[0]]  # longest first
    assert await scorer.ascore(list(PAIRS), list(LENGTHS)) == EXPECTED
    assert scorer.score([], []) == [] and await scorer.ascore([], []) == []
    scorer.close()


async def test_the_async_scorer_awaits_the_backend_on_the_loop() -> None:
    backend = AsyncKeyword()
    scorer = AsyncBackendScorer(backend, batch_size=3, max_batch_tokens=100)
    assert await scorer.ascore(list(PAIRS), list(LENGTHS)) == EXPECTED
    assert backend.threads == {threading.get_ident()}
    backend.fail = RuntimeError("HTTP client exploded")
    with pytest.raises(BackendError, match="exploded"):
        await scorer.ascore(list(PAIRS), list(LENGTHS))


async def test_the_direct_scorer_keeps_the_loop_free() -> None:
    scorer = DirectScorer(Local(), batch_size=2, max_batch_tokens=100)
    assert await scorer.ascore(list(PAIRS), list(LENGTHS)) == EXPECTED
    assert scorer.batcher_stats is None and scorer.kind == "direct"


def test_micro_batched_scorer_reports_what_it_shared() -> None:
    scorer = MicroBatchedScorer(KeywordBackend(), batch_size=8, max_batch_tokens=100)
    scorer.score(list(PAIRS), list(LENGTHS))
    stats = scorer.batcher_stats
    assert stats is not None and stats.requests == 1 and stats.pairs == len(PAIRS)
    scorer.close()


def _cached(backend: KeywordBackend, cache: ManagedCache | None) -> CachedScoring:
    scorer = DirectScorer(backend, batch_size=8, max_batch_tokens=1000)
    return CachedScoring(scorer, cache, lambda: backend.fingerprint, Counters())


async def test_cached_scoring_scores_only_misses_the_same_sync_and_async() -> None:
    backend = Local()
    step = _cached(backend, ManagedCache.build("memory"))
    assert step.score(PAIRS[:2], LENGTHS[:2]) == EXPECTED[:2]
    assert await step.ascore(list(PAIRS), list(LENGTHS)) == EXPECTED
    assert backend.pairs_seen == 4  # the first two came from the cache
    assert step.score(list(PAIRS), list(LENGTHS)) == EXPECTED
    c = step.counters
    assert (c.hits, c.misses, c.pairs_scored) == (2 + 4, 2 + 2, 4)
    c.reset()
    assert (c.hits, c.misses, c.pairs_scored) == (0, 0, 0)


def test_cached_scoring_without_a_cache_counts_only_model_work() -> None:
    backend = Local()
    step = _cached(backend, None)
    step.score(list(PAIRS), list(LENGTHS))
    step.score(list(PAIRS), list(LENGTHS))
    assert (step.counters.hits, step.counters.misses, step.counters.pairs_scored) == (0, 0, 8)


def test_a_failed_scoring_stores_and_counts_nothing() -> None:
    backend = Local()
    memory = MemoryCache()
    step = _cached(backend, ManagedCache.build(memory))
    backend.fail = RuntimeError("boom")
    with pytest.raises(BackendError):
        step.score(list(PAIRS), list(LENGTHS))
    assert len(memory) == 0 and step.counters.misses == 0 and step.counters.pairs_scored == 0
