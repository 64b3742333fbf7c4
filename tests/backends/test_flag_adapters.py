"""The BGE backend (a tiny local XLM-R loaded by FlagEmbedding) through both adapters,
built from backend options and from a ready ``Reranker``; scores checked against
``FlagReranker.compute_score`` on the same model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _tiny_models import sample_texts, tiny_xlmr_once
from helpers import need
from rerank_core import Reranker, WindowConfig

FlagEmbedding = need("FlagEmbedding")
need("llama_index.core")
need("langchain_core")

from langchain_core.documents import Document  # noqa: E402
from langchain_core.runnables import RunnableLambda  # noqa: E402
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode  # noqa: E402

from langchain_rerank import RerankCompressor, RerankRetriever  # noqa: E402
from llamaindex_rerank import RerankPostprocessor  # noqa: E402

pytestmark = pytest.mark.model

QUERY = "vaccine efficacy in older adults"
TEXTS = [" ".join(t.split()[:40]) for t in sample_texts()[:8]]
WINDOW = WindowConfig(overlap=8)


@pytest.fixture(scope="module")
def xlmr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_xlmr_once(tmp_path_factory)


@pytest.fixture(scope="module")
def ref_scores(xlmr_dir: Path) -> list[float]:
    ref = FlagEmbedding.FlagReranker(str(xlmr_dir), use_fp16=False, devices="cpu", max_length=128)
    scores: list[float] = ref.compute_score([[QUERY, t] for t in TEXTS])
    return scores


@pytest.fixture(scope="module")
def engine(xlmr_dir: Path) -> Reranker:
    return Reranker("bge", model=str(xlmr_dir), window=WINDOW)


def nodes() -> list[NodeWithScore]:
    return [
        NodeWithScore(node=TextNode(text=t, id_=f"n{i}"), score=1.0 - i / 10)
        for i, t in enumerate(TEXTS)
    ]


def documents() -> list[Document]:
    return [Document(page_content=t, id=f"d{i}", metadata={"i": i}) for i, t in enumerate(TEXTS)]


def best(scores: list[float], k: int) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]


def check_nodes(out: list[NodeWithScore], ref: list[float], k: int) -> None:
    assert [n.node.node_id for n in out] == [f"n{i}" for i in best(ref, k)]
    for n in out:
        assert n.score == pytest.approx(ref[int(n.node.node_id[1:])], abs=1e-5)


def check_docs(out: list[Document], ref: list[float], k: int) -> None:
    assert [d.id for d in out] == [f"d{i}" for i in best(ref, k)]
    for d in out:
        assert d.metadata["relevance_score"] == pytest.approx(ref[d.metadata["i"]], abs=1e-5)


def test_llamaindex_from_backend_options(xlmr_dir: Path, ref_scores: list[float]) -> None:
    pp = RerankPostprocessor(backend="bge", model=str(xlmr_dir), window=WINDOW, top_n=3)
    given = nodes()
    out = pp.postprocess_nodes(given, query_str=QUERY)
    check_nodes(out, ref_scores, 3)
    assert [n.score for n in given] == [n.score for n in nodes()]  # inputs untouched
    assert pp.to_dict()["backend"] == "bge"


async def test_llamaindex_async_with_a_ready_reranker(
    engine: Reranker, ref_scores: list[float]
) -> None:
    pp = RerankPostprocessor(reranker=engine, top_n=4)
    out = await pp.apostprocess_nodes(nodes(), query_bundle=QueryBundle(QUERY))
    check_nodes(out, ref_scores, 4)


def test_langchain_compressor_from_backend_options(xlmr_dir: Path, ref_scores: list[float]) -> None:
    comp = RerankCompressor(backend="bge", model=str(xlmr_dir), window=WINDOW, top_n=3)
    check_docs(list(comp.compress_documents(documents(), QUERY)), ref_scores, 3)


async def test_langchain_async_and_retriever_with_a_ready_reranker(
    engine: Reranker, ref_scores: list[float]
) -> None:
    comp = RerankCompressor(reranker=engine, top_n=2)
    check_docs(list(await comp.acompress_documents(documents(), QUERY)), ref_scores, 2)
    retriever = RerankRetriever(
        base_retriever=RunnableLambda(lambda q: documents()), reranker=engine
    )
    check_docs(retriever.invoke(QUERY, top_n=5), ref_scores, 5)


def test_sigmoid_through_the_adapters(xlmr_dir: Path) -> None:
    ref = FlagEmbedding.FlagReranker(str(xlmr_dir), devices="cpu", max_length=128)
    probs: list[float] = ref.compute_score([[QUERY, t] for t in TEXTS], normalize=True)
    pp = RerankPostprocessor(backend="bge", model=str(xlmr_dir), window=WINDOW, normalize="sigmoid")
    check_nodes(pp.postprocess_nodes(nodes(), query_str=QUERY), probs, len(TEXTS))


def test_one_engine_serves_both_frameworks(xlmr_dir: Path, ref_scores: list[float]) -> None:
    rr = Reranker("bge", model=str(xlmr_dir), window=WINDOW)
    RerankPostprocessor(reranker=rr).postprocess_nodes(nodes(), query_str=QUERY)
    scored = rr.pairs_scored
    out = RerankCompressor(reranker=rr, top_n=3).compress_documents(documents(), QUERY)
    check_docs(list(out), ref_scores, 3)
    assert rr.pairs_scored == scored  # the second framework was served from the cache
    assert rr.cache_stats.hits >= len(TEXTS)


def test_long_document_windows_through_an_adapter(engine: Reranker) -> None:
    long_text = " ".join(" ".join(sample_texts()[30:40]).split()[:400])
    docs: list[Any] = [Document(page_content=long_text, id="long"), *documents()[:2]]
    out = RerankCompressor(reranker=engine).compress_documents(docs, QUERY)
    by_id = {d.id: d.metadata["relevance_score"] for d in out}
    (ranked,) = [r for r in engine.rerank(QUERY, [long_text]) if r.index == 0]
    assert ranked.n_windows > 1
    assert by_id["long"] == pytest.approx(ranked.score, abs=1e-6)
