"""Result type, the protocol a backend implements and its declared optional capabilities.

A backend must satisfy :class:`Backend`. Everything else is optional and declared,
never probed: the engine checks the small ``@runtime_checkable`` protocols below with
``isinstance`` —

* :class:`AsyncBackend`: ``async ascore_pairs(pairs)`` (a truly async client, e.g. HTTP);
* :class:`SupportsClose`: ``close()`` releases the backend's resources;
* :class:`SupportsDescribe`: ``describe() -> dict`` with documented facts (backend,
  model_id, device, runtime, precision, num_threads, onnx_model_path, ...); speed facts
  are exposed only here, never through ``.model`` / ``.plan`` attributes;
* :class:`SupportsInfo`: ``info -> BackendInfo``, the facts the engine plans with.

``rerank_core.backends._base.BackendBase`` gives every built-in backend defaults for all
of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from ._validate import positive_int
from .errors import ConfigError
from .evidence import evidence_span

__all__ = [
    "AsyncBackend",
    "Backend",
    "BackendInfo",
    "Pair",
    "RankedText",
    "Ranking",
    "ScoreScale",
    "SupportsClose",
    "SupportsDescribe",
    "SupportsInfo",
    "Tokenizer",
    "as_backend",
    "info_of",
]

ScoreScale = Literal["logit", "probability"]
Pair = tuple[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class RankedText:
    """One reranked text.

    ``index`` is the text's position in the caller's list; ``window`` is the
    ``(start, end)`` character span of the best-scoring window in ``text``;
    ``truncated`` is true only when a ``max_windows`` cap left part of the text
    unscored; ``scored`` is false when the backend failed and the engine ran with
    ``on_error="passthrough"``, or when a ``deadline_ms`` passed before its windows were
    scored (``score`` is then NaN). With score fusion (:mod:`~rerank_core.fusion`)
    ``score`` is the fused score, ``rerank_score`` the reranker's own and
    ``first_stage_score`` the first stage's; without fusion both are ``None``.
    """

    index: int
    score: float
    text: str
    window: tuple[int, int]
    n_windows: int
    truncated: bool = False
    scored: bool = True
    rerank_score: float | None = None
    first_stage_score: float | None = None

    @property
    def window_text(self) -> str:
        """The text of the best-scoring window."""
        return self.text[self.window[0] : self.window[1]]

    def evidence(self, context_chars: int = 0) -> str:
        """The best window with up to ``context_chars`` characters on each side (widened
        to word boundaries): the part of a long text to hand an LLM."""
        start, end = evidence_span(self.text, self.window, context_chars)
        return self.text[start:end]

    def __post_init__(self) -> None:
        if self.scored and math.isnan(self.score):
            raise ValueError("a scored RankedText needs a real score")


class Ranking(list[RankedText]):
    """What ``Reranker.rerank`` returns: the ranked :class:`RankedText` list (a plain
    ``list`` in every other respect) and what the call knows about it.

    ``top_score``: the best score among all texts of the call, before ``min_score`` and
    ``top_n`` cut (``None`` when nothing was scored). ``confidence_threshold``: the
    threshold on ``score_scale`` (the scale of the scores; a cutoff given on another scale
    is converted), ``None`` when none was set. ``low_confidence``: a threshold was set and
    ``top_score`` is below it or missing — likely an out-of-domain query. ``unscored``:
    texts left unscored (backend failure under passthrough, or ``deadline_passed``).
    A slice of a ``Ranking`` is a plain list.
    """

    top_score: float | None
    confidence_threshold: float | None
    low_confidence: bool
    score_scale: ScoreScale
    unscored: int
    deadline_passed: bool

    def __init__(
        self,
        items: Sequence[RankedText] = (),
        *,
        top_score: float | None = None,
        confidence_threshold: float | None = None,
        low_confidence: bool = False,
        score_scale: ScoreScale = "logit",
        unscored: int = 0,
        deadline_passed: bool = False,
    ) -> None:
        super().__init__(items)
        self.top_score = top_score
        self.confidence_threshold = confidence_threshold
        self.low_confidence = low_confidence
        self.score_scale = score_scale
        self.unscored = unscored
        self.deadline_passed = deadline_passed

    def facts(self) -> dict[str, Any]:
        """The call's facts as a plain, JSON-able dict (for events and logs)."""
        return {
            "top_score": self.top_score,
            "low_confidence": self.low_confidence,
            "confidence_threshold": self.confidence_threshold,
            "score_scale": self.score_scale,
            "unscored": self.unscored,
            "deadline_passed": self.deadline_passed,
        }


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
class AsyncBackend(Protocol):
    """Capability: the backend's client is truly asynchronous (e.g. an HTTP API).

    The engine then awaits ``ascore_pairs`` on async paths instead of running
    ``score_pairs`` in a worker thread. (Checked alone, so ``isinstance`` never
    evaluates the backend's properties.)
    """

    async def ascore_pairs(self, pairs: Sequence[Pair]) -> list[float]: ...


@runtime_checkable
class SupportsClose(Protocol):
    """A backend (or cache) that holds resources: ``close()`` releases them."""

    def close(self) -> None: ...


@runtime_checkable
class SupportsDescribe(Protocol):
    """A backend that describes itself: ``describe()`` returns plain, JSON-able facts.

    Documented keys (a backend fills those that apply): ``backend``, ``model_id``,
    ``device``, ``runtime``, ``precision``, ``num_threads``, ``onnx_model_path``.
    """

    def describe(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendInfo:
    """Facts a backend declares for the engine.

    ``model_id``: the model's hub id or path (``None`` when not applicable).
    ``preferred_batch_size``: pairs per call the backend prefers (``None`` = the
    engine's default, 32). ``micro_batching``: whether concurrent callers should share
    model batches through the engine's micro-batcher (local models: yes; truly async
    HTTP backends: no).
    """

    model_id: str | None = None
    preferred_batch_size: int | None = None
    micro_batching: bool = False

    def __post_init__(self) -> None:
        if self.model_id is not None and not isinstance(self.model_id, str):
            raise ConfigError(f"model_id must be None or a string, got {self.model_id!r:.80}")
        positive_int("preferred_batch_size", self.preferred_batch_size, allow_none=True)
        if not isinstance(self.micro_batching, bool):
            raise ConfigError(f"micro_batching must be True or False, got {self.micro_batching!r}")


@runtime_checkable
class SupportsInfo(Protocol):
    """A backend that declares its :class:`BackendInfo`."""

    @property
    def info(self) -> BackendInfo: ...


def info_of(backend: object) -> BackendInfo:
    """The :class:`BackendInfo` a backend declares; for one that declares none, the
    defaults (``micro_batching`` unless it is an :class:`AsyncBackend`)."""
    if isinstance(backend, SupportsInfo):
        info = backend.info
        if not isinstance(info, BackendInfo):
            raise ConfigError(
                f"{type(backend).__name__}.info must be a BackendInfo, got {type(info).__name__}"
            )
        return info
    return BackendInfo(micro_batching=not isinstance(backend, AsyncBackend))


def as_backend(obj: object) -> Backend:
    """``obj`` if it satisfies :class:`Backend`, else a ConfigError naming the protocol."""
    if not isinstance(obj, Backend):
        raise ConfigError(
            "backend must be a preset name or a rerank_core.Backend (fingerprint, max_length, "
            f"score_scale, tokenizer, score_pairs); got {type(obj).__name__}"
        )
    return obj
