"""RerankPostprocessor through real LlamaIndex objects (nodes, query bundles, callback
manager, instrumentation dispatcher, VectorStoreIndex query engine)."""

# ruff: noqa: E402  (the framework imports come after need(): skip only when absent)
from __future__ import annotations

import asyncio
import copy
import json
import math
import pickle
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import need

need("llama_index.core")

from adapter_helpers import (
    SECRET,
    SlowKeywordBackend,
    llamaindex_embedding,
    sample_queries,
    sample_rows,
)
from llama_index.core import Settings, VectorStoreIndex
from llama_index.core.bridge.pydantic import Field
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
from llama_index.core.callbacks.llama_debug import LlamaDebugHandler
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.rerank import (
    ReRankEndEvent,
    ReRankStartEvent,
)
from llama_index.core.llms import MockLLM
from llama_index.core.schema import (
    Document,
    MetadataMode,
    NodeWithScore,
    QueryBundle,
    TextNode,
)
from rerank_core import (
    BackendError,
    ConfigError,
    EmptyQueryError,
    InvalidTextError,
    Reranker,
)

from llamaindex_rerank import RerankPostprocessor

TEXTS = [
    "dogs chase cats in the park",
    "the stock market fell sharply today",
    "cats sleep most of the day",
    "a cat and a dog became friends",
]
QUERY = "cat dog friends"


def make_nodes() -> list[NodeWithScore]:
    return [
        NodeWithScore(
            node=TextNode(text=t, id_=f"n{i}", metadata={"source": f"doc{i}", "tags": ["x"]}),
            score=0.9 - 0.1 * i,
        )
        for i, t in enumerate(TEXTS)
    ]


class Recorder(BaseEventHandler):
    events: list[BaseEvent] = Field(default_factory=list)

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, (ReRankStartEvent, ReRankEndEvent)):
            self.events.append(event)


@pytest.fixture
def rerank_events() -> Iterator[list[BaseEvent]]:
    """ReRank events seen by a handler on LlamaIndex's root dispatcher."""
    root = get_dispatcher()
    handler = Recorder(events=[])
    root.add_event_handler(handler)
    try:
        yield handler.events
    finally:
        root.event_handlers = [h for h in root.event_handlers if h is not handler]


def test_returns_scored_copies_best_first_without_touching_the_input(
    keyword_reranker: Reranker,
) -> None:
    nodes = make_nodes()
    before = copy.deepcopy(nodes)
    pp = RerankPostprocessor(reranker=keyword_reranker, metadata_mode="none")

    out = pp.postprocess_nodes(nodes, query_str=QUERY)

    # keyword scores: "a cat and a dog became friends" has cat, dog, friends
    assert [n.node.node_id for n in out] == ["n3", "n0", "n1", "n2"]
    assert [n.score for n in out] == [3.0, 0.0, 0.0, 0.0]
    assert nodes == before  # scores, metadata and nodes of the caller unchanged
    for n in out:
        src = next(s for s in nodes if s.node.node_id == n.node.node_id)
        assert n is not src and n.node is not src.node
        assert n.node.metadata is not src.node.metadata
        ours = ("rerank_window_start", "rerank_window_end", "rerank_window_count")
        assert {k: v for k, v in n.node.metadata.items() if k not in ours} == src.node.metadata
        assert n.node.get_content() == src.node.get_content()
    # scoring the same nodes again gives the same result
    again = pp.postprocess_nodes(nodes, query_str=QUERY)
    assert [(n.node.node_id, n.score) for n in again] == [(n.node.node_id, n.score) for n in out]


def test_keep_retrieval_score_goes_into_the_copy_only(keyword_reranker: Reranker) -> None:
    nodes = make_nodes()
    pp = RerankPostprocessor(reranker=keyword_reranker, keep_retrieval_score=True, top_n=2)
    out = pp.postprocess_nodes(nodes, QueryBundle(QUERY))
    assert len(out) == 2
    assert out[0].node.node_id == "n3"
    assert out[0].node.metadata["retrieval_score"] == pytest.approx(0.6)
    assert all("retrieval_score" not in n.node.metadata for n in nodes)
    assert all(n.node.excluded_llm_metadata_keys == [] for n in nodes)
    # the copy reads exactly like the original for models and LLMs
    for mode in (MetadataMode.EMBED, MetadataMode.LLM):
        assert out[0].node.get_content(mode) == nodes[3].node.get_content(mode)
    assert "retrieval_score" in out[0].node.get_content(MetadataMode.ALL)
    # the default leaves metadata exactly as it was
    plain = RerankPostprocessor(reranker=keyword_reranker).postprocess_nodes(nodes, query_str=QUERY)
    assert all("retrieval_score" not in n.node.metadata for n in plain)


