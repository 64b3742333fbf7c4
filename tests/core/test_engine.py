from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import threading
import time
import warnings
from pathlib import Path

import pytest
from helpers import KeywordBackend
from rerank_core import (
    BACKENDS,
    BackendError,
    BackendInfo,
    ConfigError,
    EmptyQueryError,
    InputError,
    InvalidTextError,
    MemoryCache,
    RankedText,
    Reranker,
    SQLiteCache,
    WindowConfig,
    register_backend,
)

TEXTS = ["the cat sat on the mat", "a dog barks loudly", "a cat and a dog", "nothing here"]


def filler(n: int, word: str = "lorem") -> str:
    return " ".join(f"{word}{i}" for i in range(n))


def test_rerank_orders_best_first_with_indices(keyword_backend: KeywordBackend) -> None:
    rr = Reranker(keyword_backend)
    out = rr.rerank("cat dog", TEXTS)
    assert [r.index for r in out] == [2, 0, 1, 3]
    assert [r.score for r in out] == [2.0, 1.0, 1.0, 0.0]
    assert all(isinstance(r, RankedText) and r.text == TEXTS[r.index] for r in out)
    assert out[0].window == (0, len(TEXTS[2])) and out[0].n_windows == 1


def test_top_n_and_min_score(keyword_backend: KeywordBackend) -> None:
    rr = Reranker(keyword_backend)
    assert [r.index for r in rr.rerank("cat dog", TEXTS, top_n=2)] == [2, 0]
    assert [r.index for r in rr.rerank("cat dog", TEXTS, min_score=1.0)] == [2, 0, 1]
    assert len(Reranker(KeywordBackend(), top_n=1).rerank("cat", TEXTS)) == 1


def test_score_is_input_order(keyword_backend: KeywordBackend) -> None:
    assert Reranker(keyword_backend).score("cat dog", TEXTS) == [1.0, 1.0, 2.0, 0.0]


def test_phrase_after_token_2000_found_by_chunk_max_missed_by_first_window() -> None:
    long_text = filler(2100) + " the zebra migration phrase " + filler(300, "ipsum")
    texts = ["short text about nothing", long_text]
    query = "zebra migration"
    chunked = Reranker(KeywordBackend(max_length=128))
    best = chunked.rerank(query, texts)[0]
    assert best.index == 1 and best.score == 2.0
    assert best.n_windows > 20 and not best.truncated
    assert "zebra migration" in best.window_text
    first_only = Reranker(KeywordBackend(max_length=128), window=WindowConfig(max_windows=1))
    res = {r.index: r for r in first_only.rerank(query, texts)}
    assert res[1].score == 0.0 and res[1].truncated and res[1].n_windows == 1


def test_chunk_max_equals_max_of_windows_scored_one_by_one() -> None:
    backend = KeywordBackend(max_length=40)
    text = filler(200) + " alpha beta " + filler(50) + " alpha " + filler(60)
    rr = Reranker(backend, cache=None)
    r = rr.rerank("alpha beta", [text])[0]
    windows = {tuple(p) for call in backend.calls for p in call}
    solo = [KeywordBackend().score_pairs([w])[0] for w in windows]
    assert r.score == max(solo) == 2.0


@pytest.mark.parametrize(("how", "expected"), [("mean", None), ("first", 0.0), ("topk_mean", 1.5)])
def test_aggregations(how: str, expected: float | None) -> None:
    text = filler(30) + " alpha beta " + filler(30) + " alpha " + filler(30)
    rr = Reranker(KeywordBackend(max_length=30), window=WindowConfig(overlap=0, aggregate=how))
    r = rr.rerank("alpha beta", [text])[0]
    if expected is not None:
        assert r.score == expected
    else:
        assert 0.0 < r.score < 2.0
    if how != "first":  # "first" reports the window its score comes from
        assert "alpha" in r.window_text


def test_identical_windows_scored_once(keyword_backend: KeywordBackend) -> None:
    rr = Reranker(keyword_backend, cache=None)
    out = rr.rerank("cat", ["same text", "same text", "other"])
    assert keyword_backend.pairs_seen == 2
    assert len(out) == 3


