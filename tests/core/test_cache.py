from __future__ import annotations

import sqlite3
import warnings
from pathlib import Path

import pytest
from helpers import KeywordBackend
from rerank_core import (
    CacheStats,
    CacheWarning,
    ConfigError,
    MemoryCache,
    Reranker,
    SQLiteCache,
    TieredCache,
)
from rerank_core.cache import GuardedCache, ManagedCache, cache_key

TEXTS = ["the cat sat", "a dog barked", "cat and dog"]


def test_key_depends_on_fingerprint_query_and_text() -> None:
    k = cache_key("fp", "q", "t")
    assert len(k) == 64
    assert k != cache_key("fp2", "q", "t")
    assert k != cache_key("fp", "q2", "t")
    assert k != cache_key("fp", "q", "t2")
    # length-prefixed parts: no ambiguity from concatenation
    assert cache_key("fp", "ab", "c") != cache_key("fp", "a", "bc")


def test_memory_lru_is_bounded() -> None:
    c = MemoryCache(max_entries=2)
    c.set_many({"a": 1.0, "b": 2.0})
    assert c.get_many(["a"]) == [1.0]  # a is now most recent
    c.set_many({"c": 3.0})
    assert c.get_many(["a", "b", "c"]) == [1.0, None, 3.0]


def test_sqlite_persists_across_instances(tmp_path: Path) -> None:
    path = tmp_path / "scores.sqlite"
    c = SQLiteCache(path)
    c.set_many({"k1": 0.5, "k2": -1.25})
    c.close()
    assert SQLiteCache(path).get_many(["k1", "k2", "k3"]) == [0.5, -1.25, None]


def test_fully_cached_call_does_no_model_work(keyword_backend: KeywordBackend) -> None:
    rr = Reranker(keyword_backend)
    first = rr.rerank("cat", TEXTS)
    calls = len(keyword_backend.calls)
    second = rr.rerank("cat", TEXTS)
    assert len(keyword_backend.calls) == calls
    assert first == second
    assert rr.cache_stats.hits == 3 and rr.cache_stats.misses == 3
    assert rr.pairs_scored == 3


def test_cache_none_turns_caching_off(keyword_backend: KeywordBackend) -> None:
    rr = Reranker(keyword_backend, cache=None)
    rr.rerank("cat", TEXTS)
    rr.rerank("cat", TEXTS)
    assert keyword_backend.pairs_seen == 6
    assert rr.cache_stats.hits == 0


