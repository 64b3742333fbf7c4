"""The options both LangChain classes share: result cut, backend options or a ready engine."""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, PrivateAttr
from rerank_core import Reranker
from rerank_core.adapter_support import DEFAULT_BACKEND, check_cut, engine_for

__all__ = ["RerankOptions"]


class RerankOptions(BaseModel):
    """Fields (serializable, no secrets) plus a private engine.

    Any keyword that is not a field (``batch_size``, ``window``, ``cache``,
    ``normalize``, ``api_key``, ...) goes to the engine and its backend and is not
    kept on the object, so it never shows in ``repr`` or serialization.
    """

    top_n: int | None = None
    """Documents to keep (None: all, or the engine's own ``top_n``)."""
    min_score: float | None = None
    """Drop documents scoring below this."""
    backend: str | None = "minilm"
    """Backend preset; None when built from a ready ``reranker``."""
    model: str | None = None
    """Model id or local directory (default: the preset's)."""
    device: str | None = None
    """cpu (default), auto, cuda:0, ..."""
    on_error: Literal["raise", "passthrough"] = "raise"
    """passthrough: on a backend failure keep the input order, ``relevance_score`` None."""

    _reranker: Reranker = PrivateAttr()

    def __init__(self, *, reranker: Reranker | None = None, **data: Any) -> None:
        fields = type(self).model_fields
        options = {k: data.pop(k) for k in list(data) if k not in fields}
        check_cut(data.get("top_n"), data.get("min_score"))
        if isinstance(data.get("model"), os.PathLike):
            data["model"] = os.fspath(data["model"])
        engine_options = {"model": data.get("model"), "device": data.get("device"), **options}
        engine = engine_for(
            reranker,
            data.get("backend", DEFAULT_BACKEND),
            data.get("on_error"),
            {k: v for k, v in engine_options.items() if v is not None},
        )
        data["backend"] = None if reranker is not None else data.get("backend", DEFAULT_BACKEND)
        data["on_error"] = engine.on_error
        super().__init__(**data)
        self._reranker = engine

    @property
    def reranker(self) -> Reranker:
        """The engine (shared when one was passed in)."""
        return self._reranker

    def _cut(self, top_n: int | None, min_score: float | None) -> dict[str, Any]:
        check_cut(top_n, min_score)
        return {
            "top_n": self.top_n if top_n is None else top_n,
            "min_score": self.min_score if min_score is None else min_score,
        }
