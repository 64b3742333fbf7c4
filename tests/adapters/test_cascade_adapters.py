"""A Cascade wherever the adapters take a ready Reranker: ``RerankPostprocessor``,
``RerankCompressor`` and ``RerankRetriever``, sync and async, with the deterministic
keyword backend (two engines, coarse then fine); a cascade whose stages fuse gets each
item's first-stage score from the adapter."""

# ruff: noqa: E402  (the framework imports come after need(): skip only when absent)
from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from helpers import KeywordBackend, need

need("llama_index.core")
need("langchain_core")

from langchain_core.documents import Document
from langchain_core.runnables import RunnableLambda
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from rerank_core import Cascade, ConfigError, FirstStageScoreError, Reranker, Stage
from rerank_core.adapter_support import Cut, RerankEventData

from langchain_rerank import RerankCompressor, RerankRetriever
from llamaindex_rerank import RerankPostprocessor

TEXTS = [
    "dogs chase cats in the park",
    "the stock market fell sharply today",
    "cats sleep most of the day",
    "a cat and a dog became friends",
    "cat food prices",
    "dog training tips for a cat owner",
]
QUERY = "cat dog friends"
ADAPTERS = ["llamaindex", "compressor", "retriever"]


def cascade(keep: int = 3) -> tuple[Cascade, KeywordBackend, KeywordBackend]:
    small, large = KeywordBackend(tag="small"), KeywordBackend(tag="large")
    c = Cascade([(Reranker(small, cache=None), keep), Reranker(large, cache=None)])
    return c, small, large


def docs_of(texts: Sequence[str]) -> list[Document]:
    return [Document(page_content=t, id=f"d{i}", metadata={"i": i}) for i, t in enumerate(texts)]


def nodes_of(texts: Sequence[str]) -> list[NodeWithScore]:
    return [
        NodeWithScore(node=TextNode(text=t, id_=f"n{i}"), score=0.5) for i, t in enumerate(texts)
    ]


def fixed(docs: list[Document]) -> RunnableLambda[str, list[Document]]:
    return RunnableLambda(lambda _q: list(docs), name="FixedDocs")


def run(kind: str, engine: Cascade, *, is_async: bool = False, **fields: Any) -> list[Any]:
    """(text, score) per result through one adapter."""
    if kind == "llamaindex":
        pp = RerankPostprocessor(reranker=engine, metadata_mode="none", **fields)
        assert pp.reranker is engine and pp.backend is None
        nodes = nodes_of(TEXTS)
        if is_async:
            out = asyncio.run(pp.apostprocess_nodes(nodes, query_bundle=QueryBundle(QUERY)))
        else:
            out = pp.postprocess_nodes(nodes, query_str=QUERY)
        return [(n.node.get_content(), n.score) for n in out]
    docs = docs_of(TEXTS)
    if kind == "compressor":
        comp = RerankCompressor(reranker=engine, **fields)
        got = (
            asyncio.run(comp.acompress_documents(docs, QUERY))
            if is_async
            else comp.compress_documents(docs, QUERY)
        )
    else:
        rr = RerankRetriever(base_retriever=fixed(docs), reranker=engine, **fields)
        got = asyncio.run(rr.ainvoke(QUERY)) if is_async else rr.invoke(QUERY)
    return [(d.page_content, d.metadata["relevance_score"]) for d in got]


@pytest.mark.parametrize("is_async", [False, True])
@pytest.mark.parametrize("kind", ADAPTERS)
def test_adapters_take_a_cascade(kind: str, is_async: bool) -> None:
    c, small, large = cascade(keep=3)
    want = c.rerank(QUERY, TEXTS, top_n=2)
    small.calls.clear()
    large.calls.clear()
    got = run(kind, c, is_async=is_async, top_n=2)
    assert [t for t, _ in got] == [r.text for r in want]
    assert [s for _, s in got] == [r.score for r in want]
    assert small.pairs_seen == len(TEXTS) and large.pairs_seen == 3  # both stages ran once


@pytest.mark.parametrize("kind", ADAPTERS)
def test_texts_dropped_by_an_earlier_stage_come_last_without_a_score(kind: str) -> None:
    c, _, _ = cascade(keep=2)
    got = run(kind, c)
    assert len(got) == len(TEXTS)
    assert all(s is not None for _, s in got[:2])
    assert all(s is None for _, s in got[2:])  # not scored by the final stage


def test_a_cascade_comes_without_backend_options() -> None:
    c, _, _ = cascade()
    with pytest.raises(ConfigError, match="not both"):
        RerankCompressor(reranker=c, batch_size=4)
    with pytest.raises(ConfigError, match="not both"):
        RerankPostprocessor(reranker=c, model="x")
    with pytest.raises(ConfigError, match="Reranker or Cascade"):
        RerankCompressor(reranker=object())  # type: ignore[arg-type]


