"""A dependency-free token estimate for backends whose tokenizer is not available (HTTP APIs).

Subword tokenizers (BPE, WordPiece, SentencePiece) rarely keep a long word whole, split
digit runs and give most CJK characters a token each. The estimate mimics that so a
window cut by it seldom overflows the real model's budget: letter runs count one token
per five letters, digit runs one per three digits, each CJK / kana / hangul character
and each punctuation or symbol character one token. Spans are character offsets into
the original text, so the engine can cut windows from them like from a real tokenizer.

On the bundled SciFact abstracts it counts a median 1.16 times the tokens of BERT's
WordPiece (a small, pessimistic vocabulary) and never under 0.95 times
(``tests/backends/test_cohere_words.py``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["WordTokenizer"]

# CJK ideographs, kana, hangul syllables, CJK compatibility ideographs.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN = re.compile(
    rf"[{_CJK}]"  # one CJK character
    r"|\d{1,3}"  # digits in runs of up to three
    rf"|(?:(?![{_CJK}])[^\W\d_]){{1,5}}"  # letters in runs of up to five
    r"|\S"  # any other visible character (punctuation, symbols, underscore)
)


class WordTokenizer:
    """Estimated token spans from a regular expression; no model files needed.

    ``pair_special_tokens``: tokens the remote model adds around a (query, text)
    pair (Cohere documents 3 for Rerank 3.x and 4 for Rerank 4; 4 is a safe default).
    """

    def __init__(self, pair_special_tokens: int = 4) -> None:
        if isinstance(pair_special_tokens, bool) or not isinstance(pair_special_tokens, int):
            raise TypeError("pair_special_tokens must be an int")
        if pair_special_tokens < 0:
            raise ValueError("pair_special_tokens must be >= 0")
        self._special = pair_special_tokens

    @property
    def pair_special_tokens(self) -> int:
        return self._special

    def token_spans(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        return [[m.span() for m in _TOKEN.finditer(t)] for t in texts]

    def count(self, text: str) -> int:
        """Estimated tokens in ``text`` (no special tokens)."""
        return sum(1 for _ in _TOKEN.finditer(text))

    def __repr__(self) -> str:
        return f"WordTokenizer(pair_special_tokens={self._special})"
