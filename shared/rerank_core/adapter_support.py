"""What every framework adapter needs from the engine: build or adopt a Reranker, check cuts.

Shared by `llamaindex_rerank` and `langchain_rerank` so that both build the engine the same way.
"""

from __future__ import annotations

import math
from typing import Any

from .engine import Reranker
from .errors import ConfigError

__all__ = ["DEFAULT_BACKEND", "check_cut", "engine_for"]

DEFAULT_BACKEND = "minilm"


def check_cut(top_n: object, min_score: object) -> None:
    """Reject a bad ``top_n``/``min_score`` at construction, not at the first query."""
    if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1):
        raise ConfigError(f"top_n must be None or a positive int, got {top_n!r}")
    if min_score is not None and (
        isinstance(min_score, bool)
        or not isinstance(min_score, (int, float))
        or math.isnan(min_score)
    ):
        raise ConfigError(f"min_score must be None or a number, got {min_score!r}")


def engine_for(
    reranker: Reranker | None,
    backend: str | None,
    on_error: str | None,
    options: dict[str, Any],
) -> Reranker:
    """The ready ``reranker`` (checked against the other options) or a new engine.

    ``backend``: a preset name (ignored when it is the default and ``reranker`` is
    given; ``None`` only with ``reranker``). ``options``:
    the engine and backend options (model, device, batch_size, window, cache,
    normalize, api_key, ...) with ``None`` values already dropped.
    """
    if reranker is None:
        if not isinstance(backend, str) or not backend:
            raise ConfigError(
                f"backend must be a preset name such as 'minilm', got {backend!r}; "
                "or pass a ready reranker=Reranker(...)"
            )
        return Reranker(backend, on_error=on_error or "raise", **options)  # type: ignore[arg-type]
    if not isinstance(reranker, Reranker):
        raise ConfigError(f"reranker must be a rerank_core.Reranker, got {type(reranker).__name__}")
    if backend not in (None, DEFAULT_BACKEND):
        options = {"backend": backend, **options}
    if options:
        raise ConfigError(
            "pass either reranker= or backend options, not both; "
            f"got reranker= with {', '.join(sorted(options))}"
        )
    if on_error is not None and on_error != reranker.on_error:
        raise ConfigError(
            f"on_error={on_error!r} differs from the given reranker's on_error="
            f"{reranker.on_error!r}; set it on the Reranker"
        )
    return reranker
