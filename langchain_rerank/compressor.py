"""``RerankCompressor``: crossrank as a LangChain document compressor."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict
from rerank_core.adapter_support import RerankEventData

from ._documents import scored_copies, texts_of_documents
from ._events import aemit, emit
from ._options import RerankOptions

__all__ = ["RerankCompressor"]


class RerankCompressor(RerankOptions, BaseDocumentCompressor):
    """Rerank documents with a cross-encoder, e.g. inside ``ContextualCompressionRetriever``.

    Returns copies, best first, with ``metadata["relevance_score"]``; ``Document.id``
    is kept and the input documents are never changed. Takes backend options
    (``backend=``, ``model=``, ``device=``, ``batch_size=``, ``cache=``, ...) or a
    ready ``reranker=Reranker(...)``. Emits the ``crossrank_rerank`` custom callback
    event with the rank-1 score and the confidence flag.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        cut = self._cut()
        texts = texts_of_documents(documents)
        ranked = cut.rerank(self._reranker, query, texts, self._first_stage(documents, cut))
        data = RerankEventData.of(self._reranker, query, cut, len(documents), model=self.model)
        emit(callbacks, data.outcome(ranked))
        return scored_copies(documents, ranked, self._evidence())

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        texts = texts_of_documents(documents)
        cut = self._cut()
        first = self._first_stage(documents, cut)
        ranked = await cut.arerank(self._reranker, query, texts, first)
        data = RerankEventData.of(self._reranker, query, cut, len(documents), model=self.model)
        await aemit(callbacks, data.outcome(ranked))
        return scored_copies(documents, ranked, self._evidence())
