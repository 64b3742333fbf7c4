"""Reranking keeps serving when a cache, a model or a caller misbehaves.

Real faults where they can be made real: a redis-server killed and restarted on
the same port, a Redis busy in ``DEBUG SLEEP``, a socket that accepts and never
answers, an SQLite file overwritten with junk or held under an exclusive lock.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import sqlite3
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from helpers import KeywordBackend, need
from redis_server import (  # noqa: F401  (fixtures)
    RedisServer,
    SilentServer,
    redis_server_fixture,
    redis_url_fixture,
    silent_server_fixture,
)
from rerank_core import (
    APIError,
    BackendError,
    CacheWarning,
    MemoryCache,
    RankedText,
    RedisCache,
    Reranker,
    SQLiteCache,
    TieredCache,
)
from rerank_core.cache import GuardedCache

QUERY = "red apple pie"
TEXTS = [
    "an apple a day",
    "red cars are fast",
    "apple pie with red apple slices",
    "nothing relevant here",
    "pie charts and red graphs",
    "apple",
    "a red red red pie",
]


def reference(query: str, texts: Sequence[str], **kw: object) -> list[RankedText]:
    return Reranker(KeywordBackend(), cache=None).rerank(query, texts, **kw)  # type: ignore[arg-type]


def queries(n: int) -> Iterator[str]:
    for i in range(n):
        yield f"{QUERY} {i}"


def redis_keys(url: str) -> int:
    import redis

    c = redis.Redis.from_url(url)
    try:
        return int(c.dbsize())
    finally:
        c.close()


@pytest.fixture
def no_cache_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        yield


# ---------------------------------------------------------------- Redis down, slow, garbage


@pytest.mark.parametrize("tiered", [False, True], ids=["redis-alone", "memory+redis"])
def test_redis_killed_mid_run_warns_once_then_recovers_on_restart(
    redis_server: RedisServer, redis_url: str, tiered: bool, caplog: pytest.LogCaptureFixture
) -> None:
    retry_after = 0.3
    redis_tier = RedisCache(redis_url)
    cache = (
        TieredCache(MemoryCache(), redis_tier, retry_after=retry_after)
        if tiered
        else GuardedCache(redis_tier, retry_after=retry_after)
    )
    backend = KeywordBackend()
    rr = Reranker(backend, cache=cache)
    assert rr.rerank(QUERY, TEXTS) == reference(QUERY, TEXTS)
    assert redis_keys(redis_url) == len(TEXTS)

    redis_server.stop()  # SIGKILL: connections reset, nothing saved
    caplog.set_level(logging.WARNING, logger="crossrank.cache")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        start = time.monotonic()
        for q in queries(6):
            assert rr.rerank(q, TEXTS, top_n=3) == reference(q, TEXTS, top_n=3)
            time.sleep(retry_after / 2)  # some calls retry the dead server, some skip it
        elapsed = time.monotonic() - start
    cache_warnings = [w for w in seen if issubclass(w.category, CacheWarning)]
    assert len(cache_warnings) == 1, [str(w.message) for w in cache_warnings]
    assert "RedisCache" in str(cache_warnings[0].message)
    assert elapsed < 6 * retry_after / 2 + 2.0  # a refused connection fails fast
    assert rr.cache_stats.errors >= 1
    # The scores of the first query are still served (from the LRU when tiered).
    backend.calls.clear()
    assert rr.rerank(QUERY, TEXTS) == reference(QUERY, TEXTS)
    assert (backend.calls == []) is tiered

    redis_server.start()  # same port, empty
    time.sleep(retry_after + 0.05)
    caplog.clear()
    assert rr.rerank("fresh query after restart", TEXTS) == reference(
        "fresh query after restart", TEXTS
    )
    assert any("is back" in r.getMessage() for r in caplog.records)
    assert redis_keys(redis_url) == len(TEXTS)  # written to the restarted server
    # Another worker now reads what this one wrote after the outage.
    other = Reranker(KeywordBackend(), cache=RedisCache(redis_url))
    other.rerank("fresh query after restart", TEXTS)
    assert other.pairs_scored == 0

    # A second outage warns again (once).
    redis_server.stop()
    with pytest.warns(CacheWarning):
        assert rr.rerank("second outage", TEXTS) == reference("second outage", TEXTS)
    redis_server.start()


def test_redis_busy_in_debug_sleep_is_bounded_by_the_timeout(
    redis_server: RedisServer, redis_url: str
) -> None:
    rr = Reranker(KeywordBackend(), cache=RedisCache(redis_url, socket_timeout=0.3))
    blocker = redis_server.client()
    sleeper = threading.Thread(target=lambda: blocker.execute_command("DEBUG", "SLEEP", 2.5))
    sleeper.start()
    time.sleep(0.15)  # the server is now blocked
    try:
        start = time.monotonic()
        with pytest.warns(CacheWarning, match="Timeout"):
            out = rr.rerank(QUERY, TEXTS)
        first = time.monotonic() - start
        start = time.monotonic()
        out2 = rr.rerank(QUERY + " again", TEXTS)  # skipped while down: no second timeout
        errors_while_down = rr.cache_stats.errors
        second = time.monotonic() - start
    finally:
        sleeper.join()
        blocker.close()
    assert out == reference(QUERY, TEXTS) and out2 == reference(QUERY + " again", TEXTS)
    assert first < 1.5, first  # one 0.3 s timeout, not the 2.5 s sleep
    assert errors_while_down == 1  # the busy server was not asked again within retry_after
    assert second < 1.0, second


def test_hung_socket_never_answering_is_bounded(silent_server: SilentServer) -> None:
    need("redis")
    cache = TieredCache(MemoryCache(), RedisCache(silent_server.url), retry_after=0.2)
    rr = Reranker(KeywordBackend(), cache=cache)
    start = time.monotonic()
    with pytest.warns(CacheWarning):
        out = rr.rerank(QUERY, TEXTS)
    assert time.monotonic() - start < 2.0
    assert out == reference(QUERY, TEXTS)
    time.sleep(0.25)
    start = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)  # still down: no second warning
        assert rr.rerank("other", TEXTS) == reference("other", TEXTS)
    assert time.monotonic() - start < 2.0


def test_nothing_listening_fails_fast() -> None:
    need("redis")
    from redis_server import free_port

    rr = Reranker(KeywordBackend(), cache=RedisCache(f"redis://127.0.0.1:{free_port()}/0"))
    start = time.monotonic()
    with pytest.warns(CacheWarning, match="refused|Connection"):
        assert rr.rerank(QUERY, TEXTS) == reference(QUERY, TEXTS)
    assert time.monotonic() - start < 1.0


def test_garbage_in_redis_is_rescored_and_repaired(redis_url: str, no_cache_warnings: None) -> None:
    import redis
    from rerank_core.cache import cache_key

    backend = KeywordBackend()
    raw = redis.Redis.from_url(redis_url)
    junk = [b"NaN", b"\x80\x04pickle", b"", b"12abc", b"inf", b"--1"]
    keys = [f"crossrank:{cache_key(backend.fingerprint, QUERY, t)}" for t in TEXTS]
    for k, j in zip(keys, junk, strict=False):
        raw.set(k, j)
    raw.rpush(keys[-1], "1.0")  # a list where a number should be
    rr = Reranker(backend, cache=RedisCache(redis_url))
    assert rr.rerank(QUERY, TEXTS) == reference(QUERY, TEXTS)
    assert rr.pairs_scored == len(TEXTS) and rr.cache_stats.hits == 0
    # The junk was overwritten by real scores; the wrong-typed key too (SET replaces it).
    stored = [float(v) for v in raw.mget(keys)]
    raw.close()
    assert stored == Reranker(KeywordBackend(), cache=None).score(QUERY, TEXTS)


# ---------------------------------------------------------------- SQLite corrupt or locked


def _scribble(path: Path) -> None:
    """Overwrite the database and its WAL index in place with random bytes."""
    for suffix in ("", "-shm", "-wal"):
        p = Path(str(path) + suffix)
        if p.exists() and p.stat().st_size:
            p.write_bytes(os.urandom(p.stat().st_size))


def test_sqlite_corrupted_mid_run_warns_once_and_recovers_when_replaced(tmp_path: Path) -> None:
    path = tmp_path / "scores.sqlite"
    sqlite_tier = SQLiteCache(path)
    rr = Reranker(KeywordBackend(), cache=TieredCache(MemoryCache(), sqlite_tier, retry_after=0.2))
    rr.rerank(QUERY, TEXTS)
    sqlite_tier._connect().execute("PRAGMA wal_checkpoint(TRUNCATE)")

    _scribble(path)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for q in queries(4):
            assert rr.rerank(q, TEXTS) == reference(q, TEXTS)
            time.sleep(0.1)
    assert [issubclass(w.category, CacheWarning) for w in seen] == [True]
    assert "SQLiteCache" in str(seen[0].message)

    # The operator removes the broken file: the cache starts a fresh one.
    for suffix in ("", "-shm", "-wal"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    time.sleep(0.25)
    assert rr.rerank("after repair", TEXTS) == reference("after repair", TEXTS)
    assert path.exists()
    other = Reranker(KeywordBackend(), cache=path)  # another process's view of the file
    other.rerank("after repair", TEXTS)
    assert other.pairs_scored == 0


def test_sqlite_locked_by_another_process_warns_once_and_recovers(tmp_path: Path) -> None:
    path = tmp_path / "scores.sqlite"
    seed = SQLiteCache(path)
    seed.set_many({"seed": 1.0})
    seed.close()
    rr = Reranker(
        KeywordBackend(),
        cache=TieredCache(MemoryCache(), SQLiteCache(path, timeout=0.1), retry_after=0.2),
    )
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT OR REPLACE INTO scores VALUES ('held', 2.0)")
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            start = time.monotonic()
            for q in queries(4):
                assert rr.rerank(q, TEXTS) == reference(q, TEXTS)
                time.sleep(0.1)
            elapsed = time.monotonic() - start
        assert [issubclass(w.category, CacheWarning) for w in seen] == [True]
        assert "locked" in str(seen[0].message)
        assert elapsed < 4 * 0.1 + 4 * 0.25 + 1.0  # each retry waits at most the busy timeout
    finally:
        holder.execute("COMMIT")
        holder.close()
    time.sleep(0.25)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        assert rr.rerank("after unlock", TEXTS) == reference("after unlock", TEXTS)
    # Both the other process's write and this one's scores after the unlock are on disk.
    assert SQLiteCache(path).get_many(["held", "seed"]) == [2.0, 1.0]
    other = Reranker(KeywordBackend(), cache=path)
    other.rerank("after unlock", TEXTS)
    assert other.pairs_scored == 0 and other.cache_stats.errors == 0


def test_sqlite_path_is_a_directory_is_a_cache_failure_not_a_crash(tmp_path: Path) -> None:
    rr = Reranker(KeywordBackend(), cache=tmp_path)  # a directory, not a file
    with pytest.warns(CacheWarning):
        assert rr.rerank(QUERY, TEXTS) == reference(QUERY, TEXTS)


# ---------------------------------------------------------------- a backend failing mid-call


class FailsOnCall(KeywordBackend):
    """Scores normally, then raises on the ``fail_on``-th batch (1-based)."""

    def __init__(self, fail_on: int, exc: Exception | None = None) -> None:
        super().__init__()
        self.fail_on = fail_on
        self.exc = exc or RuntimeError("CUDA error: device-side assert triggered")
        self.batches = 0

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        self.batches += 1
        if self.batches == self.fail_on:
            raise self.exc
        return super().score_pairs(pairs)


class AsyncFailsOnCall(FailsOnCall):
    async def ascore_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        await asyncio.sleep(0)
        return self.score_pairs(pairs)


LONG = " ".join(f"word{i} apple" for i in range(200))  # several windows
MIXED = [*TEXTS, LONG, "", "   "]


def _assert_passthrough(out: list[RankedText], texts: Sequence[str]) -> None:
    assert [r.index for r in out] == list(range(len(texts)))
    assert [r.text for r in out] == list(texts)
    assert all(not r.scored and math.isnan(r.score) for r in out)
    assert all(r.window == (0, len(r.text)) for r in out)


@pytest.mark.parametrize("backend_cls", [FailsOnCall, AsyncFailsOnCall], ids=["sync", "async"])
async def test_backend_failing_mid_call_raises_backend_error(
    backend_cls: type[FailsOnCall],
) -> None:
    for use_async in (False, True):
        backend = backend_cls(fail_on=2)
        rr = Reranker(backend, batch_size=2, cache=None)
        with pytest.raises(BackendError, match="device-side assert") as info:
            if use_async:
                await rr.arerank(QUERY, MIXED)
            else:
                rr.rerank(QUERY, MIXED)
        assert isinstance(info.value.__cause__, RuntimeError)
        assert backend.batches == 2  # it really failed mid-call, after a good batch


@pytest.mark.parametrize("backend_cls", [FailsOnCall, AsyncFailsOnCall], ids=["sync", "async"])
async def test_passthrough_returns_every_input_in_order_sync_and_async(
    backend_cls: type[FailsOnCall], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="crossrank")
    texts = list(MIXED)
    before = list(texts)
    for use_async in (False, True):
        rr = Reranker(backend_cls(fail_on=3), batch_size=2, on_error="passthrough", cache=None)
        if use_async:
            out = await rr.arerank(QUERY, texts, min_score=0.5)
            scores = await Reranker(
                backend_cls(fail_on=1), on_error="passthrough", cache=None
            ).ascore(QUERY, texts)
            many = await Reranker(
                backend_cls(fail_on=2), batch_size=2, on_error="passthrough", cache=None
            ).arerank_many([(QUERY, texts), ("other", texts[:3])])
        else:
            out = rr.rerank(QUERY, texts, min_score=0.5)  # min_score never drops unscored texts
            scores = Reranker(backend_cls(fail_on=1), on_error="passthrough", cache=None).score(
                QUERY, texts
            )
            many = Reranker(
                backend_cls(fail_on=2), batch_size=2, on_error="passthrough", cache=None
            ).rerank_many([(QUERY, texts), ("other", texts[:3])])
        _assert_passthrough(out, texts)
        assert len(scores) == len(texts) and all(math.isnan(s) for s in scores)
        _assert_passthrough(many[0], texts)
        _assert_passthrough(many[1], texts[:3])
        top = Reranker(backend_cls(fail_on=1), on_error="passthrough", cache=None).rerank(
            QUERY, texts, top_n=4
        )
        _assert_passthrough(top, texts[:4])  # top_n of the input order, never fewer
    assert texts == before
    assert any("backend failed" in r.getMessage() for r in caplog.records)


def test_typed_api_errors_pass_through_unchanged() -> None:
    err = APIError("upstream 503", status_code=503)
    rr = Reranker(FailsOnCall(fail_on=1, exc=err), cache=None)
    with pytest.raises(APIError) as info:
        rr.rerank(QUERY, TEXTS)
    assert info.value is err and info.value.status_code == 503


@pytest.mark.parametrize(
    "bad",
    [[], [1.0], [math.nan] * 64, [math.inf] * 64, ["x"] * 64, None, [[1.0, 2.0]] * 64],
    ids=["empty", "too-few", "nan", "inf", "not-numbers", "None", "nested"],
)
def test_backend_returning_nonsense_is_a_backend_error(bad: list[object] | None) -> None:
    class Nonsense(KeywordBackend):
        def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
            if bad is None or len(bad) < 2:
                return bad  # type: ignore[return-value]
            return bad[: len(pairs)]  # type: ignore[return-value]

    with pytest.raises(BackendError):
        Reranker(Nonsense(), cache=None).rerank(QUERY, TEXTS)
    out = Reranker(Nonsense(), cache=None, on_error="passthrough").rerank(QUERY, TEXTS)
    _assert_passthrough(out, TEXTS)


def test_failure_does_not_poison_the_cache_and_a_retry_scores_correctly() -> None:
    backend = FailsOnCall(fail_on=2)
    cache = MemoryCache()
    rr = Reranker(backend, batch_size=2, cache=cache)
    with pytest.raises(BackendError):
        rr.rerank(QUERY, MIXED)
    assert len(cache) == 0  # nothing half-done was stored
    assert rr.rerank(QUERY, MIXED) == reference(QUERY, MIXED)  # the backend recovered


# ---------------------------------------------------------------- cancelled async callers


class SlowBackend(KeywordBackend):
    """Takes time per batch, from a thread (like a real model)."""

    def __init__(self, delay: float = 0.03) -> None:
        super().__init__()
        self.delay = delay

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        time.sleep(self.delay)
        return super().score_pairs(pairs)


class SlowAsyncBackend(KeywordBackend):
    """An async client that takes time per request (like an HTTP API)."""

    def __init__(self, delay: float = 0.03) -> None:
        super().__init__()
        self.delay = delay
        self.cancelled = 0

    async def ascore_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return self.score_pairs(pairs)


@pytest.mark.parametrize("backend_cls", [SlowBackend, SlowAsyncBackend], ids=["thread", "async"])
async def test_cancelled_callers_do_not_break_the_others(backend_cls: type[KeywordBackend]) -> None:
    loop = asyncio.get_running_loop()
    loop_errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, ctx: loop_errors.append(ctx))
    rr = Reranker(backend_cls(), batch_size=2, cache="memory")
    jobs = [(f"{QUERY} {i % 5}", [*TEXTS, f"apple {i}"]) for i in range(24)]

    async def call(i: int) -> list[RankedText]:
        q, texts = jobs[i]
        return await rr.arerank(q, texts, top_n=5)

    tasks = [asyncio.create_task(call(i)) for i in range(len(jobs))]
    await asyncio.sleep(0.02)  # everyone is in flight
    doomed = tasks[::3]
    for t in doomed:
        t.cancel()
    timed_out = asyncio.create_task(asyncio.wait_for(call(1), timeout=0.001))
    done = await asyncio.gather(*tasks, timed_out, return_exceptions=True)
    for i, (t, result) in enumerate(zip(tasks, done, strict=False)):
        if t in doomed and isinstance(result, asyncio.CancelledError):
            continue
        assert not isinstance(result, BaseException), (i, result)
        assert result == reference(*jobs[i], top_n=5)
    assert isinstance(done[-1], (TimeoutError, asyncio.TimeoutError)) or done[-1] == reference(
        *jobs[1], top_n=5
    )
    assert sum(isinstance(r, asyncio.CancelledError) for r in done) >= 1
    # The engine is not wedged: new callers (sync and async) still get full answers.
    again = await asyncio.gather(*(rr.arerank(q, t) for q, t in jobs[:6]))
    assert again == [reference(q, t) for q, t in jobs[:6]]
    assert rr.rerank(*jobs[0]) == reference(*jobs[0])
    await asyncio.sleep(0.1)  # let abandoned worker threads finish
    assert loop_errors == []
