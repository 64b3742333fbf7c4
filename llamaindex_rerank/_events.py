"""LlamaIndex's rerank events around one call: ``ReRankStartEvent``/``ReRankEndEvent`` on the
instrumentation dispatcher and a ``CBEventType.RERANKING`` callback event.

The end events also carry the call's facts (the rank-1 ``top_score``, ``low_confidence``,
``confidence_threshold``, ``score_scale``, ``unscored``, ``deadline_passed``) under the
``"crossrank"`` key: in the dispatcher's ``ReRankEndEvent.tags`` and in the callback's end
payload.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.schema import NodeWithScore, QueryBundle
from rerank_core.adapter_support import RerankEventData

__all__ = ["PAYLOAD_KEY", "rerank_events"]

dispatcher = get_dispatcher(__name__)

#: The key of the call's facts in the end event's tags and the callback's end payload.
PAYLOAD_KEY = "crossrank"

End = Callable[[list[NodeWithScore], dict[str, Any]], list[NodeWithScore]]


@contextmanager
def rerank_events(
    callback_manager: CallbackManager,
    nodes: list[NodeWithScore],
    query_bundle: QueryBundle | None,
    data: RerankEventData,
) -> Iterator[End]:
    """Emits the start events; yields ``end(out, facts)``, which emits the end events and
    returns ``out``."""
    dispatcher.event(
        ReRankStartEvent(
            query=query_bundle, nodes=nodes, top_n=data.top_n, model_name=data.model_name
        )
    )
    payload: dict[str, Any] = {
        EventPayload.NODES: nodes,
        EventPayload.QUERY_STR: data.query,
        EventPayload.MODEL_NAME: data.model_name,
        EventPayload.TOP_K: data.top_n,
    }
    with callback_manager.event(CBEventType.RERANKING, payload=payload) as event:

        def end(out: list[NodeWithScore], facts: dict[str, Any]) -> list[NodeWithScore]:
            event.on_end(payload={EventPayload.NODES: out, PAYLOAD_KEY: facts})
            dispatcher.event(ReRankEndEvent(nodes=out, tags={PAYLOAD_KEY: facts}))
            return out

        yield end
