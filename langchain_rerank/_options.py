"""The options both LangChain classes share: result cut, backend options or a ready engine."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, PrivateAttr, ValidationError
from rerank_core import Reranker
from rerank_core.adapter_support import DEFAULT_BACKEND, Cut, configure, invalid_fields

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
    backend: str | None = DEFAULT_BACKEND
    """Backend preset; None when built from a ready ``reranker``."""
    model: str | None = None
    """Model id or local directory (default: the preset's)."""
    device: str | None = None
    """cpu (default), auto, cuda:0, ..."""
    on_error: Literal["raise", "passthrough"] = "raise"
    """passthrough: on a backend failure keep the input order, ``relevance_score`` None."""

    _reranker: Reranker = PrivateAttr()

    def __init__(self, *, reranker: Reranker | None = None, **data: Any) -> None:
        config = configure(type(self).model_fields, data, reranker)
        try:
            super().__init__(**config.fields)
        except ValidationError as exc:
            raise invalid_fields(type(self).__name__, exc.errors()) from exc
        self._reranker = config.engine()  # loads the model: only after the fields passed

    @property
    def reranker(self) -> Reranker:
        """The engine (shared when one was passed in)."""
        return self._reranker

    def _cut(self, top_n: int | None = None, min_score: float | None = None) -> Cut:
        """The fields' cut with per-call values where given (checked: ``ConfigError``)."""
        return Cut(self.top_n, self.min_score).override(top_n, min_score)
