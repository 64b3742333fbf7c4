"""Documents → texts for the engine, and ranked results → scored copies of the documents."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.documents import Document
from rerank_core import InvalidTextError, RankedText

__all__ = ["SCORE_KEY", "scored_copies", "texts_of"]

SCORE_KEY = "relevance_score"


def texts_of(documents: Sequence[Document]) -> list[str]:
    """The page content of each document; a non-Document is a typed error naming its index."""
    texts = []
    for i, doc in enumerate(documents):
        if not isinstance(doc, Document):
            raise InvalidTextError(
                f"documents[{i}] must be a langchain Document, got {type(doc).__name__}", index=i
            )
        texts.append(doc.page_content)
    return texts


def scored_copies(documents: Sequence[Document], ranked: list[RankedText]) -> list[Document]:
    """Copies of the ranked documents, best first, with ``relevance_score`` in their metadata
    (``None`` when the engine could not score them under ``on_error="passthrough"``).
    ``Document.id`` and every other field are kept; the inputs are never touched."""
    out = []
    for r in ranked:
        doc = documents[r.index]
        metadata = {**doc.metadata, SCORE_KEY: r.score if r.scored else None}
        out.append(doc.model_copy(update={"metadata": metadata}))
    return out