def test_rerank_many_is_one_batched_pass(keyword_backend: KeywordBackend) -> None:
    rr = Reranker(keyword_backend, cache=None, batch_size=64)
    out = rr.rerank_many([("cat", TEXTS), ("dog", TEXTS[:2])], top_n=1)
    assert len(keyword_backend.calls) == 1 and keyword_backend.pairs_seen == 6
    assert [r.index for r in out[0]] == [0] and [r.index for r in out[1]] == [1]


def test_batches_are_length_sorted_and_capped() -> None:
    backend = KeywordBackend(max_length=64)
    texts = [filler(n) for n in (3, 40, 10, 30, 20, 5)]
    Reranker(backend, cache=None, batch_size=2).rerank("q", texts)
    assert [len(c) for c in backend.calls] == [2, 2, 2]
    lengths = [len(p[1].split()) for c in backend.calls for p in c]
    assert lengths == sorted(lengths, reverse=True)


def test_results_independent_of_batch_size() -> None:
    texts = [filler(n) + " cat" for n in (3, 80, 10, 200, 20, 5)]
    a = Reranker(KeywordBackend(max_length=32), batch_size=1).rerank("cat q", texts)
    b = Reranker(KeywordBackend(max_length=32), batch_size=7).rerank("cat q", texts)
    assert a == b


def test_bad_input_typed_errors(keyword_backend: KeywordBackend) -> None:
    rr = Reranker(keyword_backend)
    for q in ("", "   ", None, 3):
        with pytest.raises(EmptyQueryError):
            rr.rerank(q, TEXTS)  # type: ignore[arg-type]
    with pytest.raises(InvalidTextError) as ei:
        rr.rerank("q", ["ok", None, "ok"])  # type: ignore[list-item]
    assert ei.value.index == 1 and "texts[1]" in str(ei.value)
    with pytest.raises(InvalidTextError) as ei:
        rr.rerank("q", ["ok", "ok", b"bytes"])  # type: ignore[list-item]
    assert ei.value.index == 2
    with pytest.raises(InputError):
        rr.rerank("q", "a string, not a list")
    assert issubclass(InvalidTextError, ValueError) and issubclass(EmptyQueryError, ValueError)
    assert keyword_backend.calls == []


