"""``RerankPostprocessor``: crossrank as a LlamaIndex node postprocessor.

It only converts types (nodes → texts → new nodes), forwards ``top_n``/``min_score``
and emits LlamaIndex's events; windows, batching, caching and sorting are the
engine's.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle
from rerank_core import ConfigError, EmptyQueryError, InvalidTextError, RankedText, Reranker
from rerank_core.adapter_support import DEFAULT_BACKEND, check_cut, engine_for

__all__ = ["RerankPostprocessor"]

dispatcher = get_dispatcher(__name__)

RETRIEVAL_SCORE = "retrieval_score"


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
        default="minilm", description="Backend preset; None when built from a ready reranker."
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
        check_cut(top_n, min_score)
        try:
            mode = MetadataMode(metadata_mode)
        except ValueError:
            modes = ", ".join(repr(m.value) for m in MetadataMode)
            raise ConfigError(
                f"metadata_mode must be one of {modes}; got {metadata_mode!r}"
            ) from None
        model = os.fspath(model) if isinstance(model, os.PathLike) else model
        engine_options = {"model": model, "device": device, **options}
        engine = engine_for(
            reranker,
            backend,
            on_error,
            {k: v for k, v in engine_options.items() if v is not None},
        )
        fields: dict[str, Any] = {
            "top_n": top_n,
            "min_score": min_score,
            "backend": None if reranker is not None else backend,
            "model": model,
            "device": device,
            "keep_retrieval_score": keep_retrieval_score,
            "metadata_mode": mode,
            "on_error": engine.on_error,
        }
        if callback_manager is not None:
            fields["callback_manager"] = callback_manager
        super().__init__(**fields)
        self._reranker = engine

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
        query, texts = self._inputs(nodes, query_bundle)
        if not texts:
            return []
        with self._events(nodes, query_bundle, query) as finish:
            return finish(
                self._reranker.rerank(query, texts, top_n=self.top_n, min_score=self.min_score)
            )

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        query, texts = self._inputs(nodes, query_bundle)
        if not texts:
            return []
        with self._events(nodes, query_bundle, query) as finish:
            return finish(
                await self._reranker.arerank(
                    query, texts, top_n=self.top_n, min_score=self.min_score
                )
            )

    @contextmanager
    def _events(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None, query: str
    ) -> Iterator[Callable[[list[RankedText]], list[NodeWithScore]]]:
        """LlamaIndex's rerank events around one call; yields what turns results into nodes."""
        model_name = self._model_name()
        top_k = self.top_n or self._reranker.top_n or len(nodes)
        dispatcher.event(
            ReRankStartEvent(query=query_bundle, nodes=nodes, top_n=top_k, model_name=model_name)
        )
        payload: dict[str, Any] = {
            EventPayload.NODES: nodes,
            EventPayload.QUERY_STR: query,
            EventPayload.MODEL_NAME: model_name,
            EventPayload.TOP_K: top_k,
        }
        with self.callback_manager.event(CBEventType.RERANKING, payload=payload) as event:

            def finish(ranked: list[RankedText]) -> list[NodeWithScore]:
                out = self._copies(nodes, ranked)
                event.on_end(payload={EventPayload.NODES: out})
                dispatcher.event(ReRankEndEvent(nodes=out))
                return out

            yield finish

    # ------------------------------------------------------------------ conversion

    def _inputs(
        self, nodes: Sequence[NodeWithScore], query_bundle: QueryBundle | None
    ) -> tuple[str, list[str]]:
        if query_bundle is None:
            raise EmptyQueryError(
                "RerankPostprocessor needs the query: call postprocess_nodes(nodes, "
                "query_bundle=QueryBundle(...)) or query_str=..."
            )
        query = query_bundle.query_str
        if not isinstance(query, str) or not query.strip():
            raise EmptyQueryError(f"query must be a non-blank string, got {query!r:.80}")
        texts = []
        for i, n in enumerate(nodes):
            if not isinstance(n, NodeWithScore):
                raise InvalidTextError(
                    f"nodes[{i}] must be a NodeWithScore, got {type(n).__name__}", index=i
                )
            texts.append(n.node.get_content(metadata_mode=self.metadata_mode))
        return query, texts

    def _copies(
        self, nodes: Sequence[NodeWithScore], ranked: list[RankedText]
    ) -> list[NodeWithScore]:
        out = []
        for r in ranked:
            src = nodes[r.index].node
            update: dict[str, Any] = {"metadata": dict(src.metadata)}
            if self.keep_retrieval_score:
                # hidden from the text that models and LLMs read: the copy reads as before
                update["metadata"][RETRIEVAL_SCORE] = nodes[r.index].score
                update["excluded_embed_metadata_keys"] = [
                    *src.excluded_embed_metadata_keys,
                    RETRIEVAL_SCORE,
                ]
                update["excluded_llm_metadata_keys"] = [
                    *src.excluded_llm_metadata_keys,
                    RETRIEVAL_SCORE,
                ]
            out.append(
                NodeWithScore(
                    node=src.model_copy(update=update), score=r.score if r.scored else None
                )
            )
        return out

    def _model_name(self) -> str:
        backend = self._reranker.backend
        return str(self.model or getattr(backend, "model_id", None) or type(backend).__name__)
