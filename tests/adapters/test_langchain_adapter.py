"""RerankCompressor and RerankRetriever through real LangChain objects (Documents,
InMemoryVectorStore retrievers, ContextualCompressionRetriever, callback handlers)."""

# ruff: noqa: E402  (the framework imports come after need(): skip only when absent)
from __future__ import annotations

import asyncio
import copy
import json
import math
from typing import Any
from uuid import UUID

import pytest
from helpers import need

need("langchain_core")
need("langchain_classic")

from adapter_helpers import (
    SECRET,
    SlowKeywordBackend,
    langchain_embeddings,
    sample_queries,
    sample_rows,
)
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda
from langchain_core.vectorstores import InMemoryVectorStore
from rerank_core import (
    BackendError,
    ConfigError,
    EmptyQueryError,
    InvalidTextError,
    Reranker,
)

from langchain_rerank import RerankCompressor, RerankRetriever

TEXTS = [
    "dogs chase cats in the park",
    "the stock market fell sharply today",
    "cats sleep most of the day",
    "a cat and a dog became friends",
]
QUERY = "cat dog friends"


def make_docs() -> list[Document]:
    return [
        Document(page_content=t, id=f"d{i}", metadata={"source": f"s{i}", "tags": ["x"]})
        for i, t in enumerate(TEXTS)
    ]


