"""``RerankRetriever``: a base retriever's results reranked by crossrank (langchain-core only)."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever, RetrieverLike
from pydantic import ConfigDict
from rerank_core.adapter_support import RerankEventData, check_query

from ._documents import scored_copies, texts_of_documents
from ._events import aemit, emit
from ._options import RerankOptions

__all__ = ["RerankRetriever"]


class RerankRetriever(RerankOptions, BaseRetriever):
    """Retrieve with ``base_retriever``, then rerank with a cross-encoder.

    ``RerankRetriever(base_retriever=vectorstore.as_retriever(search_kwargs={"k": 30}),
    top_n=5)``. ``invoke(query, top_n=..., min_score=..., confidence_threshold=...,
    deadline_ms=...)`` overrides them per call; other keywords go to the base retriever,
    which gets this run's callbacks. Results are copies with
    ``metadata["relevance_score"]``; the run's ``crossrank_rerank`` custom event carries
    the rank-1 score and the confidence flag.
    """

    base_retriever: RetrieverLike
    """The first-stage retriever (any runnable from a query string to documents)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        top_n: int | None = None,
        min_score: float | None = None,
        confidence_threshold: float | None = None,
        deadline_ms: float | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        cut = self._cut(top_n, min_score, confidence_threshold, deadline_ms)
        check_query(query)
        docs = self.base_retriever.invoke(
            query, config={"callbacks": run_manager.get_child()}, **kwargs
        )
        texts = texts_of_documents(docs)
        ranked = cut.rerank(self._reranker, query, texts, self._first_stage(docs, cut))
        data = RerankEventData.of(self._reranker, query, cut, len(docs), model=self.model)
        emit(run_manager, data.outcome(ranked))
        return scored_copies(docs, ranked, self._evidence())

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        top_n: int | None = None,
        min_score: float | None = None,
        confidence_threshold: float | None = None,
        deadline_ms: float | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        cut = self._cut(top_n, min_score, confidence_threshold, deadline_ms)
        check_query(query)
        docs = await self.base_retriever.ainvoke(
            query, config={"callbacks": run_manager.get_child()}, **kwargs
        )
        texts = texts_of_documents(docs)
        ranked = await cut.arerank(self._reranker, query, texts, self._first_stage(docs, cut))
        data = RerankEventData.of(self._reranker, query, cut, len(docs), model=self.model)
        await aemit(run_manager, data.outcome(ranked))
        return scored_copies(docs, ranked, self._evidence())
