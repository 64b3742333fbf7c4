"""The MiniLM backend against sentence-transformers' own CrossEncoder, on a real model."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from helpers import need
from rerank_core import Reranker, WindowConfig
from rerank_core.windows import make_windows, window_budget

torch = need("torch")
st = need("sentence_transformers")

pytestmark = pytest.mark.model

QUERY = "what causes scurvy in sailors"
SHORT = [
    "Scurvy is caused by a lack of vitamin C in the diet.",
    "Sailors on long voyages often lacked fresh fruit and vegetables.",
    "The Eiffel Tower is in Paris.",
    "Vitamin C is found in citrus fruits such as lemons and limes.",
]


@pytest.fixture(scope="module")
def reference(minilm_path: Path):  # type: ignore[no-untyped-def]
    return st.CrossEncoder(str(minilm_path), device="cpu")


@pytest.fixture(scope="module")
def exact(minilm_path: Path):  # type: ignore[no-untyped-def]
    from rerank_core.backends.cross_encoder import CrossEncoderBackend

    return CrossEncoderBackend(str(minilm_path), precision="fp32")


@pytest.mark.smoke
def test_short_texts_equal_crossencoder_predict(exact, reference) -> None:  # type: ignore[no-untyped-def]
    ours = Reranker(exact, cache=None).score(QUERY, SHORT)
    theirs = reference.predict([(QUERY, t) for t in SHORT], activation_fn=torch.nn.Identity())
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    sig = Reranker(exact, cache=None, normalize="sigmoid").score(QUERY, SHORT)
    np.testing.assert_allclose(sig, reference.predict([(QUERY, t) for t in SHORT]), atol=1e-5)
    assert all(0.0 < s < 1.0 for s in sig)


def test_rerank_order_matches_predict(exact, reference) -> None:  # type: ignore[no-untyped-def]
    theirs = reference.predict([(QUERY, t) for t in SHORT], activation_fn=torch.nn.Identity())
    ranked = Reranker(exact).rerank(QUERY, SHORT)
    assert [r.index for r in ranked] == list(np.argsort(-theirs))


def test_windows_are_token_exact_with_the_model_tokenizer(exact, reference) -> None:  # type: ignore[no-untyped-def]
    long_text = " ".join(SHORT * 60)
    (r,) = Reranker(exact, window=WindowConfig(overlap=32)).rerank(QUERY, [long_text])
    q_tokens = len(exact.tokenizer.token_spans([QUERY])[0])
    budget = exact.max_length - q_tokens - exact.tokenizer.pair_special_tokens
    assert budget == window_budget(exact.max_length, q_tokens, exact.tokenizer.pair_special_tokens)
    spans = exact.tokenizer.token_spans([long_text])[0]
    windows, _ = make_windows(spans, len(long_text), budget=budget, overlap=32)
    assert r.n_windows == len(windows) > 3
    hf = reference.tokenizer  # the model's own tokenizer
    for w in windows:
        assert w.n_tokens <= budget
        # the whole pair, tokenized by the model's own tokenizer, fits max_length
        ids = hf(QUERY, long_text[w.start : w.end], truncation=False)["input_ids"]
        assert len(ids) <= exact.max_length


def test_chunk_max_equals_max_of_windows_scored_one_by_one(exact, reference) -> None:  # type: ignore[no-untyped-def]
    long_text = " ".join(SHORT[2:3] * 150) + " " + SHORT[0] + " " + " ".join(SHORT[2:3] * 150)
    rr = Reranker(exact, cache=None, window=WindowConfig(overlap=32))
    r = rr.rerank(QUERY, [long_text])[0]
    q_tokens = len(exact.tokenizer.token_spans([QUERY])[0])
    budget = window_budget(exact.max_length, q_tokens, exact.tokenizer.pair_special_tokens)
    spans = exact.tokenizer.token_spans([long_text])[0]
    cut, _ = make_windows(spans, len(long_text), budget=budget, overlap=32)
    windows = [long_text[w.start : w.end] for w in cut]
    assert r.n_windows == len(windows) > 1
    solo = [
        float(reference.predict([(QUERY, w)], activation_fn=torch.nn.Identity())[0])
        for w in windows
    ]
    assert math.isclose(r.score, max(solo), abs_tol=1e-5)
    assert r.window_text == windows[int(np.argmax(solo))]


def test_cache_hits_skip_the_model(exact) -> None:  # type: ignore[no-untyped-def]
    rr = Reranker(exact)
    first = rr.rerank(QUERY, SHORT)
    scored = rr.pairs_scored
    calls: list[int] = []
    original = exact.score_pairs

    def spy(pairs):  # type: ignore[no-untyped-def]
        calls.append(len(pairs))
        return original(pairs)

    exact.score_pairs = spy
    try:
        second = rr.rerank(QUERY, SHORT)
    finally:
        del exact.score_pairs
    assert calls == [] and rr.pairs_scored == scored
    assert first == second
    assert rr.cache_stats.hits == len(SHORT)


def test_fingerprint_covers_precision_and_max_length(minilm_path: Path, exact) -> None:  # type: ignore[no-untyped-def]
    from rerank_core.backends.cross_encoder import CrossEncoderBackend

    shorter = CrossEncoderBackend(str(minilm_path), precision="fp32", max_length=256)
    assert shorter.max_length == 256
    assert shorter.fingerprint != exact.fingerprint
    assert "weights" in exact.fingerprint


def test_unloadable_model_gives_clear_error(tmp_path: Path) -> None:
    from rerank_core import ModelLoadError

    with pytest.raises(ModelLoadError, match="could not load model") as ei:
        Reranker("minilm", model=str(tmp_path / "no-such-model"))
    assert "local model directory" in str(ei.value)


def test_default_hub_model_offline_says_so() -> None:
    from rerank_core import ModelLoadError

    with pytest.raises(ModelLoadError, match="cross-encoder/ms-marco-MiniLM-L-6-v2"):
        Reranker("minilm")


def test_fingerprint_tells_random_heads_apart(
    minilm_bi_encoder_path: Path, minilm_path: Path
) -> None:
    """A checkpoint without a trained head gets a new random head per load: no shared cache."""
    from rerank_core.backends.cross_encoder import CrossEncoderBackend

    bi = str(minilm_bi_encoder_path)  # untrained: allowed here, and torch (no export)
    a = CrossEncoderBackend(bi, precision="fp32", runtime="torch", allow_untrained=True)
    b = CrossEncoderBackend(bi, precision="fp32", runtime="torch", allow_untrained=True)
    assert a.fingerprint != b.fingerprint
    c = CrossEncoderBackend(str(minilm_path), precision="fp32")
    d = CrossEncoderBackend(str(minilm_path), precision="fp32")
    assert c.fingerprint == d.fingerprint
