"""Cohere Rerank API backend (preset ``"cohere"``), also for Cohere-compatible servers.

Uses the official ``cohere`` SDK (``ClientV2`` / ``AsyncClientV2``) and its
``/v2/rerank`` endpoint, which vLLM and other servers speak too (``base_url``), or, with
``api_version="v1"``, the SDK's ``Client`` / ``AsyncClient`` and ``/v1/rerank`` (the
older body, which Infinity serves under ``--url-prefix /v1``; same answer shape). The
SDK's own retries are switched off on every request; the policy here is the one in
force: a timeout per attempt, retries on 429, 408, 5xx, timeouts and connection
errors with bounded exponential backoff that honours ``Retry-After``, and typed
errors from :mod:`rerank_core.errors` when the retries run out or the key is refused.

Pairs are grouped by query; each request carries one query and at most
``max_docs_per_request`` documents (the API advises against more than 1,000). The
API sees plain window texts: the engine cuts long texts into windows client-side,
with a word-based token estimate (or a tokenizer you name; for ``model=`` a local
folder, as a self-hosted server was started on, that folder's own tokenizer and window
length), so chunk-max works for the API as for local models.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from ..deps import require
from ..errors import APIError, ConfigError
from ..types import Pair, ScoreScale, Tokenizer
from ._base import BackendBase
from ._http import (
    Failure,
    RetryPolicy,
    Secret,
    body_text,
    build_tokenizer,
    check_url,
    clean_url,
    group_requests,
    local_model_dir,
    local_window_length,
    positive,
    status_failure,
    transport_failure,
)
from .runtime.hf import fingerprint_of

__all__ = ["API_VERSIONS", "DEFAULT_MODEL", "MAX_DOCS_PER_REQUEST", "CohereBackend"]

DEFAULT_MODEL = "rerank-v3.5"
MAX_DOCS_PER_REQUEST = 1000  # Cohere: "we recommend against sending more than 1,000 documents"
_COHERE_URL = "https://api.cohere.com"
_NO_KEY = "EMPTY"  # sent to self-hosted servers that need no key (the SDK requires one)
_ASYNC_CONCURRENCY = 4  # requests in flight at once from one ascore_pairs call
API_VERSIONS = ("v2", "v1")  # /v2/rerank (ClientV2), /v1/rerank (Client)

logger = logging.getLogger("crossrank")


def _model_limits(model: str) -> tuple[int, int]:
    """(context length, special tokens per pair) for Cohere's models, as documented."""
    name = model.lower()
    if name.startswith("rerank-v4"):
        return 32768, 4  # Rerank 4: 32,768-token context, 4 reserved tokens
    if name.startswith(("rerank-v3", "rerank-english-v3", "rerank-multilingual-v3")):
        return 4096, 3  # Rerank 3 / 3.5: 4,096-token context, 4,093-token chunks
    return 512, 4  # unknown (e.g. a self-hosted cross-encoder): a typical 512-token model


