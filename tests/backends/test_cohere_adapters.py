"""The Cohere backend (real SDK, loopback ``/v2/rerank`` server) through both adapters,
built from backend options and from a ready ``Reranker``; the API key stays out of
every serialized form."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from _cohere_server import Action, CohereLikeServer, relevance
from helpers import need
from rerank_core import AuthenticationError, Reranker

need("cohere")
need("llama_index.core")
need("langchain_core")

from langchain_core.documents import Document  # noqa: E402
from langchain_core.load import dumps  # noqa: E402
from langchain_core.runnables import RunnableLambda  # noqa: E402
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode  # noqa: E402

from langchain_rerank import RerankCompressor, RerankRetriever  # noqa: E402
from llamaindex_rerank import RerankPostprocessor  # noqa: E402

KEY = "sk-adapter-test-SECRET-42"
QUERY = "vitamin c deficiency scurvy"
TEXTS = [
    "Paris is the capital of France.",
    "Scurvy is caused by a deficiency of vitamin C.",
    "Vitamin D comes from sunlight.",
    "Scurvy and vitamin deficiency on long voyages.",
]
REF = [relevance(QUERY, t) for t in TEXTS]  # 0, 1, 0.25, 0.75


@pytest.fixture
def server() -> Iterator[CohereLikeServer]:
    srv = CohereLikeServer()
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CO_API_KEY", "COHERE_API_KEY", "CO_API_URL"):
        monkeypatch.delenv(var, raising=False)


def nodes() -> list[NodeWithScore]:
    return [
        NodeWithScore(node=TextNode(text=t, id_=f"n{i}"), score=0.5) for i, t in enumerate(TEXTS)
    ]


def documents() -> list[Document]:
    return [Document(page_content=t, id=f"d{i}") for i, t in enumerate(TEXTS)]


def test_llamaindex_from_backend_options(server: CohereLikeServer) -> None:
    pp = RerankPostprocessor(backend="cohere", api_key=KEY, base_url=server.url, top_n=2)
    out = pp.postprocess_nodes(nodes(), query_str=QUERY)
    assert [(n.node.node_id, n.score) for n in out] == [("n1", 1.0), ("n3", 0.75)]
    (req,) = server.rerank_requests
    assert sorted(req.body["documents"]) == sorted(TEXTS)  # one request, in length order
    assert req.headers["authorization"] == f"Bearer {KEY}"
    for shown in (repr(pp), str(pp.to_dict()), pp.to_json(), pp.model_dump_json()):
        assert KEY not in shown


async def test_llamaindex_async_with_a_ready_reranker(server: CohereLikeServer) -> None:
    rr = Reranker("cohere", api_key=KEY, base_url=server.url)
    pp = RerankPostprocessor(reranker=rr, top_n=3)
    out = await pp.apostprocess_nodes(nodes(), query_bundle=QueryBundle(QUERY))
    assert [(n.node.node_id, n.score) for n in out] == [("n1", 1.0), ("n3", 0.75), ("n2", 0.25)]


def test_langchain_from_backend_options(server: CohereLikeServer) -> None:
    comp = RerankCompressor(backend="cohere", api_key=KEY, base_url=server.url, top_n=2)
    out = comp.compress_documents(documents(), QUERY)
    assert [(d.id, d.metadata["relevance_score"]) for d in out] == [("d1", 1.0), ("d3", 0.75)]
    for shown in (repr(comp), comp.model_dump_json(), json.dumps(comp.model_dump()), dumps(comp)):
        assert KEY not in shown


async def test_langchain_async_with_a_ready_reranker(server: CohereLikeServer) -> None:
    class NoSync:
        def rerank(self, **_: object) -> None:
            raise AssertionError("the sync client was used from async code")

    rr = Reranker("cohere", api_key=KEY, base_url=server.url, client=NoSync())
    comp = RerankCompressor(reranker=rr)
    out = await comp.acompress_documents(documents(), QUERY)
    assert [d.metadata["relevance_score"] for d in out] == sorted(REF, reverse=True)
    retriever = RerankRetriever(
        base_retriever=RunnableLambda(lambda q: documents()), reranker=rr, top_n=1
    )
    (top,) = await retriever.ainvoke(QUERY)
    assert top.id == "d1"


def test_one_engine_and_cache_serve_both_frameworks(server: CohereLikeServer) -> None:
    rr = Reranker("cohere", api_key=KEY, base_url=server.url)
    RerankPostprocessor(reranker=rr).postprocess_nodes(nodes(), query_str=QUERY)
    out = RerankCompressor(reranker=rr, top_n=1).compress_documents(documents(), QUERY)
    assert out[0].id == "d1"
    assert len(server.rerank_requests) == 1  # LangChain's call came from the shared cache


def test_errors_through_the_adapters(server: CohereLikeServer) -> None:
    server.default = Action(shape="status", status=401, echo_auth=True)
    pp = RerankPostprocessor(backend="cohere", api_key=KEY, base_url=server.url)
    with pytest.raises(AuthenticationError) as info:
        pp.postprocess_nodes(nodes(), query_str=QUERY)
    assert KEY not in str(info.value)
    comp = RerankCompressor(
        backend="cohere", api_key=KEY, base_url=server.url, on_error="passthrough"
    )
    out = comp.compress_documents(documents(), QUERY)
    assert [d.id for d in out] == ["d0", "d1", "d2", "d3"]  # input order, marked unscored
    assert all(d.metadata["relevance_score"] is None for d in out)
