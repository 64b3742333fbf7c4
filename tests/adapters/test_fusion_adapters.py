"""Score fusion through the adapters (issue 16): the same ranking as the engine's, the
reranker's own score kept in metadata, missing first-stage scores a typed error naming the
item, the field serialized canonically, a Cascade refused."""

# ruff: noqa: E402  (the framework imports come after need(): skip only when absent)
from __future__ import annotations

import asyncio
import json

import pytest
from helpers import KeywordBackend, need

need("llama_index.core")
need("langchain_core")

from langchain_core.documents import Document
from langchain_core.runnables import RunnableLambda
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode
from rerank_core import Cascade, ConfigError, FirstStageScoreError, Reranker
from rerank_core.cascade import Stage
from rerank_core.fusion import Fusion, fuse_scores

from langchain_rerank import RerankCompressor, RerankRetriever
from llamaindex_rerank import RerankPostprocessor

TEXTS = ["a cat sat", "a dog ran", "cat and dog", "nothing here"]
RERANK = [1.0, 1.0, 2.0, 0.0]  # keyword scores for "cat dog"
FIRST = [0.9, 0.1, 0.2, 0.8]
RRF_ORDER = [0, 2, 3, 1]


def _nodes(scores: list[float | None] = list(FIRST)) -> list[NodeWithScore]:  # noqa: B006
    return [
        NodeWithScore(node=TextNode(text=t, id_=f"n{i}"), score=s)
        for i, (t, s) in enumerate(zip(TEXTS, scores, strict=True))
    ]


def _docs(key: str = "score", scores: list[float | None] = list(FIRST)) -> list[Document]:  # noqa: B006
    return [
        Document(page_content=t, id=f"d{i}", metadata={key: s} if s is not None else {})
        for i, (t, s) in enumerate(zip(TEXTS, scores, strict=True))
    ]


def _expected(fusion: Fusion) -> list[int]:
    fused = fuse_scores(RERANK, FIRST, fusion)
    return sorted(range(4), key=lambda i: (-fused[i], i))


def test_llamaindex_rrf_uses_node_scores_and_keeps_rerank_score() -> None:
    post = RerankPostprocessor(reranker=Reranker(KeywordBackend()), fusion="rrf")
    nodes = _nodes()
    out = post.postprocess_nodes(nodes, query_bundle=QueryBundle("cat dog"))
    assert [n.node.node_id for n in out] == [f"n{i}" for i in RRF_ORDER]
    fused = fuse_scores(RERANK, FIRST, Fusion.rrf())
    assert [n.score for n in out] == pytest.approx([fused[i] for i in RRF_ORDER])
    assert [n.node.metadata["rerank_score"] for n in out] == [RERANK[i] for i in RRF_ORDER]
    hidden = out[0].node.excluded_llm_metadata_keys
    assert "rerank_score" in hidden and "rerank_score" not in out[0].node.get_content(
        metadata_mode=MetadataMode.LLM
    )
    assert [n.score for n in nodes] == FIRST and "rerank_score" not in nodes[0].node.metadata


def test_llamaindex_linear_tuple_serialized_canonically_and_async() -> None:
    post = RerankPostprocessor(reranker=Reranker(KeywordBackend()), fusion=("linear", 0.3))
    assert post.fusion == "linear:0.3"
    assert json.loads(post.to_json())["fusion"] == "linear:0.3"
    out = asyncio.run(post.apostprocess_nodes(_nodes(), query_bundle=QueryBundle("cat dog")))
    assert [int(n.node.node_id[1:]) for n in out] == _expected(Fusion.linear(0.3))


def test_llamaindex_missing_node_score_is_typed_error_naming_the_node() -> None:
    post = RerankPostprocessor(reranker=Reranker(KeywordBackend()), fusion="rrf")
    with pytest.raises(FirstStageScoreError, match=r"nodes\[2\].*NodeWithScore.score") as e:
        post.postprocess_nodes(_nodes([0.5, 0.4, None, 0.1]), query_bundle=QueryBundle("cat"))
    assert e.value.index == 2


