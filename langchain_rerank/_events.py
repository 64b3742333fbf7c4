"""The custom callback event each LangChain rerank emits: ``crossrank_rerank`` with the
call's facts (query, model name, effective ``top_n``, the rank-1 ``top_score``,
``low_confidence``, threshold, scale, unscored documents, ``deadline_passed``).

Handlers receive it through ``on_custom_event`` (and ``astream_events`` as
``on_custom_event``); it is reported on the run that reranked (the retriever's own run, or
the run that called the compressor).
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForRetrieverRun,
    CallbackManager,
    CallbackManagerForRetrieverRun,
    Callbacks,
)

__all__ = ["EVENT", "aemit", "emit"]

EVENT = "crossrank_rerank"


def emit(where: CallbackManagerForRetrieverRun | Callbacks, facts: dict[str, Any]) -> None:
    """Send the event to a retriever's run manager, or to a compressor's ``callbacks``."""
    if isinstance(where, CallbackManagerForRetrieverRun):
        run = CallbackManager(handlers=where.handlers, tags=where.tags, metadata=where.metadata)
        run.on_custom_event(EVENT, facts, run_id=where.run_id)
    elif where is not None:
        manager = CallbackManager.configure(inheritable_callbacks=where)
        manager.on_custom_event(EVENT, facts, run_id=manager.parent_run_id)


async def aemit(
    where: AsyncCallbackManagerForRetrieverRun | Callbacks, facts: dict[str, Any]
) -> None:
    if isinstance(where, AsyncCallbackManagerForRetrieverRun):
        run = AsyncCallbackManager(
            handlers=where.handlers, tags=where.tags, metadata=where.metadata
        )
        await run.on_custom_event(EVENT, facts, run_id=where.run_id)
    elif where is not None:
        manager = AsyncCallbackManager.configure(inheritable_callbacks=where)
        await manager.on_custom_event(EVENT, facts, run_id=manager.parent_run_id)
