"""``RerankPostprocessor``: crossrank as a LlamaIndex node postprocessor.

It only converts types (nodes → texts → new nodes), forwards ``top_n``/``min_score``
and the production controls, and emits LlamaIndex's events; windows, batching, caching,
sorting, confidence and deadlines are the engine's, option handling is
``rerank_core.adapter_support``'s.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from llama_index.core.bridge.pydantic import Field, PrivateAttr, ValidationError
from llama_index.core.callbacks import CallbackManager
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle
from rerank_core.adapter_support import (
    COMMON_FIELDS,
    DEFAULT_BACKEND,
    Cut,
    RerankEventData,
    ReturnText,
    configure,
    cut_of,
    evidence_of,
    first_stage_scores,
    invalid_fields,
)
from rerank_core.cascade import AnyReranker
from rerank_core.fusion import FusionLike
from rerank_core.scales import CutoffScale
from rerank_core.types import Ranking

from ._events import End, rerank_events
from ._nodes import metadata_mode_of, query_of, scored_copies, texts_of_nodes

__all__ = ["RerankPostprocessor"]


class RerankPostprocessor(BaseNodePostprocessor):
    """Rerank retrieved nodes with a cross-encoder; use in ``node_postprocessors=[...]``.

    Build it from backend options (``backend="minilm"``, ``model=``, ``device=`` and
    any engine or backend option such as ``batch_size``, ``window``, ``cache``,
    ``normalize`` or ``api_key``), or pass a ready ``reranker=Reranker(...)`` so one
    engine and its cache serve many components. Only the fields below are
    serialized; backend options (and so any ``api_key``) stay private.

    Returns new ``NodeWithScore`` objects over copies of the nodes: the caller's
    nodes, scores and metadata are never changed. Each copy's metadata gets the best
    window's char span in the node's content (``rerank_window_start``/``_end``) and the
    window count (``rerank_window_count``), hidden from embedding and LLM text like
    ``retrieval_score``.

    Production controls: ``confidence_threshold`` flags a weak result set
    (``rerank_low_confidence`` in every copy's metadata; the rank-1 score is in the end
    events: ``ReRankEndEvent.tags["crossrank"]["top_score"]``, and the callback's end
    payload ``"crossrank"``).
    ``deadline_ms``: stop scoring then; unscored nodes follow in retrieval order with score
    ``None``. ``return_text="window"``: a copy carries only its best window (plus
    ``window_context_chars`` on each side).

    Score fusion: ``fusion="rrf"`` or ``("linear", w)`` (``w``: the retriever's weight)
    ranks by the reranker's score fused with each node's retrieval score
    (``NodeWithScore.score``; a node without one is a ``FirstStageScoreError``). A copy's
    score is then the fused score and its metadata keeps the reranker's own under
    ``rerank_score``; ``min_score``/``confidence_threshold`` still read the reranker's
    score. ``fusion="none"`` turns an engine's default fusion off.

    Score scales: ``backend="minilm"`` and ``"bge"`` return raw logits (unbounded; a 0–1
    cutoff from LlamaIndex's ``SentenceTransformerRerank``, which applies a sigmoid, means
    something else here), ``"cohere"`` returns 0–1 relevance; ``normalize="sigmoid"`` maps
    logits to 0–1. ``cutoff_scale="probability"`` (or ``"logit"``) says which scale
    ``min_score`` and ``confidence_threshold`` are written on; they are converted exactly.
    """

    top_n: int | None = Field(
        default=None, description="Nodes to keep (None: all, or the engine's own top_n)."
    )
    min_score: float | None = Field(default=None, description="Drop nodes scoring below this.")
    backend: str | None = Field(
        default=DEFAULT_BACKEND,
        description="Backend preset; None when built from a ready reranker.",
    )
    model: str | None = Field(default=None, description="Model id or local directory.")
    device: str | None = Field(default=None, description="cpu (default), auto, cuda:0, ...")
    keep_retrieval_score: bool = Field(
        default=False,
        description="Keep the retrieval score in the copy's metadata['retrieval_score'] "
        "(excluded from the text that embeddings, rerankers and LLMs read).",
    )
    metadata_mode: MetadataMode = Field(
        default=MetadataMode.EMBED, description="How node text is read (as for embedding)."
    )
    on_error: Literal["raise", "passthrough"] = Field(
        default="raise",
        description="passthrough: on a backend failure keep the input order, score None.",
    )
    confidence_threshold: float | None = Field(
        default=None,
        description="Flag the result set low-confidence when its best score is below this.",
    )
    cutoff_scale: Literal["logit", "probability"] | None = Field(
        default=None,
        description="Scale min_score and confidence_threshold are written on (None: the "
        "scale of the scores: logits for minilm/bge, 0-1 for cohere or normalize='sigmoid').",
    )
    deadline_ms: float | None = Field(
        default=None,
        description="Stop scoring after this many ms; unscored nodes follow, score None.",
    )
    return_text: ReturnText = Field(
        default="document",
        description="'window': a copy carries only its best-scoring window of text.",
    )
    window_context_chars: int = Field(
        default=0, description="With return_text='window': characters of context each side."
    )
    fusion: str | None = Field(
        default=None,
        description="Score fusion with the retrieval score: 'rrf', 'rrf:K', 'linear:W' (W: "
        "the retrieval score's weight) or 'none' (None: the engine's default).",
    )
    _reranker: AnyReranker = PrivateAttr()

    def __init__(
        self,
        *,
        top_n: int | None = None,
        min_score: float | None = None,
        backend: str | None = DEFAULT_BACKEND,
        model: str | os.PathLike[str] | None = None,
        device: str | None = None,
        keep_retrieval_score: bool = False,
        metadata_mode: MetadataMode | str = MetadataMode.EMBED,
        on_error: Literal["raise", "passthrough"] | None = None,
        confidence_threshold: float | None = None,
        cutoff_scale: CutoffScale = None,
        deadline_ms: float | None = None,
        return_text: ReturnText = "document",
        window_context_chars: int = 0,
        fusion: FusionLike = None,
        reranker: AnyReranker | None = None,
        callback_manager: CallbackManager | None = None,
        **options: Any,
    ) -> None:
        mode = metadata_mode_of(metadata_mode)
        values = dict(
            top_n=top_n,
            min_score=min_score,
            backend=backend,
            model=model,
            device=device,
            on_error=on_error,
            confidence_threshold=confidence_threshold,
            cutoff_scale=cutoff_scale,
            deadline_ms=deadline_ms,
            return_text=return_text,
            window_context_chars=window_context_chars,
            fusion=fusion,
            **options,
        )
        config = configure(COMMON_FIELDS, values, reranker)
        fields = dict(config.fields, keep_retrieval_score=keep_retrieval_score, metadata_mode=mode)
        if callback_manager is not None:
            fields["callback_manager"] = callback_manager
        try:
            super().__init__(**fields)
        except ValidationError as exc:
            raise invalid_fields(type(self).__name__, exc.errors()) from exc
        self._reranker = config.engine()  # loads the model: only after the fields passed
        cut_of(config.fields).check(self._reranker)

    @classmethod
    def class_name(cls) -> str:
        return "CrossrankRerankPostprocessor"

    @property
    def reranker(self) -> AnyReranker:
        """The engine (shared when one was passed in)."""
        return self._reranker

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        query, texts, cut = self._inputs(nodes, query_bundle)
        if not texts:
            return []
        first = self._first_stage(nodes, cut)
        with self._events(nodes, query_bundle, query, cut) as (end, data):
            ranked = cut.rerank(self._reranker, query, texts, first)
            return end(self._copies(nodes, ranked), data.outcome(ranked))

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        query, texts, cut = self._inputs(nodes, query_bundle)
        if not texts:
            return []
        first = self._first_stage(nodes, cut)
        with self._events(nodes, query_bundle, query, cut) as (end, data):
            ranked = await cut.arerank(self._reranker, query, texts, first)
            return end(self._copies(nodes, ranked), data.outcome(ranked))

    def _inputs(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None
    ) -> tuple[str, list[str], Cut]:
        query = query_of(query_bundle)
        return query, texts_of_nodes(nodes, self.metadata_mode), cut_of(self.__dict__)

    def _first_stage(self, nodes: list[NodeWithScore], cut: Cut) -> list[float] | None:
        """The nodes' retrieval scores when the call fuses scores (else ``None``)."""
        if not cut.fuses(self._reranker):
            return None
        return first_stage_scores(
            nodes, lambda n: n.score, name="nodes", what="no retrieval score (NodeWithScore.score)"
        )

    @contextmanager
    def _events(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None, query: str, cut: Cut
    ) -> Iterator[tuple[End, RerankEventData]]:
        data = RerankEventData.of(self._reranker, query, cut, len(nodes), model=self.model)
        with rerank_events(self.callback_manager, nodes, query_bundle, data) as end:
            yield end, data

    def _copies(self, nodes: list[NodeWithScore], ranked: Ranking) -> list[NodeWithScore]:
        return scored_copies(
            nodes,
            ranked,
            keep_retrieval_score=self.keep_retrieval_score,
            evidence=evidence_of(self.__dict__),
        )
