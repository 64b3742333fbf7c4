"""Secrets end to end: a Cohere API key and a Redis password travel through the engine,
its cache tiers (memory, SQLite, a password-protected redis-server) and the adapters,
and never show in logs, warnings, errors, repr, serialized fields or cache keys/values.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sqlite3
import sys
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backends"))

from _cohere_server import Action, CohereLikeServer
from helpers import NOT_INSTALLED, need
from redis_server import REDIS_SERVER, RedisServer
from rerank_core import (
    APIError,
    CacheWarning,
    MemoryCache,
    RedisCache,
    Reranker,
    SQLiteCache,
    TieredCache,
)
from rerank_core.cache import GuardedCache
from rerank_core.deps import installed

need("cohere")

API_KEY = "sk-live-7f3a9c-API-SECRET"
REDIS_PASSWORD = "redis-pw-41d2-SECRET"
SECRETS = (API_KEY, REDIS_PASSWORD)
QUERY = "vitamin c deficiency scurvy"
DOCS = [
    "Scurvy is caused by a deficiency of vitamin C.",
    "Paris is the capital of France.",
    "Sailors got scurvy on long voyages. " * 300,  # several windows
]


def assert_no_secret(*texts: object) -> None:
    digests = [hashlib.sha256(s.encode()).hexdigest() for s in SECRETS]
    for text in texts:
        shown = text if isinstance(text, str) else repr(text)
        for secret in (*SECRETS, *digests):
            assert secret not in shown, f"a secret leaked into: {shown[:300]}"


@pytest.fixture
def cohere_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[CohereLikeServer]:
    for var in ("CO_API_KEY", "COHERE_API_KEY", "CO_API_URL"):
        monkeypatch.delenv(var, raising=False)
    srv = CohereLikeServer()
    yield srv
    srv.close()


@pytest.fixture
def locked_redis(tmp_path: Path) -> Iterator[RedisServer]:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    need("redis")
    server = RedisServer(tmp_path, password=REDIS_PASSWORD)
    server.start()
    yield server
    server.stop()


def _cache_contents(redis_server: RedisServer, sqlite_path: Path) -> list[str]:
    import redis

    client = redis.Redis.from_url(redis_server.url)
    try:
        stored = [f"{k!r}={client.get(k)!r}" for k in client.scan_iter(count=1000)]
    finally:
        client.close()
    con = sqlite3.connect(sqlite_path)
    try:
        stored += list(con.iterdump())
    finally:
        con.close()
    stored.append(sqlite_path.read_bytes().decode("latin-1"))
    return stored


def test_api_key_and_redis_password_never_shown(
    cohere_server: CohereLikeServer,
    locked_redis: RedisServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sqlite_path = tmp_path / "scores.sqlite"
    cache = TieredCache(MemoryCache(), SQLiteCache(sqlite_path), RedisCache(locked_redis.url))
    rr = Reranker(
        "cohere",
        base_url=cohere_server.url,
        api_key=API_KEY,
        cache=cache,
        backoff=0.01,
        max_retries=1,
    )
    passthrough = Reranker(rr.backend, cache=cache, on_error="passthrough")
    caplog.set_level(logging.DEBUG)
    shown: list[object] = []
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        ranked = rr.rerank(QUERY, DOCS)
        assert [r.index for r in ranked][:1] == [0] and all(r.scored for r in ranked)
        # The server fails and echoes the Authorization header back in its error body.
        cohere_server.default = Action(shape="status", status=500, echo_auth=True)
        with pytest.raises(APIError) as info:
            rr.rerank("another query", DOCS)
        shown += [str(info.value), "".join(traceback.format_exception(info.value))]
        out = passthrough.rerank("a third query", DOCS)
        assert [r.scored for r in out] == [False] * len(DOCS)
        cohere_server.default = Action(shape="status", status=401, echo_auth=True)
        with pytest.raises(APIError) as info:
            asyncio.run(rr.arerank("a fourth query", DOCS))
        shown += [str(info.value), "".join(traceback.format_exception(info.value))]
    assert cohere_server.rerank_requests[0].headers["authorization"] == f"Bearer {API_KEY}"
    shown += [str(w.message) for w in seen]
    shown += [caplog.text, *(r.getMessage() for r in caplog.records)]
    shown += [repr(rr), repr(passthrough), repr(rr.backend), str(rr.backend), rr.fingerprint]
    shown += [repr(vars(rr)), repr(cache.tiers), *(repr(t.inner) for t in cache.tiers)]
    # The scores of the first call are in every tier; no tier holds any secret.
    contents = _cache_contents(locked_redis, sqlite_path)
    assert len(contents) > 3
    shown += contents
    assert_no_secret(*shown)
    rr.close()


def test_cache_keys_do_not_depend_on_the_api_key(
    cohere_server: CohereLikeServer, tmp_path: Path
) -> None:
    """The key is not part of the scoring function: rotating it keeps the cache, and no
    key-derived value ends up in a cache key."""
    cache = MemoryCache()
    a = Reranker("cohere", base_url=cohere_server.url, api_key=API_KEY, cache=cache)
    a.rerank(QUERY, DOCS)
    b = Reranker("cohere", base_url=cohere_server.url, api_key="rotated-key", cache=cache)
    b.rerank(QUERY, DOCS)
    assert b.pairs_scored == 0
    assert_no_secret(*cache._data.keys(), a.fingerprint)


def test_wrong_redis_password_warns_without_showing_it(locked_redis: RedisServer) -> None:
    from helpers import KeywordBackend

    wrong = "wrong-pw-SECRET-9"
    url = f"redis://:{wrong}@127.0.0.1:{locked_redis.port}/0"
    rr = Reranker(KeywordBackend(), cache=GuardedCache(RedisCache(url)))
    with pytest.warns(CacheWarning) as record:
        assert len(rr.rerank(QUERY, DOCS)) == len(DOCS)
    # only the CacheWarning: a ResourceWarning from an earlier test's garbage may come first
    message = next(str(w.message) for w in record if issubclass(w.category, CacheWarning))
    assert "AuthenticationError" in message or "invalid" in message.lower()
    assert wrong not in message and wrong not in repr(rr.cache) and REDIS_PASSWORD not in message
    # With no password at all the server refuses too, and says so without secrets.
    bare = Reranker(
        KeywordBackend(), cache=GuardedCache(RedisCache(f"redis://127.0.0.1:{locked_redis.port}"))
    )
    with pytest.warns(CacheWarning, match="(?i)auth"):
        bare.rerank(QUERY, DOCS)


def test_adapters_serialize_no_secret(
    cohere_server: CohereLikeServer, locked_redis: RedisServer
) -> None:
    dumped: list[Any] = []
    lc, li = installed("langchain_core"), installed("llama_index.core")
    if not (lc or li):
        pytest.skip(f"{NOT_INSTALLED} langchain_core, llama_index.core (no adapter framework)")
    # An installed framework whose adapter fails to import is an error, not a skip.
    RerankCompressor = need("langchain_rerank").RerankCompressor if lc else None
    RerankPostprocessor = need("llamaindex_rerank").RerankPostprocessor if li else None
    options = {
        "backend": "cohere",
        "base_url": cohere_server.url,
        "api_key": API_KEY,
        "cache": RedisCache(locked_redis.url),
        "top_n": 2,
    }
    if RerankCompressor is not None:
        lc = RerankCompressor(**options)
        dumped += [repr(lc), str(lc), json.dumps(lc.model_dump(), default=str)]
    if RerankPostprocessor is not None:
        li = RerankPostprocessor(**options)
        dumped += [repr(li), li.to_json(), json.dumps(li.to_dict(), default=str)]
    assert_no_secret(*dumped)
