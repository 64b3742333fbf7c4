"""Production controls through the adapters (issue 15): the same behaviour through
``RerankPostprocessor``, ``RerankCompressor`` and ``RerankRetriever`` — confidence flag and
rank-1 score in metadata and events, evidence windows (the long-documents example's buried
abstract), deadlines, cutoff scales, and the new fields serialized."""

# ruff: noqa: E402  (the framework imports come after need(): skip only when absent)
from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from helpers import KeywordBackend, need

need("llama_index.core")
need("langchain_core")

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.runnables import RunnableLambda
from llama_index.core.bridge.pydantic import Field
from llama_index.core.callbacks import CallbackManager, CBEventType
from llama_index.core.callbacks.llama_debug import LlamaDebugHandler
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent
from llama_index.core.schema import MetadataMode, NodeWithScore, TextNode
from rerank_core import BackendInfo, ConfigError, Reranker

from langchain_rerank import RerankCompressor, RerankRetriever
from llamaindex_rerank import RerankPostprocessor

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TEXTS = [
    "dogs chase cats in the park",
    "the stock market fell sharply today",
    "cats sleep most of the day",
    "a cat and a dog became friends",
]
EVIDENCE = ("rerank_window_start", "rerank_window_end", "rerank_window_count")


def nodes_of(texts: Sequence[str], metadata: dict[str, Any] | None = None) -> list[NodeWithScore]:
    return [
        NodeWithScore(node=TextNode(text=t, id_=f"n{i}", metadata=dict(metadata or {})), score=0.5)
        for i, t in enumerate(texts)
    ]


def docs_of(texts: Sequence[str]) -> list[Document]:
    return [Document(page_content=t, id=f"d{i}", metadata={"i": i}) for i, t in enumerate(texts)]


def fixed(docs: list[Document]) -> RunnableLambda[str, list[Document]]:
    return RunnableLambda(lambda _q: list(docs), name="FixedDocs")


class EndEvents(BaseEventHandler):
    events: list[BaseEvent] = Field(default_factory=list)

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, ReRankEndEvent):
            self.events.append(event)


class CustomEvents(BaseCallbackHandler):
    def __init__(self) -> None:
        self.got: list[tuple[str, dict[str, Any], UUID]] = []

    def on_custom_event(
        self, name: str, data: Any, *, run_id: UUID, tags: Any = None, **kw: Any
    ) -> None:
        self.got.append((name, data, run_id))


def run_all(
    kind: str, engine: Reranker, texts: Sequence[str], query: str, **fields: Any
) -> list[tuple[str, float | None, dict[str, Any]]]:
    """(text, score, metadata) per result through one adapter, sync."""
    if kind == "llamaindex":
        pp = RerankPostprocessor(reranker=engine, metadata_mode="none", **fields)
        out = pp.postprocess_nodes(nodes_of(texts), query_str=query)
        return [(n.node.get_content(), n.score, n.node.metadata) for n in out]
    docs = docs_of(texts)
    if kind == "compressor":
        got = RerankCompressor(reranker=engine, **fields).compress_documents(docs, query)
    else:
        got = RerankRetriever(base_retriever=fixed(docs), reranker=engine, **fields).invoke(query)
    return [(d.page_content, d.metadata["relevance_score"], d.metadata) for d in got]


ADAPTERS = ["llamaindex", "compressor", "retriever"]


# ---------------------------------------------------------------- confidence


@pytest.mark.parametrize("kind", ADAPTERS)
def test_low_confidence_flag_in_every_copy(kind: str) -> None:
    engine = Reranker(KeywordBackend())
    sure = run_all(kind, engine, TEXTS, "cat dog friends", confidence_threshold=2.0)
    assert all(md["rerank_low_confidence"] is False for _, _, md in sure)
    unsure = run_all(kind, engine, TEXTS, "zebra cat", confidence_threshold=2.0)
    assert all(md["rerank_low_confidence"] is True for _, _, md in unsure)
    plain = run_all(kind, engine, TEXTS, "zebra cat")
    assert all("rerank_low_confidence" not in md for _, _, md in plain)


def test_llamaindex_events_carry_the_rank1_score_and_hide_the_metadata() -> None:
    root = get_dispatcher()
    handler = EndEvents(events=[])
    root.add_event_handler(handler)
    debug = LlamaDebugHandler()
    try:
        pp = RerankPostprocessor(
            reranker=Reranker(KeywordBackend()),
            confidence_threshold=2.0,
            callback_manager=CallbackManager([debug]),
        )
        nodes = nodes_of(TEXTS, {"source": "s"})
        out = pp.postprocess_nodes(nodes, query_str="zebra cat")
        asyncio.run(pp.apostprocess_nodes(nodes, query_str="cat dog friends"))
    finally:
        root.event_handlers = [h for h in root.event_handlers if h is not handler]
    assert [type(e) for e in handler.events] == [ReRankEndEvent, ReRankEndEvent]
    facts = [e.tags["crossrank"] for e in handler.events]
    assert [(f["top_score"], f["low_confidence"]) for f in facts] == [(1.0, True), (3.0, False)]
    assert facts[0]["confidence_threshold"] == 2.0 and facts[0]["score_scale"] == "logit"
    pairs = debug.get_event_pairs(CBEventType.RERANKING)
    assert pairs[0][1].payload["crossrank"]["top_score"] == 1.0
    # evidence and flag are in the copy's metadata, hidden from embedding and LLM text
    md = out[0].node.metadata
    assert md["rerank_low_confidence"] is True and md["rerank_window_count"] == 1
    for mode in (MetadataMode.EMBED, MetadataMode.LLM):
        text = out[0].node.get_content(mode)
        src = next(n for n in nodes if n.node.node_id == out[0].node.node_id)
        assert "rerank_" not in text and text == src.node.get_content(mode)


