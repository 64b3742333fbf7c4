"""RedisCache against a real redis-server: storage format, TTL, namespacing, pipelining,
tiers, and two processes sharing one cache."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from helpers import KeywordBackend, need
from redis_server import redis_server_fixture, redis_url_fixture  # noqa: F401
from rerank_core import (
    CacheError,
    ConfigError,
    MemoryCache,
    MissingDependencyError,
    RedisCache,
    Reranker,
    TieredCache,
)
from rerank_core.cache import cache_key

ROOT = Path(__file__).resolve().parents[2]

QUERY = "red apple pie"
TEXTS = [
    "an apple a day",
    "red cars are fast",
    "apple pie with red apple slices",
    "nothing relevant here",
    "pie charts",
]


def _commandstats(url: str) -> dict[str, int]:
    import redis

    c = redis.Redis.from_url(url)
    try:
        info = c.info("commandstats")
    finally:
        c.close()
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


def test_scores_round_trip_exactly_as_plain_numbers(redis_url: str) -> None:
    values = {
        "a": 0.1,
        "b": -0.0,
        "c": 5e-324,
        "d": 1.7976931348623157e308,
        "e": math.pi,
        "f": -12.000000000000002,
        "g": 3,  # an int is stored as a float
    }
    with RedisCache(redis_url) as cache:
        cache.set_many(values)
        got = cache.get_many([*values, "absent"])
    assert got[:-1] == [float(v) for v in values.values()]
    assert all(type(v) is float for v in got[:-1])
    assert got[-1] is None
    import redis

    raw = redis.Redis.from_url(redis_url)
    stored = {k.decode(): raw.get(k) for k in raw.keys("*")}
    raw.close()
    # Plain decimal text under namespace:key, nothing pickled.
    assert stored["crossrank:a"] == b"0.1"
    assert stored["crossrank:g"] == b"3.0"
    assert set(stored) == {f"crossrank:{k}" for k in values}
    for v in stored.values():
        assert float(v.decode("ascii")) == float(v.decode("ascii"))


def test_non_finite_values_are_not_stored(redis_url: str) -> None:
    with RedisCache(redis_url) as cache:
        cache.set_many({"nan": math.nan, "inf": math.inf, "ok": 1.0})
        assert cache.get_many(["nan", "inf", "ok"]) == [None, None, 1.0]


def test_ttl_is_set_per_key(redis_url: str) -> None:
    import redis

    raw = redis.Redis.from_url(redis_url)
    try:
        with RedisCache(redis_url, ttl=100, namespace="t1") as c:
            c.set_many({"k": 1.0})
        assert 95 <= raw.ttl("t1:k") <= 100
        with RedisCache(redis_url, ttl=2.5, namespace="t2") as c:
            c.set_many({"k": 1.0})
        assert 2000 <= raw.pttl("t2:k") <= 2500
        with RedisCache(redis_url, ttl=None, namespace="t3") as c:
            c.set_many({"k": 1.0})
        assert raw.ttl("t3:k") == -1  # no expiry
    finally:
        raw.close()


def test_expired_scores_are_misses(redis_url: str) -> None:
    with RedisCache(redis_url, ttl=0.05) as c:
        c.set_many({"k": 1.0})
        assert c.get_many(["k"]) == [1.0]
        import time

        time.sleep(0.2)
        assert c.get_many(["k"]) == [None]


def test_namespaces_are_separate_and_clear_touches_only_its_own(redis_url: str) -> None:
    import redis

    raw = redis.Redis.from_url(redis_url)
    raw.set("unrelated", "keep me")
    raw.set("teamA*:x", "glob chars in another namespace")
    with (
        RedisCache(redis_url, namespace="teamA") as a,
        RedisCache(redis_url, namespace="teamB") as b,
    ):
        a.set_many({f"k{i}": float(i) for i in range(2500)})
        b.set_many({"k1": -1.0})
        assert a.get_many(["k1"]) == [1.0]
        assert b.get_many(["k1", "k2"]) == [-1.0, None]
        assert a.clear() == 2500
        assert a.get_many(["k1"]) == [None]
        assert b.get_many(["k1"]) == [-1.0]
    assert raw.get("unrelated") == b"keep me"
    assert raw.get("teamA*:x") is not None
    raw.close()


@pytest.mark.parametrize(
    "garbage",
    [b"not a number", b"nan", b"inf", b"-Infinity", b"1_000", b"\x80\x04\x95pickle", b"", b"1e999"],
)
def test_garbage_values_are_misses(redis_url: str, garbage: bytes) -> None:
    import redis

    raw = redis.Redis.from_url(redis_url)
    raw.set("crossrank:k", garbage)
    raw.rpush("crossrank:list", "1.0")  # a key of the wrong type
    raw.close()
    with RedisCache(redis_url) as c:
        assert c.get_many(["k", "list"]) == [None, None]


def test_one_round_trip_per_lookup_and_per_store(redis_url: str) -> None:
    before = _commandstats(redis_url)
    rr = Reranker(KeywordBackend(), cache=RedisCache(redis_url))
    rr.rerank(QUERY, TEXTS)
    after = _commandstats(redis_url)
    assert after.get("mget", 0) - before.get("mget", 0) == 1
    assert after.get("set", 0) - before.get("set", 0) == len(TEXTS)
    assert after.get("get", 0) == before.get("get", 0)

    import redis

    class CountingRedis(redis.Redis):
        executes = 0

        def pipeline(self, *a, **kw):  # type: ignore[no-untyped-def]
            pipe = super().pipeline(*a, **kw)
            real = pipe.execute
            owner = self

            def execute(*ea, **ekw):  # type: ignore[no-untyped-def]
                owner.executes += 1
                return real(*ea, **ekw)

            pipe.execute = execute  # type: ignore[method-assign]
            return pipe

    client = CountingRedis.from_url(redis_url)
    cache = RedisCache(client=client)
    cache.set_many({f"k{i}": float(i) for i in range(2500)})
    assert client.executes == 3  # chunks of 1000 keys
    client.executes = 0
    got = cache.get_many([f"k{i}" for i in range(2500)])
    assert got == [float(i) for i in range(2500)]
    assert client.executes == 1  # one pipeline of MGETs: one round trip
    cache.close()
    assert client.ping()  # a caller's client is left open
    client.close()


@pytest.mark.smoke
def test_reranker_with_redis_alone_scores_each_window_once(redis_url: str) -> None:
    b1 = KeywordBackend()
    rr1 = Reranker(b1, cache=RedisCache(redis_url))
    first = rr1.rerank(QUERY, TEXTS)
    assert rr1.pairs_scored == len(TEXTS)
    # A different Reranker and cache object, same server: no model work at all.
    b2 = KeywordBackend()
    rr2 = Reranker(b2, cache=RedisCache(redis_url))
    second = rr2.rerank(QUERY, TEXTS)
    assert rr2.pairs_scored == 0 and b2.calls == []
    assert rr2.cache_stats.hits == len(TEXTS) and rr2.cache_stats.misses == 0
    assert [(r.index, r.score, r.window) for r in second] == [
        (r.index, r.score, r.window) for r in first
    ]
    rr1.close()
    rr2.close()


def test_keys_cover_the_backend_fingerprint(redis_url: str) -> None:
    rr1 = Reranker(KeywordBackend(tag="v1"), cache=RedisCache(redis_url))
    rr1.rerank(QUERY, TEXTS)
    other = KeywordBackend(tag="v2")  # another model: must not read v1's scores
    rr2 = Reranker(other, cache=RedisCache(redis_url))
    rr2.rerank(QUERY, TEXTS)
    assert rr2.pairs_scored == len(TEXTS) and rr2.cache_stats.hits == 0
    # and sigmoid scores are not confused with logits: the engine caches raw scores
    rr3 = Reranker(KeywordBackend(tag="v1"), cache=RedisCache(redis_url), normalize="sigmoid")
    s3 = rr3.score(QUERY, TEXTS)
    assert rr3.pairs_scored == 0
    raw = rr1.score(QUERY, TEXTS)
    assert s3 == pytest.approx([1 / (1 + math.exp(-x)) for x in raw])


def test_tiered_memory_in_front_of_redis(redis_url: str) -> None:
    warm = Reranker(KeywordBackend(), cache=RedisCache(redis_url))
    warm.rerank(QUERY, TEXTS)
    memory = MemoryCache()
    backend = KeywordBackend()
    rr = Reranker(backend, cache=TieredCache(memory, RedisCache(redis_url)))
    rr.rerank(QUERY, TEXTS)
    assert backend.calls == [] and len(memory) == len(TEXTS)  # redis hits copied forward
    before = _commandstats(redis_url).get("mget", 0)
    rr.rerank(QUERY, TEXTS)
    assert _commandstats(redis_url).get("mget", 0) == before  # served by the LRU alone
    # New windows are written through to both tiers.
    rr.rerank("fast cars", TEXTS)
    fresh = Reranker(KeywordBackend(), cache=RedisCache(redis_url))
    fresh.rerank("fast cars", TEXTS)
    assert fresh.pairs_scored == 0


async def test_async_callers_share_the_redis_cache(redis_url: str) -> None:
    backend = KeywordBackend()
    rr = Reranker(backend, cache=RedisCache(redis_url))
    outs = await asyncio.gather(*(rr.arerank(QUERY, TEXTS, top_n=2) for _ in range(8)))
    assert all([r.index for r in o] == [r.index for r in outs[0]] for o in outs)
    again = Reranker(KeywordBackend(), cache=RedisCache(redis_url))
    assert await again.ascore(QUERY, TEXTS) == rr.score(QUERY, TEXTS)
    assert again.pairs_scored == 0


def test_one_cache_object_shared_by_threads(redis_url: str) -> None:
    cache = RedisCache(redis_url)
    rr = Reranker(KeywordBackend(), cache=cache)
    expected = Reranker(KeywordBackend(), cache=None).score(QUERY, TEXTS)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(20):
                q = f"{QUERY} {i % 3} {j % 4}"
                got = rr.score(q, TEXTS)
                ref = Reranker(KeywordBackend(), cache=None).score(q, TEXTS)
                assert got == ref
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert rr.score(QUERY, TEXTS) == expected
    assert rr.cache_stats.errors == 0


_WORKER = textwrap.dedent(
    """
    import json, sys
    sys.path[:0] = [{shared!r}, {tests!r}]
    from rerank_core import Reranker, RedisCache
    spec = json.loads(sys.argv[1])
    if spec["backend"] == "keyword":
        from helpers import KeywordBackend
        backend = KeywordBackend()
    else:
        from rerank_core.backends.cross_encoder import CrossEncoderBackend
        backend = CrossEncoderBackend(spec["backend"])
    rr = Reranker(backend, cache=RedisCache(spec["url"]))
    ranked = rr.rerank(spec["query"], spec["texts"])
    print(json.dumps({{
        "pairs_scored": rr.pairs_scored,
        "hits": rr.cache_stats.hits,
        "misses": rr.cache_stats.misses,
        "errors": rr.cache_stats.errors,
        "ranked": [[r.index, r.score] for r in ranked],
    }}))
    """
).format(shared=str(ROOT / "shared"), tests=str(ROOT / "tests"))


def _run_worker(url: str, backend: str, query: str, texts: list[str]) -> dict[str, object]:
    spec = json.dumps({"url": url, "backend": backend, "query": query, "texts": texts})
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _WORKER, spec],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def test_second_process_does_no_model_work(redis_url: str) -> None:
    first = _run_worker(redis_url, "keyword", QUERY, TEXTS)
    assert first["pairs_scored"] == len(TEXTS) and first["hits"] == 0
    second = _run_worker(redis_url, "keyword", QUERY, TEXTS)
    assert second["pairs_scored"] == 0
    assert second["hits"] == len(TEXTS) and second["misses"] == 0 and second["errors"] == 0
    assert second["ranked"] == first["ranked"]


@pytest.mark.model
def test_second_process_with_real_minilm_does_no_model_work(
    redis_url: str, minilm_path: Path, minilm_reranker_backend: object
) -> None:
    """Two real processes, the real model, one real Redis: this process scores and
    stores; a second process loading the same model directory (the fingerprint, weights
    digest included, is stable across processes) only reads, and gets the same ranking."""
    long_text = " ".join(f"passage word{i} about apples and pears" for i in range(120))
    texts = [*TEXTS, long_text]
    rr = Reranker(minilm_reranker_backend, cache=RedisCache(redis_url))  # type: ignore[arg-type]
    here = rr.rerank(QUERY, texts)
    assert rr.pairs_scored > len(texts)  # the long text has several windows
    other = _run_worker(redis_url, str(minilm_path), QUERY, texts)
    assert other["pairs_scored"] == 0 and other["hits"] == rr.pairs_scored
    assert other["misses"] == 0 and other["errors"] == 0
    assert other["ranked"] == [[r.index, r.score] for r in here]
    rr.close()


def test_bad_options_raise_config_error() -> None:
    need("redis")
    for kwargs in (
        {"ttl": 0},
        {"ttl": -5},
        {"ttl": "1h"},
        {"ttl": True},
        {"namespace": ""},
        {"namespace": "has space"},
        {"namespace": "x" * 65},
        {"socket_timeout": 0},
        {"connect_timeout": -1},
    ):
        with pytest.raises(ConfigError):
            RedisCache("redis://127.0.0.1:1/0", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="invalid Redis URL"):
        RedisCache("http://:hunter2@example.com/0")
    with pytest.raises(ConfigError):
        RedisCache(123)  # type: ignore[arg-type]


def test_password_never_shown() -> None:
    need("redis")
    url = "redis://admin:s3cr3t-Pa55@127.0.0.1:1/0"
    cache = RedisCache(url)
    assert "s3cr3t-Pa55" not in repr(cache) and "***" in repr(cache)
    with pytest.raises(CacheError) as info:
        cache.get_many(["k"])  # nothing listens on port 1
    assert "s3cr3t-Pa55" not in str(info.value)
    assert "s3cr3t-Pa55" not in repr(Reranker(KeywordBackend(), cache=cache))
    with pytest.raises(ConfigError) as bad:
        RedisCache("redis://admin:s3cr3t-Pa55@127.0.0.1:notaport/0")
    assert "s3cr3t-Pa55" not in str(bad.value)
    cache.close()
    with pytest.raises(CacheError, match="closed"):
        cache.get_many(["k"])


def test_missing_redis_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "redis" or m.startswith("redis.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(MissingDependencyError) as info:
        RedisCache("redis://127.0.0.1:1/0")
    assert info.value.extra == "redis"
    assert 'pip install "crossrank[redis]"' in str(info.value)


def test_import_rerank_core_does_not_import_redis() -> None:
    code = "import sys, rerank_core; rerank_core.RedisCache; print('redis' in sys.modules)"
    proc = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT / 'shared')!r}); {code}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert proc.stdout.strip() == "False"


def test_engine_keys_are_what_redis_stores(redis_url: str) -> None:
    backend = KeywordBackend()
    rr = Reranker(backend, cache=RedisCache(redis_url, namespace="ns"))
    rr.rerank(QUERY, TEXTS[:1])
    import redis

    raw = redis.Redis.from_url(redis_url)
    keys = [k.decode() for k in raw.keys("*")]
    raw.close()
    assert keys == ["ns:" + cache_key(backend.fingerprint, QUERY, TEXTS[0])]
    assert QUERY not in keys[0] and TEXTS[0] not in keys[0]  # no text in keys
