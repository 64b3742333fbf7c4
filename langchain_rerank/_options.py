"""The options both LangChain classes share: result cut, backend options or a ready engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from langchain_core.documents import Document
from pydantic import BaseModel, PrivateAttr, ValidationError
from rerank_core.adapter_support import (
    DEFAULT_BACKEND,
    Cut,
    Evidence,
    ReturnText,
    configure,
    cut_of,
    evidence_of,
    first_stage_scores,
    invalid_fields,
)
from rerank_core.cascade import AnyReranker

__all__ = ["RerankOptions"]


class RerankOptions(BaseModel):
    """Fields (serializable, no secrets) plus a private engine.

    Any keyword that is not a field (``batch_size``, ``window``, ``cache``,
    ``normalize``, ``api_key``, ...) goes to the engine and its backend and is not
    kept on the object, so it never shows in ``repr`` or serialization.

    Score scales: ``backend="minilm"`` and ``"bge"`` return raw logits (unbounded),
    ``"cohere"`` returns 0–1 relevance, ``normalize="sigmoid"`` maps logits to 0–1. A
    ``min_score`` or ``confidence_threshold`` copied from a 0–1 scorer needs
    ``cutoff_scale="probability"`` on a logit backend (converted exactly; a warning says so
    when a 0–1 cutoff meets logits without it).

    Score fusion: ``fusion="rrf"`` or ``("linear", w)`` (``w``: the first stage's weight)
    ranks by the reranker's score fused with each document's first-stage score, read from
    ``metadata[first_stage_score_key]`` (default ``"score"``, what e.g.
    ``PineconeHybridSearchRetriever`` writes; ``"relevance_score"`` after another
    reranker); a document without it is a ``FirstStageScoreError``. ``relevance_score``
    is then the fused score and ``metadata["rerank_score"]`` the reranker's own;
    ``min_score``/``confidence_threshold`` still read the reranker's score.
    """

    top_n: int | None = None
    """Documents to keep (None: all, or the engine's own ``top_n``)."""
    min_score: float | None = None
    """Drop documents scoring below this."""
    backend: str | None = DEFAULT_BACKEND
    """Backend preset; None when built from a ready ``reranker``."""
    model: str | None = None
    """Model id or local directory (default: the preset's)."""
    device: str | None = None
    """cpu (default), auto, cuda:0, ..."""
    on_error: Literal["raise", "passthrough"] = "raise"
    """passthrough: on a backend failure keep the input order, ``relevance_score`` None."""
    confidence_threshold: float | None = None
    """Flag the result set low-confidence (``metadata["rerank_low_confidence"]``) when its
    best score is below this; the rank-1 score is in the ``crossrank_rerank`` event."""
    cutoff_scale: Literal["logit", "probability"] | None = None
    """Scale ``min_score``/``confidence_threshold`` are written on (None: the scores')."""
    deadline_ms: float | None = None
    """Stop scoring after this many ms; unscored documents follow, ``relevance_score`` None."""
    return_text: ReturnText = "document"
    """``"window"``: a copy's ``page_content`` is only its best-scoring window."""
    window_context_chars: int = 0
    """With ``return_text="window"``: characters of context on each side of the window."""

    fusion: str | None = None
    """Score fusion: ``"rrf"``, ``"rrf:K"``, ``"linear:W"`` (W: the first stage's weight) or
    ``"none"``; ``None``: the engine's default. Any accepted spelling is stored canonically."""
    first_stage_score_key: str = "score"
    """The metadata key holding a document's first-stage score (used only with fusion)."""

    _reranker: AnyReranker = PrivateAttr()

    def __init__(self, *, reranker: AnyReranker | None = None, **data: Any) -> None:
        config = configure(type(self).model_fields, data, reranker)
        try:
            super().__init__(**config.fields)
        except ValidationError as exc:
            raise invalid_fields(type(self).__name__, exc.errors()) from exc
        self._reranker = config.engine()  # loads the model: only after the fields passed
        cut_of(config.fields).check(self._reranker)

    @property
    def reranker(self) -> AnyReranker:
        """The engine (shared when one was passed in)."""
        return self._reranker

    def _cut(
        self,
        top_n: int | None = None,
        min_score: float | None = None,
        confidence_threshold: float | None = None,
        deadline_ms: float | None = None,
    ) -> Cut:
        """The fields' cut with per-call values where given (checked: ``ConfigError``)."""
        return cut_of(self.__dict__).override(top_n, min_score, confidence_threshold, deadline_ms)

    def _first_stage(self, documents: Sequence[Document], cut: Cut) -> list[float] | None:
        """The documents' first-stage scores when the call fuses scores (else ``None``)."""
        if not cut.fuses(self._reranker):
            return None
        key = self.first_stage_score_key
        return first_stage_scores(
            documents,
            lambda d: d.metadata.get(key) if isinstance(d, Document) else None,
            name="documents",
            what=f"metadata[{key!r}]",
        )

    def _evidence(self) -> Evidence:
        return evidence_of(self.__dict__)