def test_langchain_custom_event_carries_the_rank1_score() -> None:
    rec = CustomEvents()
    engine = Reranker(KeywordBackend())
    comp = RerankCompressor(reranker=engine, confidence_threshold=2.0)
    comp.compress_documents(docs_of(TEXTS), "zebra cat", callbacks=[rec])
    rr = RerankRetriever(base_retriever=fixed(docs_of(TEXTS)), reranker=engine)
    rr.invoke("cat dog friends", config={"callbacks": [rec]}, confidence_threshold=5.0)
    asyncio.run(rr.ainvoke("cat dog friends", config={"callbacks": [rec]}))
    names = [name for name, _, _ in rec.got]
    assert names == ["crossrank_rerank"] * 3
    facts = [data for _, data, _ in rec.got]
    assert [(f["top_score"], f["low_confidence"]) for f in facts] == [
        (1.0, True),
        (3.0, True),  # per-call threshold 5.0
        (3.0, False),
    ]
    assert facts[1]["query"] == "cat dog friends" and facts[1]["top_n"] == 4


# ---------------------------------------------------------------- evidence windows


@pytest.fixture(scope="module")
def long_docs() -> Any:
    """The long-documents example's documents: a SciFact claim's relevant abstract buried
    deep inside document B (past char 4,000)."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        import _common
        import long_documents
    finally:
        sys.path.remove(str(EXAMPLES))
    claim = _common.claims()[7]  # "ADAR1 binds to Dicer to cleave pre-miRNA."
    docs = long_documents.build(_common.passages(), claim)
    assert docs.target_span[0] > 4000
    return claim.text, docs


@pytest.mark.parametrize("kind", ADAPTERS)
def test_return_window_hands_over_the_buried_passage(kind: str, long_docs: Any) -> None:
    query, docs = long_docs
    start, end = docs.target_span
    document = docs.texts[docs.target_doc]
    buried = document[start:end]
    engine = Reranker(KeywordBackend(max_length=128))
    whole = run_all(kind, engine, docs.texts, query)
    assert whole[0][0] == document  # default: the whole document
    text, _, md = run_all(kind, engine, docs.texts, query, return_text="window")[0]
    assert md["rerank_window_count"] > 5
    assert text == document[md["rerank_window_start"] : md["rerank_window_end"]]
    assert len(text) < len(document) / 5
    assert md["rerank_window_start"] < end and start < md["rerank_window_end"]  # on the abstract
    assert "ADAR1 Forms a Complex with Dicer" in text  # the buried abstract's title
    # the best window overlaps the abstract (1,070 chars), so a context of more than the
    # abstract's length on each side holds all of it, wherever the window edges fall
    context = len(buried) + 10
    text, _, md = run_all(
        kind, engine, docs.texts, query, return_text="window", window_context_chars=context
    )[0]
    assert buried in text and len(text) < len(document) / 3  # all of it, with context


def test_llamaindex_window_span_is_in_the_node_content_not_the_metadata_header(
    long_docs: Any,
) -> None:
    query, docs = long_docs
    nodes = [
        NodeWithScore(
            node=TextNode(
                text=t, id_=f"n{i}", metadata={"title": "a long title " * 20}, start_char_idx=1000
            ),
            score=0.5,
        )
        for i, t in enumerate(docs.texts)
    ]
    pp = RerankPostprocessor(
        reranker=Reranker(KeywordBackend(max_length=128)), return_text="window", top_n=1
    )
    (best,) = pp.postprocess_nodes(nodes, query_str=query)  # reads "title: ...\n\n" + text
    node = best.node
    md = node.metadata
    content = docs.texts[docs.target_doc]
    assert node.get_content() == content[md["rerank_window_start"] : md["rerank_window_end"]]
    assert "ADAR1 Forms a Complex with Dicer" in node.get_content()
    assert node.start_char_idx == 1000 + md["rerank_window_start"]  # type: ignore[attr-defined]
    assert node.end_char_idx == 1000 + md["rerank_window_end"]  # type: ignore[attr-defined]
    assert "a long title" in node.get_content(MetadataMode.LLM)  # metadata kept, not doubled
    assert nodes[docs.target_doc].node.get_content() == content  # the input is untouched


# ---------------------------------------------------------------- deadlines


class SlowKeyword(KeywordBackend):
    def __init__(self, delay: float, *, shared: bool) -> None:
        super().__init__()
        self.delay = delay
        self.info = BackendInfo(micro_batching=shared)

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        time.sleep(self.delay)
        return super().score_pairs(pairs)


MANY = [f"text {i} " + ("cat " if i % 3 == 0 else "") + "filler words" for i in range(32)]


@pytest.mark.parametrize("kind", ADAPTERS)
@pytest.mark.parametrize("shared", [True, False], ids=["micro-batched", "direct"])
def test_deadline_through_the_adapters(kind: str, shared: bool) -> None:
    engine = Reranker(SlowKeyword(0.1, shared=shared), batch_size=4, cache=None)
    t0 = time.perf_counter()
    out = run_all(kind, engine, MANY, "cat", deadline_ms=250)
    assert time.perf_counter() - t0 < 0.25 + 0.1 + 0.2
    scores = [s for _, s, _ in out]
    n = sum(s is not None for s in scores)
    assert 0 < n < len(MANY) and all(s is None for s in scores[n:])  # scored first
    unscored = [text for text, s, _ in out if s is None]
    assert unscored == [t for t in MANY if t in unscored]  # first-stage order


def test_async_deadline_through_the_adapters() -> None:
    engine = Reranker(SlowKeyword(0.1, shared=True), batch_size=4, cache=None)
    pp = RerankPostprocessor(reranker=engine, deadline_ms=250)
    comp = RerankCompressor(reranker=engine, deadline_ms=250)
    rr = RerankRetriever(base_retriever=fixed(docs_of(MANY)), reranker=engine)

    async def go() -> list[list[float | None]]:
        a = await pp.apostprocess_nodes(nodes_of(MANY), query_str="cat")
        b = await comp.acompress_documents(docs_of(MANY), "cat")
        c = await rr.ainvoke("cat", deadline_ms=250)
        return [
            [n.score for n in a],
            [d.metadata["relevance_score"] for d in b],
            [d.metadata["relevance_score"] for d in c],
        ]

    t0 = time.perf_counter()
    for scores in asyncio.run(go()):
        assert None in scores and scores[0] is not None
    assert time.perf_counter() - t0 < 3 * (0.25 + 0.1 + 0.2)


# ---------------------------------------------------------------- scales, options, serialization


@pytest.mark.parametrize("kind", ADAPTERS)
def test_probability_cutoffs_on_a_logit_backend(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="crossrank")
    engine = Reranker(KeywordBackend())
    # sigmoid(2.0) = 0.88, sigmoid(1.0) = 0.73: 0.8 on the probability scale keeps score 2+
    kept = run_all(
        kind, engine, TEXTS, "cat dog friends", min_score=0.8, cutoff_scale="probability"
    )
    assert [s for _, s, _ in kept] == [3.0]
    assert "raw logits" not in caplog.text
    run_all(kind, engine, TEXTS, "cat dog friends", min_score=0.8)  # read as a logit: warned
    assert caplog.text.count("min_score=0.8 is compared with raw logits") == 1


def test_bad_control_fields_are_config_errors() -> None:
    engine = Reranker(KeywordBackend())
    bad: list[dict[str, Any]] = [
        {"deadline_ms": 0},
        {"confidence_threshold": "x"},
        {"cutoff_scale": "sigmoid"},
        {"return_text": "page"},
        {"window_context_chars": -1},
        {"min_score": 3.0, "cutoff_scale": "probability"},
    ]
    for fields in bad:
        for make in (
            lambda f: RerankPostprocessor(reranker=engine, **f),
            lambda f: RerankCompressor(reranker=engine, **f),
            lambda f: RerankRetriever(base_retriever=fixed([]), reranker=engine, **f),
        ):
            with pytest.raises(ConfigError):
                make(fields)


CONTROLS = {
    "confidence_threshold": 0.4,
    "cutoff_scale": "probability",
    "deadline_ms": 80.0,
    "return_text": "window",
    "window_context_chars": 200,
}


def test_controls_are_serialized_like_the_other_fields() -> None:
    pp = RerankPostprocessor(reranker=Reranker(KeywordBackend()), **CONTROLS)
    data = pp.to_dict()
    assert {k: data[k] for k in CONTROLS} == CONTROLS
    comp = RerankCompressor(reranker=Reranker(KeywordBackend()), **CONTROLS)
    dumped = comp.model_dump()
    assert {k: dumped[k] for k in CONTROLS} == CONTROLS
    rr = RerankRetriever(base_retriever=fixed([]), reranker=Reranker(KeywordBackend()), **CONTROLS)
    assert {k: getattr(rr, k) for k in CONTROLS} == CONTROLS


def test_built_from_options_the_controls_reach_the_engine_per_call() -> None:
    from rerank_core import BACKENDS, register_backend

    register_backend("test-keyword-controls", "helpers:KeywordBackend")
    try:
        pp = RerankPostprocessor(backend="test-keyword-controls", confidence_threshold=2.0)
        again = RerankPostprocessor.from_dict(pp.to_dict())
        out = again.postprocess_nodes(nodes_of(TEXTS), query_str="zebra cat")
        assert out[0].node.metadata["rerank_low_confidence"] is True
    finally:
        BACKENDS.pop("test-keyword-controls", None)