def test_path_gives_persistent_sqlite_tier(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    b1 = KeywordBackend()
    Reranker(b1, cache=path).rerank("cat", TEXTS)
    b2 = KeywordBackend()  # a new process would look like this: fresh memory, same file
    rr2 = Reranker(b2, cache=str(path))
    rr2.rerank("cat", TEXTS)
    assert b2.pairs_seen == 0
    assert rr2.cache_stats.hits == 3


def test_model_swap_never_serves_stale_scores(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    Reranker(KeywordBackend(tag="a"), cache=path).rerank("cat", TEXTS)
    other = KeywordBackend(tag="b")
    Reranker(other, cache=path).rerank("cat", TEXTS)
    assert other.pairs_seen == 3


def test_custom_cache_object(keyword_backend: KeywordBackend) -> None:
    class DictCache:
        def __init__(self) -> None:
            self.d: dict[str, float] = {}

        def get_many(self, keys):  # type: ignore[no-untyped-def]
            return [self.d.get(k) for k in keys]

        def set_many(self, items):  # type: ignore[no-untyped-def]
            self.d.update(items)

    cache = DictCache()
    rr = Reranker(keyword_backend, cache=cache)
    rr.rerank("cat", TEXTS)
    assert len(cache.d) == 3
    assert all(isinstance(v, float) for v in cache.d.values())


def test_corrupt_sqlite_file_warns_once_and_scores_afresh(tmp_path: Path) -> None:
    path = tmp_path / "bad.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    backend = KeywordBackend()
    rr = Reranker(backend, cache=path)
    with pytest.warns(CacheWarning) as record:
        out1 = rr.rerank("cat", TEXTS)
    ours = [w for w in record if issubclass(w.category, CacheWarning)]  # not stray ResourceWarnings
    assert len(ours) == 1
    assert ours[0].filename == __file__  # points at the caller's line, not into crossrank
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)  # a second warning would raise here
        out2 = rr.rerank("cat dog", TEXTS)
    fresh = Reranker(KeywordBackend(), cache=None)
    assert out1 == fresh.rerank("cat", TEXTS)
    assert out2 == fresh.rerank("cat dog", TEXTS)


def test_guarded_cache_recovers_after_outage() -> None:
    class Flaky:
        def __init__(self) -> None:
            self.down = True
            self.d: dict[str, float] = {}

        def get_many(self, keys):  # type: ignore[no-untyped-def]
            if self.down:
                raise ConnectionError("down")
            return [self.d.get(k) for k in keys]

        def set_many(self, items):  # type: ignore[no-untyped-def]
            if self.down:
                raise ConnectionError("down")
            self.d.update(items)

    inner = Flaky()
    g = GuardedCache(inner, retry_after=0.0)
    with pytest.warns(CacheWarning):
        assert g.get_many(["a"]) == [None]
    inner.down = False
    g.set_many({"a": 1.0})
    assert g.get_many(["a"]) == [1.0]


def test_garbage_values_are_misses() -> None:
    class Garbage:
        def get_many(self, keys):  # type: ignore[no-untyped-def]
            return ["NaN", b"junk", object(), float("inf"), "0.5"][: len(keys)]

        def set_many(self, items):  # type: ignore[no-untyped-def]
            pass

    g = GuardedCache(Garbage())
    assert g.get_many(["a", "b", "c", "d", "e"]) == [None, None, None, None, 0.5]


def test_tiered_copies_slow_hits_forward() -> None:
    fast, slow = MemoryCache(), MemoryCache()
    slow.set_many({"k": 2.0})
    t = TieredCache(fast, slow)
    assert t.get_many(["k", "x"]) == [2.0, None]
    assert fast.get_many(["k"]) == [2.0]


def test_locked_sqlite_does_not_break_reranking(tmp_path: Path) -> None:
    path = tmp_path / "locked.sqlite"
    seed = SQLiteCache(path)
    seed.set_many({"x": 1.0})
    seed.close()
    holder = sqlite3.connect(path)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        backend = KeywordBackend()
        rr = Reranker(backend, cache=TieredCache(MemoryCache(), SQLiteCache(path, timeout=0.05)))
        with pytest.warns(CacheWarning, match="locked"):
            out = rr.rerank("cat", TEXTS)
        assert out == Reranker(KeywordBackend(), cache=None).rerank("cat", TEXTS)
    finally:
        holder.rollback()
        holder.close()


def test_managed_cache_knows_what_the_engine_owns(tmp_path: Path) -> None:
    memory = ManagedCache.build("memory")
    assert memory is not None and memory.owned and isinstance(memory.cache, GuardedCache)
    sqlite = ManagedCache.build(tmp_path / "owned.sqlite")
    assert sqlite is not None and sqlite.owned and isinstance(sqlite.cache, TieredCache)
    mine = SQLiteCache(tmp_path / "mine.sqlite")
    passed = ManagedCache.build(mine)
    assert passed is not None and not passed.owned and passed.cache.inner is mine  # type: ignore[union-attr]
    assert ManagedCache.build(None) is None
    passed.set_many({"k": 1.5})
    passed.close()  # not owned: the caller's cache stays open
    assert mine.get_many(["k"]) == [1.5] and Path(f"{mine.path}-wal").exists()
    sqlite.set_many({"k": 2.5})
    sqlite.close()  # owned: every tier closed
    assert not Path(tmp_path / "owned.sqlite-wal").exists()
    mine.close()
    with pytest.raises(ConfigError, match="get_many/set_many"):
        ManagedCache.build(42)  # type: ignore[arg-type]


def test_managed_caches_count_hits_misses_and_errors() -> None:
    guarded = GuardedCache(MemoryCache())
    guarded.set_many({"a": 1.0})
    assert guarded.get_many(["a", "b"]) == [1.0, None]
    assert guarded.stats == CacheStats(hits=1, misses=1, errors=0)
    slow = MemoryCache()
    slow.set_many({"b": 2.0})
    tiered = TieredCache(MemoryCache(), slow)
    assert tiered.get_many(["a", "b"]) == [None, 2.0]
    assert tiered.stats == CacheStats(hits=1, misses=1, errors=0)

    class Broken:
        def get_many(self, keys: object) -> list[float | None]:
            raise OSError("disk gone")

        def set_many(self, items: object) -> None:
            raise OSError("disk gone")

    with pytest.warns(CacheWarning):
        assert TieredCache(Broken()).get_many(["a"]) == [None]


@pytest.mark.parametrize(
    "make",
    [
        lambda: MemoryCache(max_entries=0),
        lambda: MemoryCache(max_entries=True),
        lambda: TieredCache(),
        lambda: TieredCache(MemoryCache(), 42),
        lambda: GuardedCache(42),
        lambda: GuardedCache(MemoryCache(), retry_after=-1),
        lambda: SQLiteCache(3),
        lambda: SQLiteCache("x.sqlite", timeout=-1),
    ],
)
def test_bad_cache_options_are_config_errors(make: object) -> None:
    with pytest.raises(ConfigError):
        make()  # type: ignore[operator]
