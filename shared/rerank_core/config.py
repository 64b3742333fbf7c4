"""Frozen, keyword-only configuration objects, validated on construction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ._validate import int_at_least, number, one_of, positive_int
from .deadline import check_deadline_ms
from .errors import ConfigError
from .scales import CutoffScale, check_cutoff_scale
from .windows import window_budget

__all__ = ["Aggregate", "EngineConfig", "EngineOptions", "Normalize", "OnError", "WindowConfig"]

Aggregate = Literal["max", "mean", "first", "topk_mean"]
Normalize = Literal["sigmoid"] | None
OnError = Literal["raise", "passthrough"]
_AGGREGATES = ("max", "mean", "first", "topk_mean")
_NORMALIZE = (None, "sigmoid")
_ON_ERROR = ("raise", "passthrough")


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowConfig:
    """How long texts are cut into overlapping windows and how window scores combine.

    ``overlap``: tokens shared by consecutive windows (default: half of each window's
    budget, the room beside that query, so that any passage up to half a window long lies
    whole inside one window, as in MaxP's 50% strides; measured in the README's long-document
    table: a cross-encoder trained on short passages loses far less to windowing with it,
    at about 1.5× the windows of a quarter overlap). ``max_windows``: cap on
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
        int_at_least("window overlap", self.overlap, 0, allow_none=True)
        positive_int("max_windows", self.max_windows, allow_none=True)
        one_of("aggregate", self.aggregate, _AGGREGATES)
        positive_int("topk", self.topk)
        positive_int("max_query_tokens", self.max_query_tokens, allow_none=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineConfig:
    """A :class:`~rerank_core.Reranker`'s settings, resolved against its backend and
    frozen at construction (read it as ``Reranker.config``).

    ``batch_size``/``max_batch_tokens``: pairs and padded tokens per model call.
    ``window``: the caller's :class:`WindowConfig`; ``overlap`` and
    ``max_query_tokens``: its values resolved for the backend's ``max_length``
    (``overlap=None``: half of each job's window budget).
    ``normalize``, ``on_error``, ``top_n``: as given to the engine.
    ``confidence_threshold``: the default threshold under which a call's best score marks
    it low-confidence, on ``cutoff_scale`` (``None``: the scale of the results).
    ``deadline_ms``: the default latency deadline of a call (``None``: none).
    """

    batch_size: int
    max_batch_tokens: int
    window: WindowConfig
    overlap: int | None
    max_query_tokens: int
    normalize: Normalize = None
    on_error: OnError = "raise"
    top_n: int | None = None
    confidence_threshold: float | None = None
    cutoff_scale: CutoffScale = None
    deadline_ms: float | None = None

    def __post_init__(self) -> None:
        positive_int("batch_size", self.batch_size)
        positive_int("max_batch_tokens", self.max_batch_tokens)
        if not isinstance(self.window, WindowConfig):
            raise ConfigError(f"window must be a WindowConfig, got {type(self.window).__name__}")
        int_at_least("window overlap", self.overlap, 0, allow_none=True)
        positive_int("max_query_tokens", self.max_query_tokens)
        one_of("normalize", self.normalize, _NORMALIZE)
        one_of("on_error", self.on_error, _ON_ERROR)
        positive_int("top_n", self.top_n, allow_none=True)
        _check_controls(self.confidence_threshold, self.cutoff_scale, self.deadline_ms)


_DEFAULT_BATCH_SIZE = 32


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineOptions:
    """The engine options as the caller gave them, checked before any model is loaded;
    :meth:`resolve` fills the defaults that depend on the backend."""

    batch_size: int | None = None
    max_batch_tokens: int | None = None
    window: WindowConfig | None = None
    normalize: Normalize = None
    on_error: OnError = "raise"
    top_n: int | None = None
    confidence_threshold: float | None = None
    cutoff_scale: CutoffScale = None
    deadline_ms: float | None = None

    def __post_init__(self) -> None:
        positive_int("batch_size", self.batch_size, allow_none=True)
        positive_int("max_batch_tokens", self.max_batch_tokens, allow_none=True)
        if self.window is not None and not isinstance(self.window, WindowConfig):
            raise ConfigError(f"window must be a WindowConfig, got {type(self.window).__name__}")
        one_of("normalize", self.normalize, _NORMALIZE)
        one_of("on_error", self.on_error, _ON_ERROR)
        positive_int("top_n", self.top_n, allow_none=True)
        _check_controls(self.confidence_threshold, self.cutoff_scale, self.deadline_ms)

    def resolve(
        self, *, max_length: int, special_tokens: int, preferred_batch_size: int | None = None
    ) -> EngineConfig:
        """The settings for a backend of ``max_length`` tokens whose tokenizer adds
        ``special_tokens`` per pair. The window budget: the room left beside the longest
        allowed query (default: half of ``max_length``) must hold at least one token, and
        an explicit overlap must be smaller than it (default: half of each job's budget)."""
        window = self.window or WindowConfig()
        max_query_tokens = window.max_query_tokens or max(1, max_length // 2)
        smallest = window_budget(max_length, max_query_tokens, special_tokens)
        if smallest < 1:
            raise ConfigError(
                f"max_query_tokens={max_query_tokens} leaves no room for text in "
                f"max_length={max_length}"
            )
        if window.overlap is not None and window.overlap >= smallest:
            raise ConfigError(
                f"window overlap ({window.overlap} tokens) must be smaller than the window "
                f"budget ({smallest} tokens for a query of {max_query_tokens} tokens at "
                f"max_length={max_length})"
            )
        batch_size = self.batch_size or positive_int(
            "backend preferred_batch_size", preferred_batch_size or _DEFAULT_BATCH_SIZE
        )
        return EngineConfig(
            batch_size=batch_size,
            max_batch_tokens=self.max_batch_tokens or batch_size * max_length,
            window=window,
            overlap=window.overlap,
            max_query_tokens=max_query_tokens,
            normalize=self.normalize,
            on_error=self.on_error,
            top_n=self.top_n,
            confidence_threshold=self.confidence_threshold,
            cutoff_scale=self.cutoff_scale,
            deadline_ms=self.deadline_ms,
        )


def _check_controls(
    confidence_threshold: object, cutoff_scale: object, deadline_ms: object
) -> None:
    number("confidence_threshold", confidence_threshold, allow_none=True)
    scale = check_cutoff_scale(cutoff_scale)
    in_range = confidence_threshold is None or 0.0 <= float(confidence_threshold) <= 1.0  # type: ignore[arg-type]
    if scale == "probability" and not in_range:
        raise ConfigError(
            f"confidence_threshold={confidence_threshold!r} on cutoff_scale='probability' "
            "must be in [0, 1]"
        )
    check_deadline_ms(deadline_ms)