def test_empty_list_no_model_call(keyword_backend: KeywordBackend) -> None:
    rr = Reranker(keyword_backend)
    assert rr.rerank("q", []) == [] and rr.score("q", []) == []
    assert keyword_backend.calls == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"top_n": 0},
        {"top_n": -1},
        {"batch_size": 0},
        {"batch_size": -3},
        {"window": WindowConfig(overlap=40)},  # budget at max_length=64 is < 40
        {"normalize": "softmax"},
        {"on_error": "ignore"},
        {"cache": 42},
    ],
)
def test_config_errors_at_construction(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        Reranker(KeywordBackend(max_length=64), **kwargs)  # type: ignore[arg-type]


def test_top_n_zero_per_call_is_config_error(keyword_backend: KeywordBackend) -> None:
    with pytest.raises(ConfigError):
        Reranker(keyword_backend).rerank("q", TEXTS, top_n=0)


def test_callers_list_is_not_mutated(keyword_backend: KeywordBackend) -> None:
    texts = list(TEXTS)
    snapshot = list(texts)
    Reranker(keyword_backend).rerank("cat", texts, top_n=1)
    assert texts == snapshot


def test_normalize_sigmoid(keyword_backend: KeywordBackend) -> None:
    raw = Reranker(KeywordBackend()).score("cat dog", TEXTS)
    norm = Reranker(keyword_backend, normalize="sigmoid").score("cat dog", TEXTS)
    assert norm == pytest.approx([1 / (1 + math.exp(-s)) for s in raw])


def test_backend_failure_raises_typed_error(keyword_backend: KeywordBackend) -> None:
    keyword_backend.fail = RuntimeError("boom")
    with pytest.raises(BackendError, match="boom"):
        Reranker(keyword_backend).rerank("cat", TEXTS)


def test_passthrough_returns_every_input_in_order(keyword_backend: KeywordBackend) -> None:
    keyword_backend.fail = RuntimeError("boom")
    rr = Reranker(keyword_backend, on_error="passthrough")
    out = rr.rerank("cat", TEXTS)
    assert [r.index for r in out] == [0, 1, 2, 3]
    assert all(not r.scored and math.isnan(r.score) for r in out)
    assert [r.index for r in rr.rerank("cat", TEXTS, top_n=2)] == [0, 1]


def test_long_query_is_cut_not_crashing() -> None:
    rr = Reranker(KeywordBackend(max_length=64))
    out = rr.rerank(filler(500) + " cat", TEXTS)
    assert len(out) == 4


def test_lone_surrogates_and_control_chars_are_scored(keyword_backend: KeywordBackend) -> None:
    texts = ["cat \ud800 broken", "\x00\x01 cat \x7f", ""]
    out = Reranker(keyword_backend).score("cat", texts)
    assert out == [1.0, 1.0, 0.0]


async def test_async_matches_sync_and_does_not_block_loop() -> None:
    class SlowBackend(KeywordBackend):
        def score_pairs(self, pairs):  # type: ignore[no-untyped-def]
            time.sleep(0.3)
            return super().score_pairs(pairs)

    rr = Reranker(SlowBackend(), cache=None)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    t = asyncio.create_task(ticker())
    out = await rr.arerank("cat dog", TEXTS)
    t.cancel()
    assert ticks >= 10  # the loop kept running while the model worked
    assert out == Reranker(KeywordBackend()).rerank("cat dog", TEXTS)
    assert await rr.ascore("cat", TEXTS[:2]) == [1.0, 0.0]
    many = await rr.arerank_many([("cat", TEXTS), ("dog", TEXTS)], top_n=1)
    assert [m[0].index for m in many] == [0, 1]


async def test_async_backend_is_awaited_without_threads() -> None:
    class AsyncKeyword(KeywordBackend):
        def __init__(self) -> None:
            super().__init__()
            self.async_calls = 0
            self.threads: set[int] = set()

        async def ascore_pairs(self, pairs):  # type: ignore[no-untyped-def]
            self.async_calls += 1
            self.threads.add(threading.get_ident())
            await asyncio.sleep(0)
            return KeywordBackend.score_pairs(self, pairs)

    b = AsyncKeyword()
    out = await Reranker(b).arerank("cat", TEXTS)
    assert b.async_calls == 1 and b.threads == {threading.get_ident()}
    assert out[0].index in (0, 2)


def test_threads_share_one_reranker(keyword_backend: KeywordBackend) -> None:
    rr = Reranker(keyword_backend)
    expected = Reranker(KeywordBackend()).rerank("cat", TEXTS)
    results: list[list[RankedText]] = []

    def work() -> None:
        results.append(rr.rerank("cat", TEXTS))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 8


def test_backend_preferred_batch_size_is_the_default() -> None:
    class Big(KeywordBackend):
        info = BackendInfo(preferred_batch_size=1000)

    b = Big()
    rr = Reranker(b, cache=None)
    assert rr.batch_size == 1000
    rr.rerank("cat", [f"cat {i}" for i in range(300)])
    assert len(b.calls) == 1
    assert Reranker(Big(), batch_size=8).batch_size == 8
    assert Reranker(KeywordBackend()).batch_size == 32


class Closable(KeywordBackend):
    def __init__(self, **kw: object) -> None:
        super().__init__()
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


def test_close_releases_what_the_engine_built_and_leaves_what_was_passed_in(
    tmp_path: Path,
) -> None:
    b = Closable()
    path = tmp_path / "c.sqlite"
    with Reranker(b, cache=path) as rr:  # SQLite built by the engine from a path
        rr.rerank("cat", TEXTS)
        assert Path(f"{path}-wal").exists()  # the engine's SQLite connection is open
        assert rr.describe()["engine"]["owns_cache"] and not rr.describe()["engine"]["owns_backend"]
    assert b.closed == 0  # passed in: the caller's to close
    assert not Path(f"{path}-wal").exists()  # the last connection closed: WAL checkpointed away

    register_backend("closable-test", "test_engine:Closable")
    try:
        with Reranker("closable-test", cache=None) as rr:
            built = rr.backend
            assert isinstance(built, Closable) and rr.describe()["engine"]["owns_backend"]
        assert built.closed == 1  # built from a name: the engine's to close
    finally:
        BACKENDS.pop("closable-test")


def test_a_passed_in_cache_stays_open_for_other_engines(tmp_path: Path) -> None:
    shared_sqlite = SQLiteCache(tmp_path / "shared.sqlite")
    memory = MemoryCache()
    for cache in (shared_sqlite, memory):
        first, second = (
            Reranker(KeywordBackend(), cache=cache),
            Reranker(KeywordBackend(), cache=cache),
        )
        first.rerank("cat", TEXTS)
        first.close()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a closed cache would warn (CacheWarning)
            second.rerank("cat", TEXTS)
        assert second.pairs_scored == 0 and second.cache_stats.hits == len(TEXTS)
        assert second.cache_stats.errors == 0
    shared_sqlite.close()


def test_a_failed_construction_closes_the_backend_it_built() -> None:
    register_backend("closable-test", "test_engine:Closable")
    built: list[Closable] = []
    orig = Closable.__init__

    def record(self: Closable, **kw: object) -> None:
        orig(self, **kw)
        built.append(self)

    try:
        Closable.__init__ = record  # type: ignore[method-assign]
        with pytest.raises(ConfigError, match="overlap"):
            Reranker("closable-test", window=WindowConfig(overlap=60))
        assert [b.closed for b in built] == [1]
    finally:
        Closable.__init__ = orig  # type: ignore[method-assign]
        BACKENDS.pop("closable-test")


def test_configuration_is_frozen(keyword_backend: KeywordBackend) -> None:
    rr = Reranker(keyword_backend, batch_size=4, top_n=2)
    for name, value in (("batch_size", 8), ("top_n", 1), ("on_error", "passthrough")):
        with pytest.raises(AttributeError):
            setattr(rr, name, value)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rr.config.batch_size = 8  # type: ignore[misc]
    assert rr.config.batch_size == 4 and rr.config.top_n == 2
    assert rr.config.max_batch_tokens == 4 * keyword_backend.max_length
    assert len(rr.rerank("cat", TEXTS)) == 2


def test_describe_has_backend_facts_and_engine_settings(keyword_backend: KeywordBackend) -> None:
    class Described(KeywordBackend):
        info = BackendInfo(model_id="kw/v1", micro_batching=True)

        def describe(self) -> dict[str, object]:
            return {"backend": "keyword", "model_id": "kw/v1", "device": "cpu"}

    d = Reranker(Described(), batch_size=8, window=WindowConfig(overlap=5)).describe()
    assert d["backend"] == "keyword" and d["device"] == "cpu" and d["model_id"] == "kw/v1"
    engine = d["engine"]
    assert engine["scorer"] == "micro-batched" and engine["batch_size"] == 8
    assert engine["overlap"] == 5 and engine["window"]["overlap"] == 5
    assert engine["owns_cache"] and not engine["owns_backend"]
    json.dumps(d)  # plain data
    plain = Reranker(keyword_backend, cache=None).describe()  # no describe(): the basics
    assert plain["backend"] == "KeywordBackend" and plain["model_id"] is None
    assert plain["engine"]["scorer"] == "micro-batched"  # declares nothing, not async
    assert plain["engine"]["cache"] is None


@pytest.mark.parametrize(
    "kwargs", [{"preferred_batch_size": 0}, {"micro_batching": 1}, {"model_id": 3}]
)
def test_bad_backend_info_is_a_config_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        BackendInfo(**kwargs)  # type: ignore[arg-type]


def test_a_non_backend_object_is_a_config_error_naming_the_protocol() -> None:
    with pytest.raises(ConfigError, match=r"rerank_core\.Backend \(fingerprint"):
        Reranker(object())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="only apply when backend is a name"):
        Reranker(KeywordBackend(), model="x")