def _is_cohere(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host.endswith(("cohere.com", "cohere.ai"))


class CohereBackend(BackendBase[Tokenizer]):
    """Scores pairs with the Cohere Rerank API or a Cohere-compatible rerank server.

    ``model``: default ``rerank-v3.5``. ``api_key``: the key, else ``CO_API_KEY``, else
    ``COHERE_API_KEY``; required for Cohere's API, optional with a self-hosted
    ``base_url`` (e.g. vLLM: ``http://localhost:8000``; default: ``CO_API_URL`` or
    Cohere's API). ``api_version``: ``"v2"`` (``/v2/rerank``) or ``"v1"`` (``/v1/rerank``:
    Cohere's older endpoint, and Infinity served with ``--url-prefix /v1``).
    ``timeout``: seconds per attempt. ``max_retries``: retries after
    the first attempt on 429/408/5xx, timeouts and connection errors; waits follow
    ``Retry-After`` when the server sends it (a wait longer than ``max_retry_wait``
    ends the retries at once), else ``backoff * 2**attempt`` seconds with jitter.
    ``max_length``: tokens per (query, window) pair for the engine's windows (default:
    the model's documented context; for a local model folder, the length the local
    backends window it at; 512 for models it does not know).
    ``max_tokens_per_doc``: sent to the API (``/v2/rerank`` only); windows are kept
    within it. ``tokenizer``: ``"words"`` (a dependency-free estimate), a Hugging Face
    tokenizer name or path (exact windows for a self-hosted model), or a tokenizer
    object; default: the folder's own tokenizer when ``model`` is a local model folder
    (a self-hosted server started on it), else ``"words"``.
    ``client`` / ``async_client``: ready ``cohere.ClientV2`` / ``AsyncClientV2``
    (``Client`` / ``AsyncClient`` for v1; e.g. for tests); our timeout and retry policy
    still apply to each request. Scores are the API's ``relevance_score`` (0–1; from
    Infinity, the sigmoid of the model's logit).
    """

    score_scale: ScoreScale = "probability"
    # The engine's default batch size for this backend: one request can carry up to
    # 1,000 documents, so a query's candidates go out in one request.
    preferred_batch_size = 1000

    def __init__(
        self,
        model: str | None = None,
        *,
        api_key: Any = None,
        base_url: str | None = None,
        api_version: str = "v2",
        timeout: float = 30.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_retry_wait: float = 60.0,
        max_length: int | None = None,
        max_tokens_per_doc: int | None = None,
        tokenizer: Any = None,
        max_docs_per_request: int = MAX_DOCS_PER_REQUEST,
        client: Any = None,
        async_client: Any = None,
        device: str | None = None,
    ) -> None:
        cohere = require("cohere", extra="cohere", purpose="the cohere backend")
        httpx = require("httpx", extra="cohere", purpose="the cohere backend")
        if device is not None:
            raise ConfigError(
                "device does not apply to the cohere backend (the model runs remotely)"
            )
        model = DEFAULT_MODEL if model is None else model
        if not isinstance(model, str) or not model.strip():
            raise ConfigError(f"model must be a non-empty string, got {model!r}")
        self._retry = RetryPolicy.checked(timeout, max_retries, backoff, max_retry_wait)
        positive("max_docs_per_request", max_docs_per_request, minimum=1, integer=True)
        if max_length is not None:
            positive("max_length", max_length, minimum=16, integer=True)
        if max_tokens_per_doc is not None:
            positive("max_tokens_per_doc", max_tokens_per_doc, minimum=1, integer=True)
        if api_version not in API_VERSIONS:
            raise ConfigError(
                f"api_version must be 'v2' (/v2/rerank) or 'v1' (/v1/rerank), got {api_version!r}"
            )
        if api_version == "v1" and max_tokens_per_doc is not None:
            raise ConfigError(
                "max_tokens_per_doc is a /v2/rerank option; /v1/rerank (api_version='v1') "
                "has none (windows already fit max_length)"
            )

        self._cohere = cohere
        self.api_version = api_version
        self._classes = (
            (cohere.Client, cohere.AsyncClient)
            if api_version == "v1"
            else (cohere.ClientV2, cohere.AsyncClientV2)
        )
        self._httpx = httpx
        self.model = model
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.backoff = float(backoff)
        self.max_retry_wait = float(max_retry_wait)
        self.max_tokens_per_doc = max_tokens_per_doc
        self.max_docs_per_request = max_docs_per_request

        url = base_url if base_url is not None else os.environ.get("CO_API_URL") or None
        if url is not None:
            check_url(url)
        self._base_url = url
        self.base_url = clean_url(url) if url is not None else _COHERE_URL
        self._key = self._resolve_key(api_key, needs_key=(url is None or _is_cohere(url)))

        context, special = _model_limits(model)
        folder = local_model_dir(model)
        if folder is not None:  # the served model's own files
            context = local_window_length(folder) or context
        if tokenizer is None:
            tokenizer = str(folder) if folder is not None else "words"
        self._tokenizer = build_tokenizer(tokenizer, special, extra="cohere", backend="cohere")
        special = int(self._tokenizer.pair_special_tokens)
        limit = max_length if max_length is not None else context
        if max_tokens_per_doc is not None:
            # A window is at most max_length - query - special tokens; keep it within the
            # per-document budget the API will truncate to.
            limit = min(limit, max_tokens_per_doc + special + 1)
        self._max_length = max(limit, special + 2)

        self._client = client
        self._http: Any = None  # the httpx.Client we opened, if any
        self._injected_async = async_client
        self._async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self._fingerprint = fingerprint_of(
            backend="cohere",
            base_url=self.base_url,
            model=model,
            max_tokens_per_doc=max_tokens_per_doc,
            **({"api_version": api_version} if api_version != "v2" else {}),
        )

    # ------------------------------------------------------------------ protocol

    def score_pairs(self, pairs: Sequence[Pair]) -> list[float]:
        out = [math.nan] * len(pairs)
        for query, positions in self._requests(pairs):
            docs = [pairs[i][1] for i in positions]
            for i, s in zip(positions, self._rerank(query, docs), strict=True):
                out[i] = s
        return out

    async def ascore_pairs(self, pairs: Sequence[Pair]) -> list[float]:
        out = [math.nan] * len(pairs)
        gate = asyncio.Semaphore(_ASYNC_CONCURRENCY)

        async def one(query: str, positions: list[int]) -> None:
            async with gate:
                scores = await self._arerank(query, [pairs[i][1] for i in positions])
            for i, s in zip(positions, scores, strict=True):
                out[i] = s

        await asyncio.gather(*(one(q, pos) for q, pos in self._requests(pairs)))
        return out

    def close(self) -> None:
        """Close the HTTP connections of the sync client this backend opened (a client
        passed in stays open; it is the caller's). Async clients close with their loop."""
        with self._lock:
            http, self._http = self._http, None
            if http is not None:
                self._client = None
            self._async_clients = weakref.WeakKeyDictionary()
        if http is not None:
            http.close()

    def __repr__(self) -> str:
        return (
            f"CohereBackend(model={self.model!r}, base_url={self.base_url!r}, "
            f"api_version={self.api_version!r}, "
            f"timeout={self.timeout}, max_retries={self.max_retries}, "
            f"max_tokens_per_doc={self.max_tokens_per_doc}, tokenizer={self._tokenizer!r})"
        )

    # ------------------------------------------------------------------ set-up

    @staticmethod
    def _resolve_key(api_key: Any, *, needs_key: bool) -> Secret | None:
        if api_key is not None:
            getter = getattr(api_key, "get_secret_value", None)  # pydantic SecretStr
            value = getter() if callable(getter) else api_key
            if not isinstance(value, str) or not value.strip():
                raise ConfigError("api_key must be a non-empty string")
            return Secret(value.strip())
        for var in ("CO_API_KEY", "COHERE_API_KEY"):
            value = os.environ.get(var, "").strip()
            if value:
                return Secret(value)
        if needs_key:
            raise ConfigError(
                "no Cohere API key: pass api_key=..., or set CO_API_KEY or COHERE_API_KEY "
                "(a self-hosted server given as base_url=... needs none)"
            )
        return None

    def _token(self) -> str:
        return self._key.get() if self._key is not None else _NO_KEY

    def _sync_client(self) -> Any:
        with self._lock:
            if self._client is None:
                http = self._httpx.Client(timeout=self.timeout, follow_redirects=True)
                self._client = self._classes[0](
                    api_key=self._token(),
                    base_url=self._base_url,
                    timeout=self.timeout,
                    max_retries=0,
                    httpx_client=http,
                    log_warning_experimental_features=False,
                )
                self._http = http
            return self._client

    def _async_client(self) -> Any:
        if self._injected_async is not None:
            return self._injected_async
        loop = asyncio.get_running_loop()
        with self._lock:
            # An httpx.AsyncClient's connections belong to the event loop that opened them.
            client = self._async_clients.get(loop)
            if client is None:
                client = self._classes[1](
                    api_key=self._token(),
                    base_url=self._base_url,
                    timeout=self.timeout,
                    max_retries=0,
                    httpx_client=self._httpx.AsyncClient(
                        timeout=self.timeout, follow_redirects=True
                    ),
                    log_warning_experimental_features=False,
                )
                self._async_clients[loop] = client
            return client

    # ------------------------------------------------------------------ requests

    def _requests(self, pairs: Sequence[Pair]) -> list[tuple[str, list[int]]]:
        """One (query, positions) per request: pairs grouped by query, in chunks."""
        return group_requests(pairs, self.max_docs_per_request)

    def _kwargs(self, query: str, docs: list[str]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "query": query,
            "documents": docs,
            "request_options": {"max_retries": 0, "timeout": self.timeout},
        }
        if self.max_tokens_per_doc is not None:
            kwargs["max_tokens_per_doc"] = self.max_tokens_per_doc
        return kwargs

    def _rerank(self, query: str, docs: list[str]) -> list[float]:
        """Scores for ``docs``; asks again for any the server left out of its answer."""
        scores: dict[int, float] = {}
        pending = list(range(len(docs)))
        while pending:
            response = self._call(query, [docs[i] for i in pending])
            pending = self._collect(response, pending, scores)
        return [scores[i] for i in range(len(docs))]

    async def _arerank(self, query: str, docs: list[str]) -> list[float]:
        scores: dict[int, float] = {}
        pending = list(range(len(docs)))
        while pending:
            response = await self._acall(query, [docs[i] for i in pending])
            pending = self._collect(response, pending, scores)
        return [scores[i] for i in range(len(docs))]

    def _call(self, query: str, docs: list[str]) -> Any:
        client = self._sync_client()
        attempt = 0
        while True:
            try:
                return client.rerank(**self._kwargs(query, docs))
            except Exception as exc:
                delay = self._retry_delay(exc, attempt)
            time.sleep(delay)
            attempt += 1

    async def _acall(self, query: str, docs: list[str]) -> Any:
        client = self._async_client()
        attempt = 0
        while True:
            try:
                return await client.rerank(**self._kwargs(query, docs))
            except Exception as exc:
                delay = self._retry_delay(exc, attempt)
            await asyncio.sleep(delay)
            attempt += 1

    def _collect(self, response: Any, pending: list[int], scores: dict[int, float]) -> list[int]:
        """Record the scores in ``response`` (for documents ``pending``); return those left."""
        results = getattr(response, "results", None)
        if not isinstance(results, list):
            raise APIError(f"{self._where()}: the response has no 'results' list")
        got: dict[int, float] = {}
        for item in results:
            index = getattr(item, "index", None)
            score = getattr(item, "relevance_score", None)
            if isinstance(index, bool) or not isinstance(index, int):
                raise APIError(f"{self._where()}: a result has no integer 'index'")
            if not 0 <= index < len(pending):
                raise APIError(
                    f"{self._where()}: result index {index} is outside the {len(pending)} "
                    "documents sent"
                )
            if index in got:
                raise APIError(f"{self._where()}: document {index} is ranked twice")
            if isinstance(score, bool) or not isinstance(score, (int, float)):
                raise APIError(f"{self._where()}: result {index} has no numeric relevance_score")
            if not math.isfinite(score):
                raise APIError(f"{self._where()}: result {index} has a non-finite relevance_score")
            got[index] = float(score)
        if not got:
            raise APIError(f"{self._where()}: the response ranks none of the documents sent")
        for local, score in got.items():
            scores[pending[local]] = score
        left = [p for local, p in enumerate(pending) if local not in got]
        if left:
            logger.debug(
                "%s returned %d of %d results; asking for the other %d",
                self._where(),
                len(got),
                len(pending),
                len(left),
            )
        return left

    # ------------------------------------------------------------------ errors and retries

    def _where(self) -> str:
        return f"rerank API {self.base_url} (model {self.model!r})"

    def _redact(self, text: str, limit: int = 300) -> str:
        if self._key is not None:
            text = text.replace(self._key.get(), "***")
        text = " ".join(text.split())
        return text if len(text) <= limit else text[: limit - 1] + "…"

    def _retry_delay(self, exc: Exception, attempt: int) -> float:
        """Seconds to wait before retrying after ``exc``, or raise the error to report."""
        return self._retry.delay(self._classify(exc), attempt, _cause(exc))

    def _classify(self, exc: Exception) -> Failure:
        """What went wrong: the error type and message, and whether and when to retry."""
        where = self._where()
        detail = self._redact(f"{type(exc).__name__}: {exc}")
        transport = transport_failure(self._httpx, exc, where, self.timeout, detail)
        if transport is not None:
            return transport
        if isinstance(exc, self._cohere.core.parse_error.ParsingError):
            return Failure(
                APIError, f"{where} sent a response of an unexpected shape", retryable=False
            )
        if not isinstance(exc, self._cohere.core.api_error.ApiError):
            detail = self._redact(f"{type(exc).__name__}: {exc}")
            return Failure(APIError, f"{where} failed: {detail}", retryable=False)
        status = exc.status_code
        detail = self._redact(body_text(exc.body))
        if status is not None and 200 <= status < 300:
            return Failure(
                APIError,
                f"{where} sent a response that is not valid JSON: {detail}",
                status=status,
                retryable=False,
            )
        return status_failure(status, detail, exc.headers, where)


def _cause(exc: Exception) -> Exception | None:
    """The exception to chain: transport errors are kept, SDK errors (which carry the raw
    response body and headers in their text) are not."""
    module = type(exc).__module__
    return None if module.startswith("cohere") else exc
