"""Result type and the protocols a backend implements."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

__all__ = ["AsyncBackend", "Backend", "Pair", "RankedText", "ScoreScale", "Tokenizer"]

ScoreScale = Literal["logit", "probability"]
Pair = tuple[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class RankedText:
    """One reranked text.

    ``index`` is the text's position in the caller's list; ``window`` is the
    ``(start, end)`` character span of the best-scoring window in ``text``;
    ``truncated`` is true only when a ``max_windows`` cap left part of the text
    unscored; ``scored`` is false when the backend failed and the engine ran with
    ``on_error="passthrough"`` (``score`` is then NaN).
    """

    index: int
    score: float
    text: str
    window: tuple[int, int]
    n_windows: int
    truncated: bool = False
    scored: bool = True

    @property
    def window_text(self) -> str:
        """The text of the best-scoring window."""
        return self.text[self.window[0] : self.window[1]]

    def __post_init__(self) -> None:
        if self.scored and math.isnan(self.score):
            raise ValueError("a scored RankedText needs a real score")


@runtime_checkable
class Tokenizer(Protocol):
    """What the engine needs from a tokenizer to cut token-exact windows."""

    @property
    def pair_special_tokens(self) -> int:
        """Special tokens the model adds around a (query, text) pair."""
        ...

    def token_spans(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        """Character span of every token of every text, without special tokens."""
        ...


@runtime_checkable
class Backend(Protocol):
    """A scorer of (query, text) pairs. It does no windowing, caching or sorting."""

    @property
    def fingerprint(self) -> str:
        """Identifies the exact scoring function: model, revision/weights, max_length,
        precision and activation. Part of every cache key."""
        ...

    @property
    def max_length(self) -> int:
        """Maximum tokens of one (query, window) pair, special tokens included."""
        ...

    @property
    def score_scale(self) -> ScoreScale:
        """Whether ``score_pairs`` returns raw logits or probabilities."""
        ...

    @property
    def tokenizer(self) -> Tokenizer: ...

    def score_pairs(self, pairs: Sequence[Pair]) -> list[float]:
        """Score each pair; one float per pair, in order."""
        ...


@runtime_checkable
class AsyncBackend(Backend, Protocol):
    """A backend whose client is truly asynchronous (e.g. an HTTP API)."""

    async def ascore_pairs(self, pairs: Sequence[Pair]) -> list[float]: ...
