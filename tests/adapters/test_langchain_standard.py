"""LangChain's own standard retriever tests (package langchain-tests) run against
RerankRetriever over a real vector store, with the real MiniLM cross-encoder."""

# ruff: noqa: E402  (the framework imports come after need(): skip only when absent)
from __future__ import annotations

from typing import Any

import pytest
from helpers import need

need("langchain_core")
need("langchain_tests")

from adapter_helpers import langchain_embeddings, sample_queries, sample_rows
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_tests.integration_tests import RetrieversIntegrationTests
from rerank_core import Reranker

from langchain_rerank import RerankRetriever

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def standard_base_retriever(bi_encoder: Any) -> Any:
    docs = [Document(page_content=r["body"], id=r["id"]) for r in sample_rows(30)]
    store = InMemoryVectorStore.from_documents(docs, langchain_embeddings(bi_encoder))
    return store.as_retriever(search_kwargs={"k": 10})


class TestRerankRetrieverStandard(RetrieversIntegrationTests):
    """``top_n`` is our number-of-results argument, in the constructor and per call."""

    _params: dict[str, Any] = {}  # noqa: RUF012 - filled per test by the fixture below

    @pytest.fixture(autouse=True)
    def _real_parts(self, standard_base_retriever: Any, minilm_reranker_backend: Any) -> None:
        type(self)._params = {
            "base_retriever": standard_base_retriever,
            "reranker": Reranker(minilm_reranker_backend),
            "top_n": 5,
        }

    @property
    def retriever_constructor(self) -> type[BaseRetriever]:
        return RerankRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return dict(self._params)

    @property
    def retriever_query_example(self) -> str:
        return str(sample_queries()[4]["text"])

    @property
    def num_results_arg_name(self) -> str:
        return "top_n"