def test_event_data_names_the_cascade() -> None:
    c, _, _ = cascade()
    data = RerankEventData.of(c, QUERY, Cut(top_n=3), len(TEXTS))
    assert "→" in data.model_name and data.top_n == 3
    ranked = c.rerank(QUERY, TEXTS)
    assert data.outcome(ranked)["dropped"] == 3


# ---------------------------------------------------------------------- stages that fuse

#: the first stage's scores of TEXTS (distinct, so a score given to the wrong text shows)
FIRST = [0.9, 0.1, 0.8, 0.2, 0.7, 0.3]


def fusing_cascade(keep: int = 3) -> tuple[Cascade, KeywordBackend, KeywordBackend]:
    small, large = KeywordBackend(tag="small"), KeywordBackend(tag="large")
    stages = [Stage(Reranker(small, cache=None), keep, fusion="rrf"), Reranker(large, cache=None)]
    return Cascade(stages), small, large


def run_scored(kind: str, engine: Cascade, *, is_async: bool = False) -> list[Any]:
    """(text, score) per result, each input carrying its first-stage score the adapter's
    way (NodeWithScore.score, a Document's metadata["score"])."""
    if kind == "llamaindex":
        pp = RerankPostprocessor(reranker=engine, metadata_mode="none")
        nodes = [
            NodeWithScore(node=TextNode(text=t, id_=f"n{i}"), score=s)
            for i, (t, s) in enumerate(zip(TEXTS, FIRST, strict=True))
        ]
        if is_async:
            out = asyncio.run(pp.apostprocess_nodes(nodes, query_bundle=QueryBundle(QUERY)))
        else:
            out = pp.postprocess_nodes(nodes, query_str=QUERY)
        return [(n.node.get_content(), n.score) for n in out]
    docs = [
        Document(page_content=t, id=f"d{i}", metadata={"score": s})
        for i, (t, s) in enumerate(zip(TEXTS, FIRST, strict=True))
    ]
    if kind == "compressor":
        comp = RerankCompressor(reranker=engine)
        got = (
            asyncio.run(comp.acompress_documents(docs, QUERY))
            if is_async
            else comp.compress_documents(docs, QUERY)
        )
    else:
        rr = RerankRetriever(base_retriever=fixed(docs), reranker=engine)
        got = asyncio.run(rr.ainvoke(QUERY)) if is_async else rr.invoke(QUERY)
    return [(d.page_content, d.metadata["relevance_score"]) for d in got]


@pytest.mark.parametrize("is_async", [False, True])
@pytest.mark.parametrize("kind", ADAPTERS)
def test_a_cascade_whose_stages_fuse_gets_the_first_stage_scores(kind: str, is_async: bool) -> None:
    c, small, large = fusing_cascade(keep=2)
    assert Cut().fuses(c)
    want = c.rerank(QUERY, TEXTS, first_stage_scores=FIRST)
    plain, _, _ = cascade(keep=2)
    assert [r.index for r in want][:2] != [r.index for r in plain.rerank(QUERY, TEXTS)][:2]
    small.calls.clear()
    large.calls.clear()
    got = run_scored(kind, c, is_async=is_async)
    assert [t for t, _ in got] == [r.text for r in want]
    assert [s for _, s in got[:2]] == [r.score for r in want[:2]]
    assert small.pairs_seen == len(TEXTS) and large.pairs_seen == 2


def test_a_fusing_cascade_needs_every_first_stage_score() -> None:
    c, small, _ = fusing_cascade()
    docs = docs_of(TEXTS)  # no "score" in their metadata
    with pytest.raises(FirstStageScoreError, match=r"documents\[0\]"):
        RerankCompressor(reranker=c).compress_documents(docs, QUERY)
    with pytest.raises(FirstStageScoreError, match=r"nodes\[0\]"):
        RerankPostprocessor(reranker=c).postprocess_nodes(
            [NodeWithScore(node=TextNode(text=t)) for t in TEXTS], query_str=QUERY
        )
    assert small.calls == []


def test_an_adapter_fusion_on_a_cascade_is_a_config_error() -> None:
    c, _, _ = fusing_cascade()
    for fusion in ("rrf", "none"):  # "none" cannot turn a stage's fusion off
        with pytest.raises(ConfigError, match="fuses per stage"):
            RerankCompressor(reranker=c, fusion=fusion)
        with pytest.raises(ConfigError, match="fuses per stage"):
            RerankPostprocessor(reranker=c, fusion=fusion)
    plain, _, _ = cascade()
    RerankCompressor(reranker=plain, fusion="none")  # nothing to turn off: fine
