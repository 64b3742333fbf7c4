"""Documents → texts for the engine, and ranked results → scored copies of the documents."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.documents import Document
from rerank_core import RankedText
from rerank_core.adapter_support import scored_items, texts_of, with_entries

__all__ = ["SCORE_KEY", "scored_copies", "texts_of_documents"]

SCORE_KEY = "relevance_score"


def texts_of_documents(documents: Sequence[Document]) -> list[str]:
    """The page content of each document; a non-Document is a typed error naming its index."""
    return texts_of(
        documents,
        Document,
        lambda doc: doc.page_content,
        name="documents",
        what="a langchain Document",
    )


def scored_copies(documents: Sequence[Document], ranked: Sequence[RankedText]) -> list[Document]:
    """Copies of the ranked documents, best first, with ``relevance_score`` in their metadata
    (``None`` when the engine could not score them under ``on_error="passthrough"``).
    ``Document.id`` and every other field are kept; the inputs are never touched."""
    return [
        doc.model_copy(update={"metadata": with_entries(doc.metadata, **{SCORE_KEY: score})})
        for doc, score in scored_items(documents, ranked)
    ]