class RunRecorder(BaseCallbackHandler):
    """Records retriever runs: (name, run_id, parent_run_id)."""

    def __init__(self) -> None:
        self.starts: list[tuple[str, UUID, UUID | None]] = []
        self.ends: list[UUID] = []

    def on_retriever_start(
        self,
        serialized: dict[str, Any] | None,
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self.starts.append((kwargs.get("name") or "", run_id, parent_run_id))

    def on_retriever_end(self, documents: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.ends.append(run_id)


def list_retriever(docs: list[Document]) -> RunnableLambda[str, list[Document]]:
    """A first stage that returns the given documents for any query."""
    return RunnableLambda(lambda _q: list(docs), name="FixedDocs")


# ---------------------------------------------------------------- RerankCompressor


def test_compressor_returns_scored_copies_and_keeps_ids(keyword_reranker: Reranker) -> None:
    docs = make_docs()
    before = copy.deepcopy(docs)
    out = RerankCompressor(reranker=keyword_reranker).compress_documents(docs, QUERY)

    assert [d.id for d in out] == ["d3", "d0", "d1", "d2"]
    assert [d.metadata["relevance_score"] for d in out] == [3.0, 0.0, 0.0, 0.0]
    assert docs == before  # inputs and their metadata untouched
    for d in out:
        src = next(s for s in docs if s.id == d.id)
        assert d is not src and d.metadata is not src.metadata
        assert d.page_content == src.page_content
        ours = ("relevance_score", "rerank_window_start", "rerank_window_end")
        ours += ("rerank_window_count",)
        assert {k: v for k, v in d.metadata.items() if k not in ours} == src.metadata
    again = RerankCompressor(reranker=keyword_reranker).compress_documents(docs, QUERY)
    assert [(d.id, d.metadata) for d in again] == [(d.id, d.metadata) for d in out]


def test_compressor_top_n_and_min_score(keyword_reranker: Reranker) -> None:
    docs = make_docs()
    out = RerankCompressor(reranker=keyword_reranker, top_n=2).compress_documents(docs, QUERY)
    assert [d.id for d in out] == ["d3", "d0"]
    out = RerankCompressor(reranker=keyword_reranker, min_score=1.0).compress_documents(
        docs, "cats sleep"
    )
    assert [d.id for d in out] == ["d2", "d0"]


def test_compressor_empty_input_and_bad_input(keyword_backend: Any) -> None:
    comp = RerankCompressor(reranker=Reranker(keyword_backend))
    assert comp.compress_documents([], QUERY) == []
    assert asyncio.run(comp.acompress_documents([], QUERY)) == []
    assert keyword_backend.calls == []
    with pytest.raises(EmptyQueryError):
        comp.compress_documents(make_docs(), "  ")
    with pytest.raises(InvalidTextError) as info:
        comp.compress_documents([make_docs()[0], "raw text"], QUERY)  # type: ignore[list-item]
    assert info.value.index == 1


async def test_compressor_async_matches_sync_and_frees_the_loop() -> None:
    comp = RerankCompressor(reranker=Reranker(SlowKeywordBackend(delay=0.4), cache=None), top_n=3)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.02)
            ticks += 1

    task = asyncio.create_task(ticker())
    got = await comp.acompress_documents(make_docs(), QUERY)
    task.cancel()
    assert ticks >= 5
    want = comp.compress_documents(make_docs(), QUERY)
    assert [(d.id, d.metadata) for d in got] == [(d.id, d.metadata) for d in want]


def test_compressor_passthrough_keeps_order_with_score_none(keyword_backend: Any) -> None:
    keyword_backend.fail = RuntimeError("model crashed")
    with pytest.raises(BackendError):
        RerankCompressor(reranker=Reranker(keyword_backend)).compress_documents(make_docs(), QUERY)
    comp = RerankCompressor(reranker=Reranker(keyword_backend, on_error="passthrough"), top_n=2)
    out = comp.compress_documents(make_docs(), QUERY)
    assert [(d.id, d.metadata["relevance_score"]) for d in out] == [("d0", None), ("d1", None)]


def test_inside_contextual_compression_retriever(keyword_reranker: Reranker) -> None:
    docs = make_docs()
    before = copy.deepcopy(docs)
    ccr = ContextualCompressionRetriever(
        base_compressor=RerankCompressor(reranker=keyword_reranker, top_n=2),
        base_retriever=list_retriever(docs),
    )
    rec = RunRecorder()
    out = ccr.invoke(QUERY, config={"callbacks": [rec]})
    assert [d.id for d in out] == ["d3", "d0"]
    assert out[0].metadata["relevance_score"] == 3.0
    assert docs == before
    assert asyncio.run(ccr.ainvoke(QUERY)) == out
    assert rec.starts[0][0] == "ContextualCompressionRetriever"


# ---------------------------------------------------------------- RerankRetriever


def test_retriever_reranks_the_base_retriever_and_passes_callbacks(
    keyword_reranker: Reranker,
) -> None:
    docs = make_docs()
    rr = RerankRetriever(base_retriever=list_retriever(docs), reranker=keyword_reranker, top_n=3)
    assert isinstance(rr, BaseRetriever)
    rec = RunRecorder()
    out = rr.invoke(QUERY, config={"callbacks": [rec]})
    assert [d.id for d in out] == ["d3", "d0", "d1"]
    assert all("relevance_score" in d.metadata for d in out)
    assert all("relevance_score" not in d.metadata for d in docs)
    # the outer run is the retriever's; the base retriever ran as its child
    (outer_name, outer_id, outer_parent), *_ = rec.starts
    assert outer_name == "RerankRetriever" and outer_parent is None
    assert outer_id in rec.ends


def test_retriever_child_run_of_a_real_base_retriever(keyword_reranker: Reranker) -> None:
    from langchain_core.embeddings import DeterministicFakeEmbedding

    store = InMemoryVectorStore.from_documents(make_docs(), DeterministicFakeEmbedding(size=16))
    rr = RerankRetriever(
        base_retriever=store.as_retriever(search_kwargs={"k": 4}), reranker=keyword_reranker
    )
    rec = RunRecorder()
    out = rr.invoke(QUERY, config={"callbacks": [rec]})
    assert out[0].id == "d3"
    (outer, outer_id, _), (inner, _, inner_parent) = rec.starts
    assert outer == "RerankRetriever" and inner == "VectorStoreRetriever"
    assert inner_parent == outer_id  # callbacks reached the base retriever as a child run


def test_retriever_per_call_top_n_min_score_and_kwargs(keyword_reranker: Reranker) -> None:
    seen: list[dict[str, Any]] = []

    class KwargsRetriever(BaseRetriever):
        def _get_relevant_documents(self, query: str, *, run_manager: Any, **kw: Any) -> list:
            seen.append(kw)
            return make_docs()

    rr = RerankRetriever(base_retriever=KwargsRetriever(), reranker=keyword_reranker)
    assert len(rr.invoke(QUERY)) == 4
    assert [d.id for d in rr.invoke(QUERY, top_n=1)] == ["d3"]
    assert [d.id for d in rr.invoke("cats sleep", min_score=2.0)] == ["d2"]
    rr.invoke(QUERY, k=7)
    assert seen[-1] == {"k": 7}  # other keywords reach the base retriever
    with pytest.raises(ConfigError):
        rr.invoke(QUERY, top_n=0)


async def test_retriever_async_path(keyword_reranker: Reranker) -> None:
    rr = RerankRetriever(base_retriever=list_retriever(make_docs()), reranker=keyword_reranker)
    rec = RunRecorder()
    got = await rr.ainvoke(QUERY, config={"callbacks": [rec]}, top_n=2)
    assert [d.id for d in got] == ["d3", "d0"]
    assert rec.starts[0][0] == "RerankRetriever"
    assert await rr.abatch([QUERY, "cats sleep"]) == rr.batch([QUERY, "cats sleep"])


def test_retriever_empty_base_result_makes_no_model_call(keyword_backend: Any) -> None:
    rr = RerankRetriever(base_retriever=list_retriever([]), reranker=Reranker(keyword_backend))
    assert rr.invoke(QUERY) == []
    assert keyword_backend.calls == []


# ---------------------------------------------------------------- options and secrets


def test_options_and_no_secrets_in_repr_or_serialization(secret_backend: str) -> None:
    comp = RerankCompressor(backend=secret_backend, api_key=SECRET, top_n=2, batch_size=4)
    rr = RerankRetriever(
        base_retriever=list_retriever(make_docs()), backend=secret_backend, api_key=SECRET
    )
    for obj in (comp, rr):
        assert obj.backend == secret_backend
        assert obj.reranker.backend._api_key == SECRET  # type: ignore[attr-defined]
        dumped = obj.model_dump()
        assert "api_key" not in dumped
        for text in (repr(obj), str(obj), json.dumps(dumped, default=str)):
            assert SECRET not in text
    assert SECRET not in json.dumps(rr.to_json(), default=str)
    assert comp.reranker.batch_size == 4
    assert comp.compress_documents(make_docs(), QUERY)[0].id == "d3"


def test_one_engine_and_its_cache_serve_both_classes(keyword_backend: Any) -> None:
    shared = Reranker(keyword_backend)
    comp = RerankCompressor(reranker=shared)
    rr = RerankRetriever(base_retriever=list_retriever(make_docs()), reranker=shared)
    assert comp.backend is None and comp.reranker is shared and rr.reranker is shared
    comp.compress_documents(make_docs(), QUERY)
    scored = shared.pairs_scored
    rr.invoke(QUERY)
    assert shared.pairs_scored == scored  # all cache hits
    assert shared.cache_stats.hits >= len(TEXTS)


def test_bad_options_are_config_errors(keyword_reranker: Reranker) -> None:
    base = list_retriever(make_docs())
    with pytest.raises(ConfigError, match="top_n"):
        RerankCompressor(reranker=keyword_reranker, top_n=-1)
    with pytest.raises(ConfigError, match="min_score"):
        RerankRetriever(base_retriever=base, reranker=keyword_reranker, min_score=math.nan)
    with pytest.raises(ConfigError, match="not both"):
        RerankCompressor(reranker=keyword_reranker, device="cuda:0")
    with pytest.raises(ConfigError, match="on_error"):
        RerankRetriever(base_retriever=base, reranker=keyword_reranker, on_error="passthrough")
    with pytest.raises(ConfigError, match="unknown backend"):
        RerankCompressor(backend="no-such-backend")
    with pytest.raises(ConfigError, match="backend must be a preset"):
        RerankCompressor(backend=None)
    # a bad field is a ConfigError naming it, found before any backend is looked up or loaded
    with pytest.raises(ConfigError, match=r"^RerankRetriever: base_retriever"):
        RerankRetriever(base_retriever=42, backend="no-such-backend")
    with pytest.raises(ConfigError, match=r"^RerankCompressor: device: "):
        RerankCompressor(backend="no-such-backend", device=3)


# ---------------------------------------------------------------- real models


@pytest.fixture(scope="module")
def scifact_store(bi_encoder: Any) -> InMemoryVectorStore:
    docs = [
        Document(page_content=r["body"], id=r["id"], metadata={"title": r["title"]})
        for r in sample_rows(40)
    ]
    return InMemoryVectorStore.from_documents(docs, langchain_embeddings(bi_encoder))


@pytest.mark.smoke
@pytest.mark.model
def test_real_models_retriever_and_compression_agree(
    scifact_store: InMemoryVectorStore, minilm_reranker: Reranker
) -> None:
    query = sample_queries()[4]["text"]
    base = scifact_store.as_retriever(search_kwargs={"k": 8})
    candidates = base.invoke(query)
    rr = RerankRetriever(base_retriever=base, reranker=minilm_reranker, top_n=3)
    ccr = ContextualCompressionRetriever(
        base_compressor=RerankCompressor(reranker=minilm_reranker, top_n=3), base_retriever=base
    )
    got = rr.invoke(query)
    assert len(got) == 3
    assert {d.id for d in got} <= {d.id for d in candidates}
    scores = [d.metadata["relevance_score"] for d in got]
    assert scores == sorted(scores, reverse=True)
    fresh = Reranker(minilm_reranker.backend, cache=None)
    assert scores == pytest.approx(
        fresh.score(query, [d.page_content for d in got]), abs=1e-5
    )  # padding in another batch moves fp32 logits by ~1e-8
    assert [(d.id, d.metadata) for d in ccr.invoke(query)] == [(d.id, d.metadata) for d in got]
    assert [d.id for d in asyncio.run(rr.ainvoke(query))] == [d.id for d in got]


@pytest.mark.model
def test_built_from_backend_options_with_a_real_model(minilm_path: Any) -> None:
    comp = RerankCompressor(model=minilm_path, top_n=2)
    assert comp.backend == "minilm" and comp.model == str(minilm_path)
    out = comp.compress_documents(make_docs(), QUERY)
    assert len(out) == 2
    assert out[0].metadata["relevance_score"] >= out[1].metadata["relevance_score"]
