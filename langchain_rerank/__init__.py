"""crossrank for LangChain: ``RerankCompressor`` and ``RerankRetriever``."""

from __future__ import annotations

from rerank_core import MissingDependencyError

try:
    from .compressor import RerankCompressor
    from .retriever import RerankRetriever
except ImportError as exc:  # langchain-core is an optional extra
    if not (exc.name or "").startswith(("langchain_core", "pydantic")):
        raise
    raise MissingDependencyError(
        "langchain_rerank needs 'langchain-core', which is not installed; "
        'install it with: pip install "crossrank[langchain]"',
        extra="langchain",
    ) from exc

__all__ = ["RerankCompressor", "RerankRetriever"]
