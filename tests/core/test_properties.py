"""Property tests (hypothesis): windows and rankings hold their promises on any input.

Example counts are bounded and the search is derandomized so CI stays fast and
repeatable; raise ``CROSSRANK_HYPOTHESIS_EXAMPLES`` locally to search harder.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from helpers import KeywordBackend, WordTokenizer, need
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis_server import REDIS_SERVER, redis_server_fixture  # noqa: F401  (fixture)
from rerank_core import (
    MemoryCache,
    RankedText,
    RedisCache,
    Reranker,
    SQLiteCache,
    TieredCache,
    WindowConfig,
)
from rerank_core.windows import Window, make_windows

SCALE = float(os.environ.get("CROSSRANK_HYPOTHESIS_EXAMPLES", "1"))


def examples(n: int) -> Any:
    return settings(
        max_examples=max(1, int(n * SCALE)),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# ---------------------------------------------------------------- strategies

WORDS = ["apple", "red", "pie", "the", "of", "x", "Zebra", "ünïcödé", "naïve", "42", "e-mail"]
SCRIPTS = (
    "abcxyz ABC 0123 .,;:!?-'\"()"  # ASCII
    "éüñçß ÅØ"  # Latin with accents
    "абвгд"  # Cyrillic
    "αβγ"  # Greek
    "中文字符日本語"  # CJK
    "한국어븽"  # Hangul (one character, several tokens)
    "العربية"  # Arabic
    "हिन्दी"  # Devanagari with combining signs
    "😀👍🏽🇫🇷"  # emoji, skin tone, flag
    "\u0301\u0308\u200b\u200d\ufeff\u00ad"  # combining marks, zero-width chars, soft hyphen
    "\t\n\r\x0b\x0c\x00\x07\x1b"  # whitespace and control characters
)

word_text = st.lists(
    st.one_of(st.sampled_from(WORDS), st.sampled_from([" ", "  ", "\n", "\t "])), max_size=120
).map("".join)
mixed_text = st.text(alphabet=st.sampled_from(SCRIPTS), max_size=200)
any_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)),  # the engine replaces lone surrogates
    max_size=150,
)


# ---------------------------------------------------------------- window invariants


def _inside(span: tuple[int, int], w: Window) -> bool:
    return w.start <= span[0] and span[1] <= w.end


def _all_cuttable(spans: Sequence[tuple[int, int]]) -> bool:
    return all(b[0] >= a[1] for a, b in itertools.pairwise(spans))


def check_windows(
    spans: Sequence[tuple[int, int]],
    length: int,
    budget: int,
    overlap: int,
    windows: Sequence[Window],
) -> None:
    assert windows, "every text gets at least one window"
    # Cover every character: start at 0, end at the end, no gaps, always advancing.
    assert windows[0].start == 0 and windows[-1].end == length
    for a, b in itertools.pairwise(windows):
        assert a.start < b.start <= a.end <= b.end
    if not spans:
        assert [(w.start, w.end, w.n_tokens) for w in windows] == [(0, length, 0)]
        return
    # Every token lies wholly inside some window.
    for sp in spans:
        assert any(_inside(sp, w) for w in windows), sp
    for w in windows:
        inside = [i for i, sp in enumerate(spans) if _inside(sp, w)]
        assert w.n_tokens == len(inside), (w, inside)
        # The token budget holds, unless one single character alone is longer.
        if w.n_tokens > budget:
            assert len({spans[i][0] for i in inside}) == 1, (w, budget)
    # Overlap: consecutive windows share at least `overlap` tokens (more when the
    # next start snapped back to a word start, by at most 8 tokens).
    if _all_cuttable(spans):
        for a, b in itertools.pairwise(windows):
            shared = sum(1 for sp in spans if _inside(sp, a) and _inside(sp, b))
            assert overlap <= shared <= overlap + 8, (a, b, shared)
            assert a.n_tokens == budget  # only the last window may be short


@pytest.fixture(scope="module")
def hf_tokenizer(minilm_bi_encoder_path: Path) -> Any:
    need("transformers")
    from rerank_core.backends.runtime.hf import HFTokenizer
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(minilm_bi_encoder_path))
    return hf, HFTokenizer(hf)


@examples(300)
@given(text=word_text, budget=st.integers(1, 30), data=st.data())
def test_windows_with_word_tokens(text: str, budget: int, data: st.DataObject) -> None:
    overlap = data.draw(st.integers(0, budget - 1), label="overlap")
    spans = WordTokenizer().token_spans([text])[0]
    windows, truncated = make_windows(spans, len(text), budget=budget, overlap=overlap)
    assert not truncated
    check_windows(spans, len(text), budget, overlap, windows)


@examples(300)
@given(
    pieces=st.lists(st.tuples(st.integers(0, 3), st.integers(1, 3), st.booleans()), max_size=60),
    budget=st.integers(1, 12),
    data=st.data(),
)
def test_windows_with_arbitrary_span_layouts(
    pieces: list[tuple[int, int, bool]], budget: int, data: st.DataObject
) -> None:
    """Synthetic tokenizers: gaps, adjacent pieces, several tokens on one character."""
    layout: list[tuple[int, int]] = []
    for gap, width, same_char in pieces:
        if same_char and layout:
            layout.append(layout[-1])  # one more token on the same character(s)
        else:
            start = (layout[-1][1] if layout else 0) + gap
            layout.append((start, start + width))
    length = (layout[-1][1] if layout else 0) + data.draw(st.integers(0, 3), label="tail")
    overlap = data.draw(st.integers(0, budget - 1), label="overlap")
    windows, _ = make_windows(layout, length, budget=budget, overlap=overlap)
    check_windows(layout, length, budget, overlap, windows)


@examples(60)
@given(text=st.one_of(mixed_text, any_text), budget=st.integers(2, 40), data=st.data())
def test_windows_with_the_real_tokenizer(
    hf_tokenizer: Any, text: str, budget: int, data: st.DataObject
) -> None:
    _, tok = hf_tokenizer
    overlap = data.draw(st.integers(0, budget - 1), label="overlap")
    spans = tok.token_spans([text])[0]
    windows, _ = make_windows(spans, len(text), budget=budget, overlap=overlap)
    check_windows(spans, len(text), budget, overlap, windows)


@pytest.mark.parametrize(
    "text",
    ["x븽 abc 븽븽 한국어", "👍🏽👍🏽 ok 🇫🇷🇫🇷", "ǅungla ﬁne ẞ", "0RZ0:0RZ0 e-mail naïve"],
)
def test_windows_never_split_a_character_with_the_real_tokenizer(
    hf_tokenizer: Any, text: str
) -> None:
    """Hangul syllables become several jamo tokens on one character: a window must
    never end between them (it would hold an empty span and overflow the next one)."""
    _, tok = hf_tokenizer
    spans = tok.token_spans([text])[0]
    for budget in range(1, 12):
        for overlap in range(budget):
            windows, _ = make_windows(spans, len(text), budget=budget, overlap=overlap)
            check_windows(spans, len(text), budget, overlap, windows)


@examples(60)
@given(text=word_text, budget=st.integers(1, 20), cap=st.integers(1, 5), data=st.data())
def test_max_windows_is_a_prefix_and_reports_truncation(
    text: str, budget: int, cap: int, data: st.DataObject
) -> None:
    overlap = data.draw(st.integers(0, budget - 1), label="overlap")
    spans = WordTokenizer().token_spans([text])[0]
    full, _ = make_windows(spans, len(text), budget=budget, overlap=overlap)
    capped, truncated = make_windows(
        spans, len(text), budget=budget, overlap=overlap, max_windows=cap
    )
    assert capped == full[:cap]
    assert truncated == (len(full) > cap)


def test_real_passages_fit_the_model_when_re_tokenized(hf_tokenizer: Any) -> None:
    """On real scientific text at real budgets, every window's own tokenization fits
    the budget: the model never silently truncates a window. (A window cut inside a
    very long word can re-tokenize a little longer; at budget 16 on this sample that
    happens to 4 windows in ~14k, at the real budgets below to none.)"""
    import json

    hf, tok = hf_tokenizer
    sample = Path(__file__).resolve().parents[2] / "shared/rerank_core/data/scifact_sample.jsonl"
    docs = [json.loads(line) for line in sample.read_text(encoding="utf-8").splitlines()]
    texts = [f"{d.get('title', '')} {d['text']}" for d in docs[:120]]
    all_spans = tok.token_spans(texts)
    for budget, overlap in ((64, 16), (250, 64)):
        for text, spans in zip(texts, all_spans, strict=True):
            windows, _ = make_windows(spans, len(text), budget=budget, overlap=overlap)
            check_windows(spans, len(text), budget, overlap, windows)
            for w in windows:
                ids = hf(text[w.start : w.end], add_special_tokens=False)["input_ids"]
                assert len(ids) <= budget


# ---------------------------------------------------------------- ranking invariants

short_text = st.lists(st.sampled_from(WORDS[:8]), min_size=0, max_size=40).map(" ".join)
text_lists = st.lists(st.one_of(short_text, st.sampled_from(["", "   "])), max_size=12)
query_text = st.lists(st.sampled_from(WORDS[:8]), min_size=1, max_size=5).map(" ".join)


def make_reranker(**kw: Any) -> Reranker:
    kw.setdefault("cache", None)
    return Reranker(KeywordBackend(max_length=24), **kw)


def by_text(ranked: Sequence[RankedText]) -> dict[int, float]:
    return {r.index: r.score for r in ranked}


@examples(150)
@given(
    query=query_text,
    texts=text_lists,
    top_n=st.one_of(st.none(), st.integers(1, 15)),
    min_score=st.one_of(st.none(), st.integers(-1, 6).map(float)),
)
def test_rerank_is_a_permutation_cut_by_min_score_then_top_n(
    query: str, texts: list[str], top_n: int | None, min_score: float | None
) -> None:
    rr = make_reranker()
    full = rr.rerank(query, texts)
    assert sorted(r.index for r in full) == list(range(len(texts)))
    assert all(r.text is texts[r.index] for r in full)
    assert all(r.scored and math.isfinite(r.score) for r in full)
    keys = [(-r.score, r.index) for r in full]
    assert keys == sorted(keys)  # best first, ties by input position
    cut = rr.rerank(query, texts, top_n=top_n, min_score=min_score)
    expected = [r for r in full if min_score is None or r.score >= min_score]
    assert cut == expected[:top_n]
    assert rr.score(query, texts) == [by_text(full)[i] for i in range(len(texts))]


@examples(100)
@given(query=query_text, texts=text_lists, data=st.data())
def test_ranking_is_invariant_to_input_order_except_ties(
    query: str, texts: list[str], data: st.DataObject
) -> None:
    order = data.draw(st.permutations(range(len(texts))), label="order")
    shuffled = [texts[i] for i in order]
    rr = make_reranker()
    a = rr.rerank(query, texts)
    b = rr.rerank(query, shuffled)
    # Each text keeps its score wherever it stands.
    assert [by_text(b)[j] for j in range(len(texts))] == [by_text(a)[i] for i in order]
    # Same score sequence; within one score level, the same texts (tied order may differ).
    assert [r.score for r in a] == [r.score for r in b]
    for score, group in itertools.groupby(a, key=lambda r: r.score):
        level_a = sorted(r.text for r in group)
        level_b = sorted(r.text for r in b if r.score == score)
        assert level_a == level_b


@examples(100)
@given(
    query=query_text,
    texts=text_lists,
    batch_size=st.integers(1, 40),
    max_batch_tokens=st.one_of(st.none(), st.integers(1, 400)),
    aggregate=st.sampled_from(["max", "mean", "first", "topk_mean"]),
)
def test_scores_do_not_depend_on_batch_size(
    query: str,
    texts: list[str],
    batch_size: int,
    max_batch_tokens: int | None,
    aggregate: Any,
) -> None:
    window = WindowConfig(aggregate=aggregate, overlap=3)
    ref = make_reranker(batch_size=1, window=window).rerank(query, texts)
    got = make_reranker(
        batch_size=batch_size, max_batch_tokens=max_batch_tokens, window=window
    ).rerank(query, texts)
    assert got == ref


@pytest.fixture(scope="module")
def cache_factories(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Any:
    """Fresh caches of every kind: memory, SQLite, memory+SQLite and, when a redis-server
    is installed, Redis alone and memory+Redis (each with its own namespace)."""
    base = tmp_path_factory.mktemp("prop-caches")
    factories: dict[str, Any] = {
        "memory": MemoryCache,
        "sqlite": lambda: SQLiteCache(base / f"{uuid.uuid4().hex}.sqlite"),
        "memory+sqlite": lambda: TieredCache(
            MemoryCache(), SQLiteCache(base / f"{uuid.uuid4().hex}.sqlite")
        ),
    }
    if REDIS_SERVER is not None and importlib.util.find_spec("redis") is not None:
        server = request.getfixturevalue("redis_server")
        factories["redis"] = lambda: RedisCache(server.url, namespace=uuid.uuid4().hex)
        factories["memory+redis"] = lambda: TieredCache(
            MemoryCache(), RedisCache(server.url, namespace=uuid.uuid4().hex)
        )
    return factories


@examples(60)
@given(query=query_text, texts=text_lists, data=st.data())
def test_scores_do_not_depend_on_cache_state(
    cache_factories: dict[str, Any], query: str, texts: list[str], data: st.DataObject
) -> None:
    cold = make_reranker().rerank(query, texts)
    kind = data.draw(st.sampled_from(sorted(cache_factories)), label="cache")
    cache = cache_factories[kind]()
    # Warm the cache with a random part of the work (and unrelated entries).
    warm_part = (
        data.draw(st.lists(st.sampled_from(texts), unique=True), label="warm") if texts else []
    )
    warmer = make_reranker(cache=cache)
    warmer.rerank(query, warm_part)
    warmer.rerank("unrelated words", texts)
    rr = make_reranker(cache=cache)
    first = rr.rerank(query, texts)
    second = rr.rerank(query, texts)  # now fully cached
    assert first == cold and second == cold
    assert rr.cache_stats.errors == 0
    closer = getattr(cache, "close", None)
    if callable(closer):
        closer()


# ---------------------------------------------------------------- the same, on the real model


@pytest.mark.model
@examples(4)
@given(
    query=query_text,
    texts=st.lists(st.one_of(short_text, mixed_text), min_size=1, max_size=5),
    batch_size=st.integers(1, 8),
    data=st.data(),
)
def test_real_model_scores_independent_of_batch_order_and_cache(
    minilm_reranker_backend: Any,
    query: str,
    texts: list[str],
    batch_size: int,
    data: st.DataObject,
) -> None:
    ref = Reranker(minilm_reranker_backend, batch_size=1, cache=None).score(query, texts)
    got = Reranker(minilm_reranker_backend, batch_size=batch_size, cache=None).score(query, texts)
    assert got == pytest.approx(ref, abs=1e-5)  # fp32 padding noise only (~5e-8 measured)
    order = data.draw(st.permutations(range(len(texts))), label="order")
    shuffled = Reranker(minilm_reranker_backend, batch_size=batch_size, cache=None).score(
        query, [texts[i] for i in order]
    )
    assert shuffled == pytest.approx([ref[i] for i in order], abs=1e-5)
    cached = Reranker(minilm_reranker_backend, batch_size=batch_size, cache="memory")
    first = cached.score(query, texts)
    assert cached.score(query, texts) == first  # a cached score is the very same float
    assert cached.pairs_scored > 0 and cached.cache_stats.hits >= cached.pairs_scored
