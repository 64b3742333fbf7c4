"""Hostile text through the real MiniLM backend: each input gets a real score or a
clear typed error, never a crash inside the tokenizer or the model."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import pytest
from rerank_core import (
    EmptyQueryError,
    InputError,
    InvalidTextError,
    RankedText,
    Reranker,
    WindowConfig,
)

pytestmark = pytest.mark.model

MILLION = 1_000_000

HOSTILE: dict[str, str] = {
    "empty": "",
    "whitespace": " \t\n\r\x0b\x0c \u00a0\u2003\u3000",
    "nul and controls": "apple\x00pie\x01\x02\x03\x07\x08\x1b[31mred\x1b[0m\x7f\x9f",
    "only controls": "\x00\x01\x02\x03\x04\x05\x06\x07",
    "zero-width and bidi": "\u200b\u200c\u200d\ufeff\u202eelppa\u202c\u2066x\u2069",
    "lone high surrogate": "apple \ud800 pie",
    "lone low surrogate": "\udfff",
    "reversed pair": "\udc00\ud800 red",
    "noncharacters": "\ufffe\uffff\U0010ffff\U000e0001 private \ue000",
    "mixed scripts": "apple 苹果 яблоко تفاحة सेब 사과 μήλο 🍎 pie",
    "zalgo": "a" + "\u0301\u0316\u0334\u035c" * 200 + "pple",
    "emoji sequences": "👩🏽‍🔬👨‍👩‍👧‍👦🇫🇷🏳️‍🌈" * 50,
    "rtl paragraph": "التفاح الأحمر " * 40,
    "one huge word": "x" * 5000,
    "url soup": "https://example.com/" + "a%2Fb?c=d&" * 400,
}


def assert_scored(ranked: Sequence[RankedText], texts: Sequence[str]) -> None:
    assert sorted(r.index for r in ranked) == list(range(len(texts)))
    for r in ranked:
        assert r.text is texts[r.index]  # the caller's string, untouched
        assert r.scored and math.isfinite(r.score), (r.index, r.score)
        assert 0 <= r.window[0] <= r.window[1] <= len(r.text)
        assert r.n_windows >= 1


@pytest.fixture(scope="module")
def rr(minilm_reranker_backend: Any) -> Reranker:
    return Reranker(minilm_reranker_backend, cache="memory")


def test_each_hostile_text_gets_a_score(rr: Reranker) -> None:
    texts = list(HOSTILE.values())
    before = list(texts)
    ranked = rr.rerank("red apple pie", texts)
    assert_scored(ranked, texts)
    assert texts == before
    # One call with all of them scores each like a call with each alone.
    alone = {i: rr.score("red apple pie", [t])[0] for i, t in enumerate(texts)}
    assert {r.index: r.score for r in ranked} == pytest.approx(alone, abs=1e-5)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_text_as_the_query(rr: Reranker, name: str) -> None:
    query = HOSTILE[name]
    texts = ["an apple pie recipe", "red cars", HOSTILE["mixed scripts"]]
    if not query.strip():
        with pytest.raises(EmptyQueryError):
            rr.rerank(query, texts)
        return
    assert_scored(rr.rerank(query, texts), texts)


def test_a_million_characters_of_repeated_text(rr: Reranker) -> None:
    text = ("the red apple pie " * (MILLION // 18 + 1))[:MILLION]
    texts = [text, "apple pie"]
    before = rr.pairs_scored
    ranked = rr.rerank("red apple pie", texts)
    assert_scored(ranked, texts)
    long = next(r for r in ranked if r.index == 0)
    assert long.n_windows > 200 and not long.truncated
    # Identical windows are scored once: a handful of model pairs, not hundreds.
    assert rr.pairs_scored - before < 10


@pytest.mark.parametrize(
    "text",
    [
        " ".join(f"w{i}" for i in range(200_000))[:MILLION],  # unique words
        "中文字符" * (MILLION // 4),  # a token per character
        "사과 " * (MILLION // 3),  # several tokens per character
    ],
    ids=["unique-words", "cjk", "hangul"],
)
def test_a_million_characters_with_a_window_cap(minilm_reranker_backend: Any, text: str) -> None:
    rr = Reranker(minilm_reranker_backend, window=WindowConfig(max_windows=3), cache=None)
    (r,) = rr.rerank("apple", [text])
    assert r.scored and math.isfinite(r.score)
    assert r.n_windows == 3 and r.truncated
    assert r.window[1] < len(text)


@pytest.mark.parametrize(
    "text",
    [" " * MILLION, "\x00" * MILLION, "x" * MILLION],
    ids=["spaces", "nul", "one-word"],
)
def test_a_million_characters_without_usable_tokens(
    minilm_reranker_backend: Any, text: str
) -> None:
    rr = Reranker(minilm_reranker_backend, cache=None)
    (r,) = rr.rerank("apple", [text])
    assert r.scored and math.isfinite(r.score) and r.n_windows == 1


def test_query_longer_than_max_length_is_cut_with_one_warning(
    minilm_reranker_backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    rr = Reranker(minilm_reranker_backend, cache=None)
    max_length = minilm_reranker_backend.max_length
    query = " ".join(["apple"] * (max_length * 3))
    texts = ["apple pie", "red cars", "x" * 3000]
    caplog.set_level(logging.WARNING, logger="crossrank")
    for _ in range(2):
        assert_scored(rr.rerank(query, texts), texts)
    warned = [r for r in caplog.records if "max_query_tokens" in r.getMessage()]
    assert len(warned) == 1
    # A query of a million characters too.
    assert_scored(rr.rerank("apple " * (MILLION // 6), texts), texts)


async def test_hostile_texts_through_the_async_path(rr: Reranker) -> None:
    texts = list(HOSTILE.values())
    ranked = await rr.arerank("red apple pie", texts, top_n=len(texts))
    assert_scored(ranked, texts)
    short = [t for t in texts if len(t) < 200]
    assert await rr.ascore("\ud800 apple", short) == rr.score("\ud800 apple", short)


@pytest.mark.parametrize(
    ("query", "texts", "error", "index"),
    [
        ("", ["a"], EmptyQueryError, None),
        ("  \n\t ", ["a"], EmptyQueryError, None),
        (None, ["a"], EmptyQueryError, None),
        (b"apple", ["a"], EmptyQueryError, None),
        ("apple", "a string, not a list", InputError, None),
        ("apple", b"bytes", InputError, None),
        ("apple", None, InputError, None),
        ("apple", ["ok", None], InvalidTextError, 1),
        ("apple", ["ok", "ok", b"bytes"], InvalidTextError, 2),
        ("apple", [3.14], InvalidTextError, 0),
        ("apple", [["nested"]], InvalidTextError, 0),
    ],
)
def test_bad_arguments_are_typed_errors(
    rr: Reranker, query: Any, texts: Any, error: type[Exception], index: int | None
) -> None:
    with pytest.raises(error) as info:
        rr.rerank(query, texts)
    assert isinstance(info.value, ValueError)
    if index is not None:
        assert getattr(info.value, "index", None) == index
