"""Nodes → texts for the engine, and ranked results → new nodes over copies of the nodes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle
from rerank_core import EmptyQueryError
from rerank_core.adapter_support import (
    EVIDENCE_KEYS,
    RERANK_SCORE,
    Evidence,
    check_query,
    evidence_entries,
    fusion_entries,
    one_of,
    ranked_items,
    texts_of,
    with_entries,
)
from rerank_core.types import Ranking

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
    nodes: Sequence[NodeWithScore],
    ranked: Ranking,
    *,
    keep_retrieval_score: bool,
    evidence: Evidence,
) -> list[NodeWithScore]:
    """New ``NodeWithScore`` objects over copies of the ranked nodes, best first (score
    ``None`` when unscored). Each copy's metadata gets the best window's char span in the
    node's content and the window count (and the set's ``rerank_low_confidence`` when a
    threshold is set), with ``keep_retrieval_score`` the retrieval score too: all hidden
    from the text that embeddings, rerankers and LLMs read. ``evidence.return_text ==
    "window"`` makes a text node's copy carry only its best window (plus context);
    ``start_char_idx``/``end_char_idx`` follow."""
    out = []
    for item, r, score in ranked_items(nodes, ranked):
        src = item.node
        content = src.get_content(metadata_mode=MetadataMode.NONE)
        span = evidence.of(r, content)
        entries = {**evidence_entries(span, ranked), **fusion_entries(r)}
        if keep_retrieval_score:
            entries[RETRIEVAL_SCORE] = item.score
        update: dict[str, Any] = {
            "metadata": with_entries(src.metadata, **entries),
            "excluded_embed_metadata_keys": _hidden(src.excluded_embed_metadata_keys, entries),
            "excluded_llm_metadata_keys": _hidden(src.excluded_llm_metadata_keys, entries),
        }
        if span.text is not None and "text" in type(src).model_fields:
            update["text"] = span.text
            offset = getattr(src, "start_char_idx", None)
            if offset is not None and content == getattr(src, "text", None):
                update["start_char_idx"] = offset + span.text_start
                update["end_char_idx"] = offset + span.text_start + len(span.text)
        out.append(NodeWithScore(node=src.model_copy(update=update), score=score))
    return out


def _hidden(keys: list[str], entries: dict[str, Any]) -> list[str]:
    fused = (RERANK_SCORE,) if RERANK_SCORE in entries else ()
    extra = [k for k in (RETRIEVAL_SCORE, *EVIDENCE_KEYS, *fused) if k not in keys]
    return [*keys, *extra]