def test_metadata_mode_decides_what_the_model_reads(keyword_backend: Any) -> None:
    nodes = [NodeWithScore(node=TextNode(text="plain words", metadata={"topic": "cat"}))]
    rr = Reranker(keyword_backend, cache=None)
    RerankPostprocessor(reranker=rr, metadata_mode=MetadataMode.NONE).postprocess_nodes(
        nodes, query_str="cat"
    )
    RerankPostprocessor(reranker=rr).postprocess_nodes(nodes, query_str="cat")  # EMBED
    seen = [c[0][1] for c in keyword_backend.calls]
    assert seen == ["plain words", "topic: cat\n\nplain words"]


def test_top_n_and_min_score_are_forwarded(keyword_reranker: Reranker) -> None:
    nodes = make_nodes()
    everything = RerankPostprocessor(reranker=keyword_reranker)
    assert len(everything.postprocess_nodes(nodes, None, QUERY)) == 4
    out = RerankPostprocessor(reranker=keyword_reranker, top_n=1).postprocess_nodes(
        nodes, query_str=QUERY
    )
    assert [n.node.node_id for n in out] == ["n3"]
    out = RerankPostprocessor(reranker=keyword_reranker, min_score=1.0).postprocess_nodes(
        nodes, query_str="cats sleep"
    )
    assert [n.node.node_id for n in out] == ["n2", "n0"]  # 2 and 1 of the query words


def test_no_nodes_gives_empty_list_without_model_call_or_events(
    keyword_backend: Any, rerank_events: list[BaseEvent]
) -> None:
    debug = LlamaDebugHandler()
    pp = RerankPostprocessor(
        reranker=Reranker(keyword_backend), callback_manager=CallbackManager([debug])
    )
    assert pp.postprocess_nodes([], query_str=QUERY) == []
    assert keyword_backend.calls == []
    assert rerank_events == []
    assert debug.get_event_pairs(CBEventType.RERANKING) == []


def test_missing_or_blank_query_is_a_clear_error(keyword_reranker: Reranker) -> None:
    pp = RerankPostprocessor(reranker=keyword_reranker)
    with pytest.raises(EmptyQueryError, match="needs the query"):
        pp.postprocess_nodes(make_nodes())
    with pytest.raises(ValueError):  # EmptyQueryError is a ValueError, like LlamaIndex's own
        pp.postprocess_nodes(make_nodes(), QueryBundle("   "))
    with pytest.raises(InvalidTextError) as info:
        pp.postprocess_nodes([make_nodes()[0], "not a node"], query_str=QUERY)  # type: ignore[list-item]
    assert info.value.index == 1


def test_emits_rerank_events_and_reranking_callback(
    keyword_reranker: Reranker, rerank_events: list[BaseEvent]
) -> None:
    debug = LlamaDebugHandler()
    pp = RerankPostprocessor(
        reranker=keyword_reranker, top_n=2, callback_manager=CallbackManager([debug])
    )
    nodes = make_nodes()
    bundle = QueryBundle(QUERY)
    out = pp.postprocess_nodes(nodes, bundle)

    start, end = rerank_events
    assert isinstance(start, ReRankStartEvent) and isinstance(end, ReRankEndEvent)
    assert start.query == bundle and start.top_n == 2
    assert [n.node.node_id for n in start.nodes] == ["n0", "n1", "n2", "n3"]
    assert start.model_name == "KeywordBackend"
    assert end.nodes == out

    (pair,) = debug.get_event_pairs(CBEventType.RERANKING)
    assert pair[0].payload[EventPayload.QUERY_STR] == QUERY
    assert pair[0].payload[EventPayload.TOP_K] == 2
    assert pair[0].payload[EventPayload.NODES] == nodes
    assert pair[1].payload[EventPayload.NODES] == out


