"""Nodes → texts for the engine, and ranked results → new nodes over copies of the nodes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle
from rerank_core import EmptyQueryError, RankedText
from rerank_core.adapter_support import (
    check_query,
    one_of,
    scored_items,
    texts_of,
    with_entries,
)

__all__ = ["RETRIEVAL_SCORE", "metadata_mode_of", "query_of", "scored_copies", "texts_of_nodes"]

RETRIEVAL_SCORE = "retrieval_score"


def metadata_mode_of(value: MetadataMode | str) -> MetadataMode:
    return MetadataMode(one_of("metadata_mode", value, [m.value for m in MetadataMode]))


def query_of(query_bundle: QueryBundle | None) -> str:
    if query_bundle is None:
        raise EmptyQueryError(
            "RerankPostprocessor needs the query: call postprocess_nodes(nodes, "
            "query_bundle=QueryBundle(...)) or query_str=..."
        )
    return check_query(query_bundle.query_str)


def texts_of_nodes(nodes: Sequence[NodeWithScore], mode: MetadataMode) -> list[str]:
    """Each node's content as ``mode`` reads it; a non-node is a typed error naming its index."""
    return texts_of(
        nodes,
        NodeWithScore,
        lambda n: n.node.get_content(metadata_mode=mode),
        name="nodes",
        what="a NodeWithScore",
    )


def scored_copies(
    nodes: Sequence[NodeWithScore], ranked: Sequence[RankedText], *, keep_retrieval_score: bool
) -> list[NodeWithScore]:
    """New ``NodeWithScore`` objects over copies of the ranked nodes, best first (score
    ``None`` when unscored). With ``keep_retrieval_score`` the copy's metadata keeps the
    retrieval score, hidden from the text that embeddings, rerankers and LLMs read."""
    out = []
    for item, score in scored_items(nodes, ranked):
        src = item.node
        update: dict[str, Any] = {"metadata": dict(src.metadata)}
        if keep_retrieval_score:
            update = {
                "metadata": with_entries(src.metadata, **{RETRIEVAL_SCORE: item.score}),
                "excluded_embed_metadata_keys": _hidden(src.excluded_embed_metadata_keys),
                "excluded_llm_metadata_keys": _hidden(src.excluded_llm_metadata_keys),
            }
        out.append(NodeWithScore(node=src.model_copy(update=update), score=score))
    return out


def _hidden(keys: list[str]) -> list[str]:
    return [*keys] if RETRIEVAL_SCORE in keys else [*keys, RETRIEVAL_SCORE]