def test_llamaindex_engine_default_fusion_and_none_override() -> None:
    engine = Reranker(KeywordBackend(), fusion="rrf")
    fused = RerankPostprocessor(reranker=engine)
    out = fused.postprocess_nodes(_nodes(), query_bundle=QueryBundle("cat dog"))
    assert [int(n.node.node_id[1:]) for n in out] == RRF_ORDER
    off = RerankPostprocessor(reranker=engine, fusion="none")
    out = off.postprocess_nodes(_nodes([None] * 4), query_bundle=QueryBundle("cat dog"))
    assert [int(n.node.node_id[1:]) for n in out] == [2, 0, 1, 3]
    assert "rerank_score" not in out[0].node.metadata


def test_without_fusion_node_scores_may_be_missing() -> None:
    post = RerankPostprocessor(reranker=Reranker(KeywordBackend()))
    out = post.postprocess_nodes(_nodes([None] * 4), query_bundle=QueryBundle("cat dog"))
    assert [n.score for n in out] == [2.0, 1.0, 1.0, 0.0]


@pytest.mark.parametrize("bad", ["borda", "linear:2", ("rrf", 0)])
def test_bad_fusion_is_config_error_at_construction(bad: object) -> None:
    with pytest.raises(ConfigError, match="fusion"):
        RerankPostprocessor(reranker=Reranker(KeywordBackend()), fusion=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="fusion"):
        RerankCompressor(reranker=Reranker(KeywordBackend()), fusion=bad)


def test_langchain_compressor_reads_metadata_key() -> None:
    comp = RerankCompressor(reranker=Reranker(KeywordBackend()), fusion="rrf")
    assert comp.fusion == "rrf" and comp.first_stage_score_key == "score"
    docs = _docs()
    out = comp.compress_documents(docs, "cat dog")
    assert [d.id for d in out] == [f"d{i}" for i in RRF_ORDER]
    fused = fuse_scores(RERANK, FIRST, Fusion.rrf())
    assert [d.metadata["relevance_score"] for d in out] == pytest.approx(
        [fused[i] for i in RRF_ORDER]
    )
    assert [d.metadata["rerank_score"] for d in out] == [RERANK[i] for i in RRF_ORDER]
    assert [d.metadata["score"] for d in docs] == FIRST and "rerank_score" not in docs[0].metadata
    other = RerankCompressor(
        reranker=Reranker(KeywordBackend()),
        fusion="linear:0.3",
        first_stage_score_key="relevance_score",
    )
    out = asyncio.run(other.acompress_documents(_docs("relevance_score"), "cat dog"))
    assert [int(d.id[1:]) for d in out] == _expected(Fusion.linear(0.3))
    dumped = other.model_dump()
    assert dumped["fusion"] == "linear:0.3" and dumped["first_stage_score_key"] == "relevance_score"


def test_langchain_missing_metadata_score_names_key_and_index() -> None:
    comp = RerankCompressor(reranker=Reranker(KeywordBackend()), fusion="rrf")
    with pytest.raises(FirstStageScoreError, match=r"documents\[1\] has metadata\['score'\]"):
        comp.compress_documents(_docs(scores=[0.3, None, 0.2, 0.1]), "cat dog")
    with pytest.raises(FirstStageScoreError, match=r"documents\[0\]"):
        comp.compress_documents(_docs("other"), "cat dog")


def test_langchain_retriever_fuses_base_retriever_scores() -> None:
    base = RunnableLambda(lambda q: _docs())
    retriever = RerankRetriever(
        base_retriever=base, reranker=Reranker(KeywordBackend()), fusion="rrf", top_n=2
    )
    out = retriever.invoke("cat dog")
    assert [d.id for d in out] == ["d0", "d2"]
    out = asyncio.run(retriever.ainvoke("cat dog", min_score=1.0))
    assert [d.id for d in out] == ["d0", "d2"]  # min_score reads the reranker's score


def test_fusion_on_a_cascade_is_config_error() -> None:
    cascade = Cascade(
        [Stage(Reranker(KeywordBackend()), keep=3), Stage(Reranker(KeywordBackend()))]
    )
    with pytest.raises(ConfigError, match="Cascade"):
        RerankPostprocessor(reranker=cascade, fusion="rrf")
    with pytest.raises(ConfigError, match="Cascade"):
        RerankCompressor(reranker=cascade, fusion="rrf")
