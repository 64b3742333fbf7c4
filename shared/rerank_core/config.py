"""Frozen, keyword-only configuration objects, validated on construction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .errors import ConfigError

__all__ = ["Aggregate", "WindowConfig"]

Aggregate = Literal["max", "mean", "first", "topk_mean"]
_AGGREGATES = ("max", "mean", "first", "topk_mean")


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowConfig:
    """How long texts are cut into overlapping windows and how window scores combine.

    ``overlap``: tokens shared by consecutive windows (default: 64, or a quarter of
    the window budget for models with a short ``max_length``). ``max_windows``: cap on
    windows per text (``None`` = no cap; ``1`` = truncate like every other
    reranker, but reported through ``RankedText.truncated``). ``aggregate``: how
    window scores become a text score. ``topk``: windows averaged by ``topk_mean``.
    ``max_query_tokens``: longer queries are cut to this many tokens (default:
    half the model's ``max_length``) so that a window always has room.
    """

    overlap: int | None = None
    max_windows: int | None = None
    aggregate: Aggregate = "max"
    topk: int = 2
    max_query_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.overlap is not None and (
            isinstance(self.overlap, bool) or not isinstance(self.overlap, int) or self.overlap < 0
        ):
            raise ConfigError(f"window overlap must be an int >= 0, got {self.overlap!r}")
        if self.max_windows is not None and (
            not isinstance(self.max_windows, int) or self.max_windows < 1
        ):
            raise ConfigError(f"max_windows must be None or an int >= 1, got {self.max_windows!r}")
        if self.aggregate not in _AGGREGATES:
            raise ConfigError(
                f"aggregate must be one of {', '.join(_AGGREGATES)}; got {self.aggregate!r}"
            )
        if not isinstance(self.topk, int) or self.topk < 1:
            raise ConfigError(f"topk must be an int >= 1, got {self.topk!r}")
        if self.max_query_tokens is not None and (
            not isinstance(self.max_query_tokens, int) or self.max_query_tokens < 1
        ):
            raise ConfigError(
                f"max_query_tokens must be None or an int >= 1, got {self.max_query_tokens!r}"
            )
