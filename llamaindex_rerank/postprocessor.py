"""``RerankPostprocessor``: crossrank as a LlamaIndex node postprocessor.

It only converts types (nodes → texts → new nodes), forwards ``top_n``/``min_score``
and emits LlamaIndex's events; windows, batching, caching and sorting are the
engine's, option handling is ``rerank_core.adapter_support``'s.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Literal

from llama_index.core.bridge.pydantic import Field, PrivateAttr, ValidationError
from llama_index.core.callbacks import CallbackManager
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle
from rerank_core import RankedText, Reranker
from rerank_core.adapter_support import (
    COMMON_FIELDS,
    DEFAULT_BACKEND,
    Cut,
    RerankEventData,
    configure,
    invalid_fields,
)

from ._events import rerank_events
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
    nodes, scores and metadata are never changed.
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
    _reranker: Reranker = PrivateAttr()

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
        reranker: Reranker | None = None,
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

    @classmethod
    def class_name(cls) -> str:
        return "CrossrankRerankPostprocessor"

    @property
    def reranker(self) -> Reranker:
        """The engine (shared when one was passed in)."""
        return self._reranker

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        query, texts, cut = self._inputs(nodes, query_bundle)
        if not texts:
            return []
        with self._events(nodes, query_bundle, query, cut) as end:
            return end(self._copies(nodes, cut.rerank(self._reranker, query, texts)))

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        query, texts, cut = self._inputs(nodes, query_bundle)
        if not texts:
            return []
        with self._events(nodes, query_bundle, query, cut) as end:
            return end(self._copies(nodes, await cut.arerank(self._reranker, query, texts)))

    def _inputs(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None
    ) -> tuple[str, list[str], Cut]:
        query = query_of(query_bundle)
        return query, texts_of_nodes(nodes, self.metadata_mode), Cut(self.top_n, self.min_score)

    def _events(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None, query: str, cut: Cut
    ) -> AbstractContextManager[Callable[[list[NodeWithScore]], list[NodeWithScore]]]:
        data = RerankEventData.of(self._reranker, query, cut, len(nodes), model=self.model)
        return rerank_events(self.callback_manager, nodes, query_bundle, data)

    def _copies(self, nodes: list[NodeWithScore], ranked: list[RankedText]) -> list[NodeWithScore]:
        return scored_copies(nodes, ranked, keep_retrieval_score=self.keep_retrieval_score)
