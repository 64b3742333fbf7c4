"""Documents → texts for the engine, and ranked results → scored copies of the documents."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.documents import Document
from rerank_core.adapter_support import (
    Evidence,
    evidence_entries,
    fusion_entries,
    ranked_items,
    texts_of,
    with_entries,
)
from rerank_core.types import Ranking

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


def scored_copies(
    documents: Sequence[Document], ranked: Ranking, evidence: Evidence | None = None
) -> list[Document]:
    """Copies of the ranked documents, best first, with ``relevance_score`` in their metadata
    (``None`` when the engine did not score them: passthrough, or a deadline passed), the
    best window's char span (``rerank_window_start``/``_end``), the window count
    (``rerank_window_count``) and, with a threshold, ``rerank_low_confidence``. With
    ``evidence.return_text == "window"`` the copy's ``page_content`` is the best window
    (plus context). ``Document.id`` and every other field are kept; the inputs are never
    touched."""
    evidence = evidence or Evidence()
    out = []
    for doc, r, score in ranked_items(documents, ranked):
        span = evidence.of(r)
        entries = {SCORE_KEY: score, **evidence_entries(span, ranked), **fusion_entries(r)}
        update: dict[str, Any] = {"metadata": with_entries(doc.metadata, **entries)}
        if span.text is not None:
            update["page_content"] = span.text
        out.append(doc.model_copy(update=update))
    return out
