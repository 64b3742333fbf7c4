"""``Reranker.close()`` closes only what the engine created: a cache (or backend) the caller
passed in stays open for every other engine that shares it — here a real redis-server."""

from __future__ import annotations

import warnings

import pytest
from helpers import KeywordBackend, need
from redis_server import redis_server_fixture, redis_url_fixture  # noqa: F401
from rerank_core import (
    BackendError,
    CacheWarning,
    MemoryCache,
    MissingDependencyError,
    RedisCache,
    Reranker,
    TieredCache,
)

QUERY = "red apple pie"
TEXTS = ["an apple a day", "red cars are fast", "apple pie with red apple slices", "pie"]


@pytest.mark.parametrize("tiered", [False, True], ids=["redis", "memory+redis"])
def test_closing_one_engine_leaves_a_shared_redis_cache_open(redis_url: str, tiered: bool) -> None:
    need("redis")
    redis_cache = RedisCache(redis_url, namespace="shared")
    cache = TieredCache(MemoryCache(), redis_cache) if tiered else redis_cache
    first = Reranker(KeywordBackend(), cache=cache)
    second = Reranker(KeywordBackend(), cache=cache)
    expected = first.rerank(QUERY, TEXTS)
    first.close()
    with Reranker(KeywordBackend(), cache=cache) as third:  # a context manager closes too
        third.rerank("another query", TEXTS)
    assert redis_cache.ping()  # still open: no "RedisCache is closed"
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)  # a closed cache would warn on every call
        assert second.rerank(QUERY, TEXTS) == expected
        assert second.rerank("another query", TEXTS)
    assert second.pairs_scored == 0  # everything came from the shared cache
    assert second.cache_stats.errors == 0
    second.close()
    # a fresh process-level reader sees the same scores: the cache serves on after both closed
    other = Reranker(KeywordBackend(), cache=RedisCache(redis_url, namespace="shared"))
    other.rerank(QUERY, TEXTS)
    assert other.pairs_scored == 0
    other.close()
    redis_cache.close()  # the caller closes what the caller made


def test_closing_the_cache_itself_is_the_callers_choice(redis_url: str) -> None:
    need("redis")
    cache = RedisCache(redis_url, namespace="closed-by-caller")
    rr = Reranker(KeywordBackend(), cache=cache)
    rr.rerank(QUERY, TEXTS)
    cache.close()
    with pytest.warns(CacheWarning, match="closed"):  # warned once, reranking goes on
        assert rr.rerank(QUERY, TEXTS) == Reranker(KeywordBackend(), cache=None).rerank(
            QUERY, TEXTS
        )
    assert rr.cache_stats.errors == 1


def test_missing_redis_is_a_dependency_error_not_a_backend_error() -> None:
    assert issubclass(MissingDependencyError, ImportError)
    assert not issubclass(MissingDependencyError, BackendError)
