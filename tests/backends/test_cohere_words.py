"""The word-based token estimate that cuts client-side windows for API backends."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
from _tiny_models import sample_texts
from hypothesis import given
from hypothesis import strategies as st
from rerank_core.backends._words import WordTokenizer


@given(st.text(max_size=300))
def test_spans_are_ordered_visible_and_cover_every_visible_character(text: str) -> None:
    spans = WordTokenizer().token_spans([text])[0]
    covered = set()
    last = 0
    for a, b in spans:
        assert last <= a < b <= len(text)
        assert not text[a:b].isspace() and not any(c.isspace() for c in text[a:b])
        covered.update(range(a, b))
        last = b
    assert covered == {i for i, c in enumerate(text) if not c.isspace()}


def test_pieces() -> None:
    w = WordTokenizer()
    assert w.count("internationalization") == 3  # letters: seven per token
    assert w.count("1234567") == 3  # digits: three per token
    assert w.count("東京は日本") == 5  # one per CJK / kana character
    assert w.count("e.g. α-helix!") == 8
    assert w.count("   ") == 0
    assert w.pair_special_tokens == 4 and WordTokenizer(3).pair_special_tokens == 3
    with pytest.raises(ValueError):
        WordTokenizer(-1)


def test_estimate_is_calibrated_to_a_real_subword_tokenizer(
    minilm_bi_encoder_path: Path,
) -> None:
    """Windows cut by the estimate err on the side of whole windows (issue 14): on the
    bundled SciFact abstracts it counts about as many tokens as BERT's WordPiece (a small
    30k vocabulary, so a pessimistic reference), seldom far fewer, never far more."""
    from transformers import AutoTokenizer

    bert = AutoTokenizer.from_pretrained(str(minilm_bi_encoder_path))
    w = WordTokenizer()
    ratios = []
    for text in sample_texts():
        real = len(bert(text, add_special_tokens=False)["input_ids"])
        ratios.append(w.count(text) / real)
    ratios.sort()
    assert 0.95 < statistics.median(ratios) < 1.08
    assert ratios[len(ratios) // 20] > 0.85  # few windows overflow, and not by much
    assert ratios[-1] < 1.3  # no wastefully small windows
