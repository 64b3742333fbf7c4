"""A small deterministic backend for engine-logic tests (never a proof of quality)."""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence

_WORD = re.compile(r"\S+")


class WordTokenizer:
    """Whitespace tokens; three special tokens per pair, like BERT."""

    pair_special_tokens = 3

    def token_spans(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        return [[m.span() for m in _WORD.finditer(t)] for t in texts]


class KeywordBackend:
    """Score = number of query words present in the window (case-insensitive).

    Records every batch it is asked to score, so tests can see model work.
    Set ``fail`` to make it raise.
    """

    score_scale = "logit"

    def __init__(self, max_length: int = 64, tag: str = "v1") -> None:
        self._max_length = max_length
        self._tag = tag
        self.tokenizer = WordTokenizer()
        self.calls: list[list[tuple[str, str]]] = []
        self.fail: Exception | None = None
        self._lock = threading.Lock()

    @property
    def fingerprint(self) -> str:
        return f"keyword:{self._tag}:{self._max_length}"

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def pairs_seen(self) -> int:
        return sum(len(c) for c in self.calls)

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        if self.fail is not None:
            raise self.fail
        with self._lock:
            self.calls.append(list(pairs))
        out = []
        for q, t in pairs:
            words = {w.lower() for w in _WORD.findall(t)}
            out.append(float(sum(w.lower() in words for w in _WORD.findall(q))))
        return out
