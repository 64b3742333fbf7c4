"""crossrank for LlamaIndex: ``RerankPostprocessor`` for ``node_postprocessors=[...]``.

Needs ``llama-index-core`` (the ``llamaindex`` extra): without it, importing this package
raises ``MissingDependencyError``; when it is installed but fails to import,
``BrokenDependencyError`` with the version and the underlying error.
"""

from __future__ import annotations

from rerank_core.adapter_support import require_framework

require_framework("llama_index.core", extra="llamaindex", adapter="llamaindex_rerank")

from .postprocessor import RerankPostprocessor  # noqa: E402  (after the check above)

__all__ = ["RerankPostprocessor"]
