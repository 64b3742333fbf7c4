"""``rerank_core.adapter_support``, the layer every framework adapter shares, without any
framework: option splitting, engine building or adoption, the cut, conversion and event data."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from adapter_helpers import SECRET
from rerank_core import (
    BACKENDS,
    ConfigError,
    EmptyQueryError,
    InvalidTextError,
    Reranker,
    register_backend,
)
from rerank_core.adapter_support import (
    COMMON_FIELDS,
    Cut,
    RerankEventData,
    check_query,
    configure,
    invalid_fields,
    scored_items,
    texts_of,
    with_entries,
)

FIELDS = (*COMMON_FIELDS, "keep_retrieval_score")


def test_configure_splits_fields_from_engine_options(secret_backend: str) -> None:
    values = {
        "backend": secret_backend,
        "top_n": 3,
        "model": None,
        "keep_retrieval_score": True,
        "api_key": SECRET,
        "batch_size": 4,
        "cache": None,
    }
    before = dict(values)
    config = configure(FIELDS, values)
    assert values == before  # the caller's mapping is not changed
    assert config.fields == {
        "backend": secret_backend,
        "top_n": 3,
        "model": None,
        "keep_retrieval_score": True,
        "on_error": "raise",
    }
    assert SECRET not in repr(config.fields)
    assert config.engine_options == {"api_key": SECRET, "batch_size": 4}
    # engine options reach the engine and its backend; None means "the default"
    engine = config.engine()
    assert engine.backend._api_key == SECRET  # type: ignore[attr-defined]
    assert engine.batch_size == 4 and engine.cache is not None


def test_configure_passes_model_device_on_error_and_keeps_model_a_string() -> None:
    name = "test-model-keyword"
    register_backend(name, "adapter_helpers:ModelKeywordBackend")
    try:
        config = configure(
            COMMON_FIELDS,
            {
                "backend": name,
                "model": Path("some/dir"),
                "device": "cpu",
                "on_error": "passthrough",
            },
        )
        engine = config.engine()
    finally:
        BACKENDS.pop(name, None)
    fields = config.fields
    assert fields["model"] == "some/dir" and isinstance(fields["model"], str)
    assert fields["on_error"] == engine.on_error == "passthrough"
    assert (engine.backend.model, engine.backend.device) == ("some/dir", "cpu")  # type: ignore[attr-defined]


def test_configure_adopts_a_ready_reranker(keyword_reranker: Reranker) -> None:
    config = configure(COMMON_FIELDS, {"top_n": 2}, keyword_reranker)
    assert config.engine() is keyword_reranker
    assert config.fields == {"top_n": 2, "backend": None, "on_error": "raise"}
    # the default backend name does not count as an option next to a reranker
    config = configure(COMMON_FIELDS, {"backend": "minilm"}, keyword_reranker)
    assert config.engine() is keyword_reranker


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"model": "x"}, "not both; got reranker= with model"),
        ({"backend": "bge", "batch_size": 2}, "not both; got reranker= with backend, batch_size"),
        ({"on_error": "passthrough"}, "differs from the given reranker's on_error='raise'"),
        ({"top_n": 0}, "top_n must be None or a positive int, got 0"),
        ({"min_score": math.nan}, "min_score must be None or a number, got nan"),
    ],
)
def test_configure_with_a_reranker_rejects_conflicts(
    keyword_reranker: Reranker, values: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        configure(COMMON_FIELDS, values, keyword_reranker)


def test_configure_without_a_reranker_needs_a_backend_name() -> None:
    with pytest.raises(ConfigError, match="backend must be a preset"):
        configure(COMMON_FIELDS, {"backend": None})
    with pytest.raises(ConfigError, match=r"must be a rerank_core\.Reranker"):
        configure(COMMON_FIELDS, {}, "minilm")  # type: ignore[arg-type]
    # nothing is loaded (or looked up) until engine()
    config = configure(COMMON_FIELDS, {"backend": "no-such-backend"})
    with pytest.raises(ConfigError, match="unknown backend"):
        config.engine()


def test_invalid_fields_is_one_line_naming_each_field() -> None:
    err = invalid_fields(
        "RerankThing",
        [
            {"loc": ("keep_retrieval_score",), "msg": "Input should be a valid boolean"},
            {"loc": ("tags", 0), "msg": "Input should be a valid string"},
        ],
    )
    assert isinstance(err, ConfigError)
    assert str(err) == (
        "RerankThing: keep_retrieval_score: Input should be a valid boolean; "
        "tags.0: Input should be a valid string"
    )


def test_cut_checks_overrides_and_forwards(keyword_reranker: Reranker) -> None:
    for bad in ({"top_n": 0}, {"top_n": True}, {"top_n": 2.0}, {"min_score": "1"}):
        with pytest.raises(ConfigError):
            Cut(**bad)
    cut = Cut(top_n=3, min_score=None)
    assert cut.override() == cut
    assert cut.override(top_n=1, min_score=0.5) == Cut(1, 0.5)
    with pytest.raises(ConfigError, match="top_n"):
        cut.override(top_n=-1)
    texts = ["a cat", "a dog", "cat and dog", "fish"]
    ranked = Cut(top_n=2).rerank(keyword_reranker, "cat dog", texts)
    assert [r.index for r in ranked] == [2, 0]
    ranked = Cut(min_score=1.0).rerank(keyword_reranker, "cat dog", texts)
    assert [r.index for r in ranked] == [2, 0, 1]
    # effective top_n: the cut's, else the engine's, else every input
    assert Cut(top_n=2).effective_top_n(keyword_reranker, 10) == 2
    assert Cut().effective_top_n(keyword_reranker, 10) == 10
    assert Cut().effective_top_n(Reranker(keyword_reranker.backend, top_n=4), 10) == 4


async def test_cut_async_matches_sync(keyword_reranker: Reranker) -> None:
    texts = ["a cat", "a dog", "cat and dog", "fish"]
    cut = Cut(top_n=3)
    got = await cut.arerank(keyword_reranker, "cat dog", texts)
    assert got == cut.rerank(keyword_reranker, "cat dog", texts)


def test_conversion_helpers(keyword_backend: Any) -> None:
    assert check_query("cats") == "cats"
    for bad in ("", "   ", None, 3):
        with pytest.raises(EmptyQueryError):
            check_query(bad)
    items: list[object] = [("a", 1), ("b", 2), "c"]
    with pytest.raises(InvalidTextError, match=r"items\[2\] must be a pair, got str") as info:
        texts_of(items, tuple, lambda t: str(t[0]), name="items", what="a pair")
    assert info.value.index == 2
    assert texts_of(items[:2], tuple, lambda t: str(t[0]), name="items", what="a pair") == [
        "a",
        "b",
    ]

    metadata = {"source": "s"}
    assert with_entries(metadata, score=1.5) == {"source": "s", "score": 1.5}
    assert metadata == {"source": "s"}

    docs = ["cat", "dog", "cat dog"]
    ranked = Reranker(keyword_backend).rerank("cat dog", docs)
    assert list(scored_items(docs, ranked)) == [("cat dog", 2.0), ("cat", 1.0), ("dog", 1.0)]
    keyword_backend.fail = RuntimeError("down")
    passthrough = Reranker(keyword_backend, on_error="passthrough", cache=None)
    assert list(scored_items(docs, passthrough.rerank("cat dog", docs))) == [
        ("cat", None),
        ("dog", None),
        ("cat dog", None),
    ]


def test_event_data_names_the_model(keyword_reranker: Reranker) -> None:
    data = RerankEventData.of(keyword_reranker, "q", Cut(top_n=2), 5)
    assert data == RerankEventData(query="q", model_name="KeywordBackend", top_n=2)
    named = RerankEventData.of(keyword_reranker, "q", Cut(), 5, model="my/model")
    assert (named.model_name, named.top_n) == ("my/model", 5)
