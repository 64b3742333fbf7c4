"""crossrank for LlamaIndex: ``RerankPostprocessor`` for ``node_postprocessors=[...]``."""

from __future__ import annotations

from rerank_core import MissingDependencyError

try:
    from .postprocessor import RerankPostprocessor
except ImportError as exc:  # llama-index-core is an optional extra
    if not (exc.name or "").startswith("llama_index"):
        raise
    raise MissingDependencyError(
        "llamaindex_rerank needs 'llama-index-core', which is not installed; "
        'install it with: pip install "crossrank[llamaindex]"',
        extra="llamaindex",
    ) from exc

__all__ = ["RerankPostprocessor"]