async def test_async_matches_sync_and_emits_events(
    keyword_reranker: Reranker, rerank_events: list[BaseEvent]
) -> None:
    debug = LlamaDebugHandler()
    pp = RerankPostprocessor(
        reranker=keyword_reranker, top_n=3, callback_manager=CallbackManager([debug])
    )
    nodes = make_nodes()
    got = await pp.apostprocess_nodes(nodes, query_str=QUERY)
    want = pp.postprocess_nodes(nodes, query_str=QUERY)
    assert [(n.node.node_id, n.score) for n in got] == [(n.node.node_id, n.score) for n in want]
    assert [type(e) for e in rerank_events] == [ReRankStartEvent, ReRankEndEvent] * 2
    assert len(debug.get_event_pairs(CBEventType.RERANKING)) == 2
    with pytest.raises(EmptyQueryError):
        await pp.apostprocess_nodes(nodes)


async def test_async_does_not_block_the_event_loop() -> None:
    backend = SlowKeywordBackend(delay=0.4)
    pp = RerankPostprocessor(reranker=Reranker(backend, cache=None))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.02)
            ticks += 1

    task = asyncio.create_task(ticker())
    out = await pp.apostprocess_nodes(make_nodes(), query_str=QUERY)
    task.cancel()
    assert out[0].node.node_id == "n3"
    assert ticks >= 5  # the loop kept running while the model scored


def test_on_error_passthrough_keeps_order_with_score_none(keyword_backend: Any) -> None:
    keyword_backend.fail = RuntimeError("model crashed")
    nodes = make_nodes()
    with pytest.raises(BackendError, match="model crashed"):
        RerankPostprocessor(reranker=Reranker(keyword_backend)).postprocess_nodes(
            nodes, query_str=QUERY
        )
    pp = RerankPostprocessor(reranker=Reranker(keyword_backend, on_error="passthrough"), top_n=3)
    assert pp.on_error == "passthrough"
    out = pp.postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.node_id for n in out] == ["n0", "n1", "n2"]
    assert [n.score for n in out] == [None, None, None]
    assert [n.score for n in nodes] == pytest.approx([0.9, 0.8, 0.7, 0.6])


def test_on_error_option_builds_a_passthrough_engine(secret_backend: str) -> None:
    pp = RerankPostprocessor(backend=secret_backend, on_error="passthrough")
    assert pp.reranker.on_error == "passthrough"
    pp.reranker.backend.fail = RuntimeError("down")  # type: ignore[attr-defined]
    out = pp.postprocess_nodes(make_nodes(), query_str=QUERY)
    assert [n.score for n in out] == [None] * 4


def test_serialization_has_class_name_and_no_secrets(secret_backend: str) -> None:
    pp = RerankPostprocessor(
        backend=secret_backend, api_key=SECRET, batch_size=4, top_n=3, keep_retrieval_score=True
    )
    assert RerankPostprocessor.class_name() == "CrossrankRerankPostprocessor"
    data = pp.to_dict()
    assert data["class_name"] == "CrossrankRerankPostprocessor"
    assert data["backend"] == secret_backend and data["top_n"] == 3
    assert data["keep_retrieval_score"] is True and data["metadata_mode"] == "embed"
    for text in (json.dumps(data, default=str), pp.to_json(), repr(pp), str(pp), str(pp.dict())):
        assert SECRET not in text
    assert "api_key" not in data
    assert SECRET not in str(pickle.loads(pickle.dumps(pp.to_dict())))
    # the engine got the options
    assert pp.reranker.backend._api_key == SECRET  # type: ignore[attr-defined]
    assert pp.reranker.batch_size == 4

    again = RerankPostprocessor.from_json(pp.to_json())
    assert again.to_dict() == data
    nodes = make_nodes()
    assert [n.score for n in again.postprocess_nodes(nodes, query_str=QUERY)] == [
        n.score for n in pp.postprocess_nodes(nodes, query_str=QUERY)
    ]


def test_built_from_a_reranker_serializes_without_backend(keyword_reranker: Reranker) -> None:
    data = RerankPostprocessor(reranker=keyword_reranker).to_dict()
    assert data["backend"] is None and data["model"] is None
    with pytest.raises(ConfigError, match="backend must be a preset"):
        RerankPostprocessor.from_dict(data)


