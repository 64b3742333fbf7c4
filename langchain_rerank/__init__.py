"""crossrank for LangChain: ``RerankCompressor`` and ``RerankRetriever``.

Needs ``langchain-core`` (the ``langchain`` extra): without it, importing this package
raises ``MissingDependencyError``; when it is installed but fails to import,
``BrokenDependencyError`` with the version and the underlying error.
"""

from __future__ import annotations

from rerank_core.adapter_support import require_framework

require_framework("langchain_core", extra="langchain", adapter="langchain_rerank")

from .compressor import RerankCompressor  # noqa: E402  (after the check above)
from .retriever import RerankRetriever  # noqa: E402

__all__ = ["RerankCompressor", "RerankRetriever"]
