"""Cohere Rerank API backend (preset ``"cohere"``), also for Cohere-compatible servers.

Uses the official ``cohere`` SDK (``ClientV2`` / ``AsyncClientV2``) and its
``/v2/rerank`` endpoint, which vLLM and other servers speak too (``base_url``). The
SDK's own retries are switched off on every request; the policy here is the one in
force: a timeout per attempt, retries on 429, 408, 5xx, timeouts and connection
errors with bounded exponential backoff that honours ``Retry-After``, and typed
errors from :mod:`rerank_core.errors` when the retries run out or the key is refused.

Pairs are grouped by query; each request carries one query and at most
``max_docs_per_request`` documents (the API advises against more than 1,000). The
API sees plain window texts: the engine cuts long texts into windows client-side,
with a word-based token estimate (or a tokenizer you name), so chunk-max works for
the API as for local models.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import os
import random
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..deps import require
from ..errors import (
    APIError,
    APITimeoutError,
    AuthenticationError,
    ConfigError,
    RateLimitError,
)
from ..types import Pair, ScoreScale, Tokenizer
from ._base import BackendBase
from ._words import WordTokenizer
from .runtime.hf import HFTokenizer, fingerprint_of

__all__ = ["DEFAULT_MODEL", "MAX_DOCS_PER_REQUEST", "CohereBackend"]

DEFAULT_MODEL = "rerank-v3.5"
MAX_DOCS_PER_REQUEST = 1000  # Cohere: "we recommend against sending more than 1,000 documents"
_COHERE_URL = "https://api.cohere.com"
_NO_KEY = "EMPTY"  # sent to self-hosted servers that need no key (the SDK requires one)
_ASYNC_CONCURRENCY = 4  # requests in flight at once from one ascore_pairs call
_MAX_BACKOFF = 30.0

logger = logging.getLogger("crossrank")


def _model_limits(model: str) -> tuple[int, int]:
    """(context length, special tokens per pair) for Cohere's models, as documented."""
    name = model.lower()
    if name.startswith("rerank-v4"):
        return 32768, 4  # Rerank 4: 32,768-token context, 4 reserved tokens
    if name.startswith(("rerank-v3", "rerank-english-v3", "rerank-multilingual-v3")):
        return 4096, 3  # Rerank 3 / 3.5: 4,096-token context, 4,093-token chunks
    return 512, 4  # unknown (e.g. a self-hosted cross-encoder): a typical 512-token model


class _Secret:
    """Holds the API key; its repr never shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


def _clean_url(url: str) -> str:
    """``url`` without credentials, query or trailing slash (safe to show and to key on)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def _is_cohere(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host.endswith(("cohere.com", "cohere.ai"))


def _positive(name: str, value: object, *, minimum: float = 0.0, integer: bool = False) -> None:
    ok = not isinstance(value, bool) and isinstance(value, int if integer else (int, float))
    if not ok or not value >= minimum:  # type: ignore[operator]
        what = "an int" if integer else "a number"
        raise ConfigError(f"{name} must be {what} >= {minimum:g}, got {value!r}")


class _FastTokenizer:
    """A ``tokenizers.Tokenizer`` with the two members :class:`HFTokenizer` reads from a
    transformers fast tokenizer."""

    def __init__(self, tok: Any) -> None:
        self.backend_tokenizer = tok

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        post = self.backend_tokenizer.post_processor
        return 0 if post is None else int(post.num_special_tokens_to_add(pair))


def _named_tokenizer(name: str) -> _FastTokenizer:
    """The fast tokenizer (``tokenizer.json``) of a Hugging Face model, by local path or hub
    id, loaded with ``tokenizers`` and ``huggingface_hub``: the cohere SDK depends on both, so
    the ``cohere`` extra is all this option needs (no transformers, no torch)."""
    purpose = f"the cohere backend's tokenizer={name!r} option"
    tokenizers = require("tokenizers", extra="cohere", purpose=purpose)
    path = Path(name).expanduser()
    try:
        if path.is_dir():
            path = path / "tokenizer.json"
            if not path.is_file():
                raise ConfigError(
                    f"tokenizer {name!r} has no tokenizer.json (a fast tokenizer, whose offsets "
                    "cut the windows); pass a loaded fast tokenizer object as tokenizer=... instead"
                )
        elif not path.is_file():
            hub = require("huggingface_hub", extra="cohere", purpose=purpose)
            path = Path(hub.hf_hub_download(repo_id=name, filename="tokenizer.json"))
        return _FastTokenizer(tokenizers.Tokenizer.from_file(str(path)))
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"could not load tokenizer {name!r}: {type(exc).__name__}: {str(exc).strip()}"
        ) from exc


