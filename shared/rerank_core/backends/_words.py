"""A dependency-free token estimate for backends whose tokenizer is not available (HTTP APIs).

Subword tokenizers (BPE, WordPiece, SentencePiece) rarely keep a long word whole, split
digit runs and give most CJK characters a token each. The estimate mimics that: letter
runs count one token per seven letters, digit runs one per three digits, each CJK / kana /
hangul character and each punctuation or symbol character one token. Spans are character
offsets into the original text, so the engine can cut windows from them like from a real
tokenizer.

It errs on the side of whole windows: calibrated to BERT's WordPiece (a small vocabulary;
larger ones give fewer tokens), it counts a median 1.01 times its tokens on SciFact, so a
passage that fits the model is seldom cut in two. On the 5,183 SciFact passages at
``max_length=512`` it splits 2.0% that the real tokenizer keeps whole (the former
five-letter estimate split 12.1%) and keeps whole 1.4% that the real tokenizer would split
(their last few tokens are then cut by the server): ``python benchmarks/oversplit.py``.
A real tokenizer (``tokenizer=`` on the remote backends, or the server's ``/tokenize``)
makes windows exact.
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
    rf"|(?:(?![{_CJK}])[^\W\d_]){{1,7}}"  # letters in runs of up to seven
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