def test_bad_options_are_config_errors(keyword_reranker: Reranker, secret_backend: str) -> None:
    with pytest.raises(ConfigError, match="top_n"):
        RerankPostprocessor(reranker=keyword_reranker, top_n=0)
    with pytest.raises(ConfigError, match="min_score"):
        RerankPostprocessor(reranker=keyword_reranker, min_score=math.nan)
    with pytest.raises(ConfigError, match="metadata_mode"):
        RerankPostprocessor(reranker=keyword_reranker, metadata_mode="html")
    with pytest.raises(ConfigError, match="not both"):
        RerankPostprocessor(reranker=keyword_reranker, model="some/model")
    with pytest.raises(ConfigError, match="not both"):
        RerankPostprocessor(reranker=keyword_reranker, backend="bge")
    with pytest.raises(ConfigError, match="on_error"):
        RerankPostprocessor(reranker=keyword_reranker, on_error="passthrough")
    with pytest.raises(ConfigError, match=r"must be a rerank_core\.Reranker"):
        RerankPostprocessor(reranker="minilm")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown backend"):
        RerankPostprocessor(backend="no-such-backend")
    with pytest.raises(ConfigError, match="on_error"):
        RerankPostprocessor(backend=secret_backend, on_error="ignore")  # type: ignore[arg-type]
    # a bad field is a ConfigError naming it, found before any backend is looked up or loaded
    with pytest.raises(ConfigError, match=r"^RerankPostprocessor: keep_retrieval_score: "):
        RerankPostprocessor(backend="no-such-backend", keep_retrieval_score="maybe")  # type: ignore[arg-type]


@pytest.fixture
def no_llm() -> Iterator[None]:
    """Retrieval only: LlamaIndex's NoText synthesizer still resolves Settings.llm, so set
    its placeholder LLM for the test (and put back whatever was there)."""
    previous = Settings._llm
    Settings.llm = MockLLM()
    try:
        yield
    finally:
        Settings._llm = previous


@pytest.mark.smoke
@pytest.mark.model
@pytest.mark.usefixtures("no_llm")
def test_query_engine_over_a_vector_index_with_real_models(
    bi_encoder: Any, minilm_reranker: Reranker, minilm_path: Any, rerank_events: list[BaseEvent]
) -> None:
    rows = sample_rows(40)
    docs = [
        Document(
            text=r["body"],
            id_=r["id"],
            metadata={"doc_id": r["id"]},
            excluded_embed_metadata_keys=["doc_id"],
            excluded_llm_metadata_keys=["doc_id"],
        )
        for r in rows
    ]
    index = VectorStoreIndex.from_documents(docs, embed_model=llamaindex_embedding(bi_encoder))
    pp = RerankPostprocessor(reranker=minilm_reranker, top_n=3, keep_retrieval_score=True)
    engine = index.as_query_engine(
        response_mode="no_text", similarity_top_k=8, node_postprocessors=[pp]
    )
    query = sample_queries()[4]["text"]
    retrieved = index.as_retriever(similarity_top_k=8).retrieve(query)
    response = engine.query(query)

    got = response.source_nodes
    assert len(got) == 3
    scores = [n.score for n in got]
    assert scores == sorted(scores, reverse=True)
    by_id = {n.node.node_id: n for n in retrieved}
    assert {n.node.node_id for n in got} <= set(by_id)
    # the postprocessor's scores are exactly the engine's on the same texts
    texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in got]
    # (padding in a different batch moves fp32 logits by ~1e-8)
    assert scores == pytest.approx(Reranker(minilm_reranker.backend).score(query, texts), abs=1e-5)
    for n in got:
        assert n.node.metadata["retrieval_score"] == pytest.approx(by_id[n.node.node_id].score)
        assert n.node.ref_doc_id == by_id[n.node.node_id].node.ref_doc_id
    assert [type(e) for e in rerank_events] == [ReRankStartEvent, ReRankEndEvent]
    assert rerank_events[0].model_name == str(minilm_path)  # the engine's model id

    async_response = asyncio.run(engine.aquery(query))
    assert [(n.node.node_id, n.score) for n in async_response.source_nodes] == [
        (n.node.node_id, pytest.approx(n.score, abs=1e-5)) for n in got
    ]


@pytest.mark.model
def test_built_from_backend_options_with_a_real_model(minilm_path: Any) -> None:
    pp = RerankPostprocessor(model=minilm_path, top_n=2, batch_size=8)
    assert pp.backend == "minilm" and pp.model == str(minilm_path)
    nodes = make_nodes()
    out = pp.postprocess_nodes(nodes, query_str=QUERY)
    assert len(out) == 2 and out[0].score is not None and out[0].score >= out[1].score
    again = RerankPostprocessor.from_dict(pp.to_dict())
    assert [n.score for n in again.postprocess_nodes(nodes, query_str=QUERY)] == pytest.approx(
        [n.score for n in out]
    )