class CohereBackend(BackendBase[Tokenizer]):
    """Scores pairs with the Cohere Rerank API or a Cohere-compatible ``/v2/rerank`` server.

    ``model``: default ``rerank-v3.5``. ``api_key``: the key, else ``CO_API_KEY``, else
    ``COHERE_API_KEY``; required for Cohere's API, optional with a self-hosted
    ``base_url`` (e.g. vLLM: ``http://localhost:8000``; default: ``CO_API_URL`` or
    Cohere's API). ``timeout``: seconds per attempt. ``max_retries``: retries after
    the first attempt on 429/408/5xx, timeouts and connection errors; waits follow
    ``Retry-After`` when the server sends it (a wait longer than ``max_retry_wait``
    ends the retries at once), else ``backoff * 2**attempt`` seconds with jitter.
    ``max_length``: tokens per (query, window) pair for the engine's windows (default:
    the model's documented context; 512 for models it does not know).
    ``max_tokens_per_doc``: sent to the API; windows are kept within it.
    ``tokenizer``: ``"words"`` (a dependency-free estimate), a Hugging Face tokenizer
    name or path (exact windows for a self-hosted model), or a tokenizer object.
    ``client`` / ``async_client``: ready ``cohere.ClientV2`` / ``AsyncClientV2``
    (e.g. for tests); our timeout and retry policy still apply to each request.
    Scores are the API's ``relevance_score`` (0–1).
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
        timeout: float = 30.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_retry_wait: float = 60.0,
        max_length: int | None = None,
        max_tokens_per_doc: int | None = None,
        tokenizer: Any = "words",
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
        _positive("timeout", timeout, minimum=0.001)
        _positive("max_retries", max_retries, integer=True)
        _positive("backoff", backoff)
        _positive("max_retry_wait", max_retry_wait)
        _positive("max_docs_per_request", max_docs_per_request, minimum=1, integer=True)
        if max_length is not None:
            _positive("max_length", max_length, minimum=16, integer=True)
        if max_tokens_per_doc is not None:
            _positive("max_tokens_per_doc", max_tokens_per_doc, minimum=1, integer=True)

        self._cohere = cohere
        self._httpx = httpx
        self.model = model
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.backoff = float(backoff)
        self.max_retry_wait = float(max_retry_wait)
        self.max_tokens_per_doc = max_tokens_per_doc
        self.max_docs_per_request = max_docs_per_request

        url = base_url if base_url is not None else os.environ.get("CO_API_URL") or None
        if url is not None and (
            not isinstance(url, str)
            or urlsplit(url).scheme not in ("http", "https")
            or not urlsplit(url).hostname
        ):
            raise ConfigError(f"base_url must be an http(s) URL, got {url!r}")
        self._base_url = url
        self.base_url = _clean_url(url) if url is not None else _COHERE_URL
        self._key = self._resolve_key(api_key, needs_key=(url is None or _is_cohere(url)))

        context, special = _model_limits(model)
        self._tokenizer = self._build_tokenizer(tokenizer, special)
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
            f"timeout={self.timeout}, max_retries={self.max_retries}, "
            f"max_tokens_per_doc={self.max_tokens_per_doc}, tokenizer={self._tokenizer!r})"
        )

    # ------------------------------------------------------------------ set-up

    @staticmethod
    def _resolve_key(api_key: Any, *, needs_key: bool) -> _Secret | None:
        if api_key is not None:
            getter = getattr(api_key, "get_secret_value", None)  # pydantic SecretStr
            value = getter() if callable(getter) else api_key
            if not isinstance(value, str) or not value.strip():
                raise ConfigError("api_key must be a non-empty string")
            return _Secret(value.strip())
        for var in ("CO_API_KEY", "COHERE_API_KEY"):
            value = os.environ.get(var, "").strip()
            if value:
                return _Secret(value)
        if needs_key:
            raise ConfigError(
                "no Cohere API key: pass api_key=..., or set CO_API_KEY or COHERE_API_KEY "
                "(a self-hosted server given as base_url=... needs none)"
            )
        return None

    @staticmethod
    def _build_tokenizer(tokenizer: Any, special: int) -> Tokenizer:
        if isinstance(tokenizer, str) and tokenizer == "words":
            return WordTokenizer(pair_special_tokens=special)
        if isinstance(tokenizer, str):
            return HFTokenizer(_named_tokenizer(tokenizer))
        if getattr(tokenizer, "backend_tokenizer", None) is not None:
            return HFTokenizer(tokenizer)
        if isinstance(tokenizer, Tokenizer):
            return tokenizer
        raise ConfigError(
            "tokenizer must be 'words', a Hugging Face tokenizer name or path, a fast tokenizer, "
            f"or an object with pair_special_tokens and token_spans; got {type(tokenizer).__name__}"
        )

    def _token(self) -> str:
        return self._key.get() if self._key is not None else _NO_KEY

    def _sync_client(self) -> Any:
        with self._lock:
            if self._client is None:
                http = self._httpx.Client(timeout=self.timeout, follow_redirects=True)
                self._client = self._cohere.ClientV2(
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
                client = self._cohere.AsyncClientV2(
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
        groups: dict[str, list[int]] = {}
        for i, (query, _) in enumerate(pairs):
            groups.setdefault(query, []).append(i)
        step = self.max_docs_per_request
        return [
            (query, positions[s : s + step])
            for query, positions in groups.items()
            for s in range(0, len(positions), step)
        ]

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
        failure = self._classify(exc)
        attempts = attempt + 1
        message = failure.message
        if failure.retryable and attempt < self.max_retries:
            wait = failure.wait
            if wait is None:
                wait = min(_MAX_BACKOFF, self.backoff * 2.0**attempt) * (0.5 + random.random() / 2)
            if wait <= self.max_retry_wait:
                logger.warning(
                    "%s; retry %d of %d in %.2fs", message, attempts, self.max_retries, wait
                )
                return wait
            message += (
                f"; the server asked to wait {wait:g}s, more than max_retry_wait="
                f"{self.max_retry_wait:g}s"
            )
        elif failure.retryable:
            message += f" (after {attempts} attempt{'s' if attempts > 1 else ''})"
        raise failure.kind(message, status_code=failure.status) from _cause(exc)

    def _classify(self, exc: Exception) -> _Failure:
        """What went wrong: the error type and message, and whether and when to retry."""
        httpx = self._httpx
        where = self._where()
        if isinstance(exc, httpx.TimeoutException):
            return _Failure(APITimeoutError, f"{where} did not answer within {self.timeout:g}s")
        if isinstance(exc, (httpx.NetworkError, httpx.RemoteProtocolError)):
            detail = self._redact(f"{type(exc).__name__}: {exc}")
            return _Failure(APIError, f"{where} could not be reached: {detail}")
        if isinstance(exc, self._cohere.core.parse_error.ParsingError):
            return _Failure(
                APIError, f"{where} sent a response of an unexpected shape", retryable=False
            )
        if not isinstance(exc, self._cohere.core.api_error.ApiError):
            detail = self._redact(f"{type(exc).__name__}: {exc}")
            return _Failure(APIError, f"{where} failed: {detail}", retryable=False)
        status = exc.status_code
        detail = self._redact(_body_text(exc.body))
        if status is not None and 200 <= status < 300:
            return _Failure(
                APIError,
                f"{where} sent a response that is not valid JSON: {detail}",
                status=status,
                retryable=False,
            )
        if status in (401, 403, 498):
            return _Failure(
                AuthenticationError,
                f"{where} refused the API key (HTTP {status}): {detail}",
                status=status,
                retryable=False,
            )
        if status == 429:
            return _Failure(
                RateLimitError,
                f"{where} is rate limiting (HTTP 429): {detail}",
                status=429,
                wait=_retry_after(exc.headers),
            )
        if status is not None and (status >= 500 or status == 408):
            return _Failure(
                APIError,
                f"{where} failed (HTTP {status}): {detail}",
                status=status,
                wait=_retry_after(exc.headers),
            )
        return _Failure(
            APIError,
            f"{where} rejected the request (HTTP {status}): {detail}",
            status=status,
            retryable=False,
        )


@dataclass(frozen=True, slots=True)
class _Failure:
    kind: type[APIError]
    message: str
    status: int | None = None
    retryable: bool = True
    wait: float | None = None  # seconds the server asked for (Retry-After)


def _cause(exc: Exception) -> Exception | None:
    """The exception to chain: transport errors are kept, SDK errors (which carry the raw
    response body and headers in their text) are not."""
    module = type(exc).__module__
    return None if module.startswith("cohere") else exc


def _body_text(body: Any) -> str:
    if isinstance(body, dict):
        for key in ("message", "detail", "error"):
            value = body.get(key)
            if isinstance(value, dict):
                value = value.get("message", value)
            if value:
                return str(value)
        return json.dumps(body, default=str)
    return "" if body is None else str(body)


def _retry_after(headers: Any) -> float | None:
    """Seconds asked for by ``Retry-After`` (seconds or an HTTP date) or ``Retry-After-Ms``."""
    if not headers:
        return None
    lower = {str(k).lower(): str(v) for k, v in dict(headers).items()}
    ms = lower.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000.0
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return value
    raw = lower.get("retry-after")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        value = when.timestamp() - time.time()
    if not math.isfinite(value):
        return None
    return max(0.0, value)
