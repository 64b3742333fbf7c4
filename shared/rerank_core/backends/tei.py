"""Text Embeddings Inference backend (preset ``"tei"``): Hugging Face TEI's ``/rerank``.

``POST {base_url}/rerank`` with ``{"query", "texts", "raw_scores": true, "truncate": ...}``
answers ``[{"index", "score"}, ...]`` (TEI serves one cross-encoder, so no model is sent).
Requests go out with ``httpx`` (sync and async clients, an injectable transport for tests);
the retry policy, timeouts and typed errors are the Cohere backend's
(:mod:`rerank_core.backends._http`). Pairs are grouped by query, at most
``max_docs_per_request`` texts per request (TEI's ``--max-client-batch-size``, 32 by default).

Windows are cut client-side and must fit the served model. The tokenizer that counts them,
best first: the server's own (``POST {base_url}/tokenize`` with ``{"inputs": [...]}``,
which TEI and vLLM expose: exact token offsets), the served model's tokenizer by name or
path when it is available locally (``tokenizer="BAAI/bge-reranker-base"``, or a tokenizer
object), else the word estimate of :mod:`rerank_core.backends._words`, calibrated to err on
the side of whole windows. With an exact tokenizer the request says ``"truncate": false`` (a
window never needs cutting, and the server must not cut silently); with the estimate it
says ``"truncate": true`` so that a window the estimate undercounts loses its last tokens
on the server rather than failing the request. ``describe()["tokenizer"]`` says which is used.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any, Literal

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
    positive,
    status_failure,
    transport_failure,
)
from ._words import WordTokenizer
from .runtime.hf import fingerprint_of

__all__ = ["MAX_CLIENT_BATCH", "ServerTokenizer", "TEIBackend"]

MAX_CLIENT_BATCH = 32  # TEI's --max-client-batch-size default
_DEFAULT_MAX_LENGTH = 512
_ASYNC_CONCURRENCY = 4
_PROBE = "a"  # a text whose special tokens the server's tokenizer reveals

logger = logging.getLogger("crossrank")

TokenizerChoice = Literal["auto", "server", "words"]


class ServerTokenizer:
    """Token spans from the server's ``/tokenize`` (TEI, vLLM): exact for the served model.

    Each text is sent once (``add_special_tokens: false``); the answer's ``start``/``stop``
    character offsets become spans. Recently seen texts are remembered (windowing
    tokenizes every text on every call).
    """

    def __init__(self, backend: TEIBackend, pair_special_tokens: int) -> None:
        self._backend = backend
        self._special = pair_special_tokens
        self._memo: dict[str, list[tuple[int, int]]] = {}
        self._lock = threading.Lock()

    @property
    def pair_special_tokens(self) -> int:
        return self._special

    def token_spans(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        with self._lock:
            todo = list(dict.fromkeys(t for t in texts if t not in self._memo))
        step = self._backend.max_docs_per_request
        for s in range(0, len(todo), step):
            chunk = todo[s : s + step]
            got = self._backend._tokenize(chunk, add_special_tokens=False)
            with self._lock:
                if len(self._memo) > 4096:
                    self._memo.clear()
                for text, tokens in zip(chunk, got, strict=True):
                    self._memo[text] = _spans(text, tokens)
        with self._lock:
            return [self._memo[t] for t in texts]

    def __repr__(self) -> str:
        return f"ServerTokenizer({self._backend.base_url}/tokenize)"


def _spans(text: str, tokens: Any) -> list[tuple[int, int]]:
    """Character spans from TEI's ``/tokenize`` tokens (``start``/``stop`` are byte
    offsets into the UTF-8 text in TEI; converted to character offsets here)."""
    data = text.encode("utf-8")
    char_at = _byte_to_char(text) if len(data) != len(text) else None
    out: list[tuple[int, int]] = []
    for tok in tokens:
        if not isinstance(tok, dict) or tok.get("special"):
            continue
        a, b = tok.get("start"), tok.get("stop")
        if not isinstance(a, int) or not isinstance(b, int) or not 0 <= a <= b <= len(data):
            raise APIError("the server's /tokenize answered a token without valid offsets")
        if char_at is not None:
            a, b = char_at[a], char_at[b]
        if b > a:
            out.append((a, b))
    return out


def _byte_to_char(text: str) -> list[int]:
    """``index[byte offset] = character offset`` for a UTF-8 ``text`` (one past the end too)."""
    index: list[int] = []
    for i, ch in enumerate(text):
        index.extend([i] * len(ch.encode("utf-8")))
    index.append(len(text))
    return index


class TEIBackend(BackendBase[Tokenizer]):
    """Scores pairs with a Text Embeddings Inference server's ``/rerank``.

    ``base_url``: the server (e.g. ``http://localhost:8080``; required). ``api_key``: sent
    as ``Authorization: Bearer`` when the server was started with ``--api-key``.
    ``timeout``, ``max_retries``, ``backoff``, ``max_retry_wait``: as for the cohere
    backend (retries on 429/408/5xx, timeouts and connection errors, honouring
    ``Retry-After``). ``max_docs_per_request``: texts per request (TEI's
    ``--max-client-batch-size``). ``max_length``: tokens per (query, window) pair (default
    512, the usual cross-encoder; set the served model's). ``tokenizer``: ``"auto"`` (the
    server's ``/tokenize`` if it answers, else the word estimate), ``"server"`` (its
    ``/tokenize``, or a ConfigError), ``"words"``, a Hugging Face tokenizer name or local
    path, or a tokenizer object. ``pair_special_tokens``: tokens the model adds around a
    pair, when the tokenizer cannot tell (the estimate; default 4). ``transport`` /
    ``async_transport``: httpx transports (tests: ``httpx.MockTransport``). ``model``: a
    label for fingerprints and ``describe()`` (TEI serves one model; default: what the
    server's ``/info`` says, else ``"tei"``). Scores are TEI's raw scores (logits);
    ``normalize="sigmoid"`` maps them to 0-1 as TEI's own ``raw_scores: false`` does.
    """

    score_scale: ScoreScale = "logit"

    def __init__(
        self,
        base_url: str | None = None,
        *,
        model: str | None = None,
        api_key: Any = None,
        timeout: float = 30.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_retry_wait: float = 60.0,
        max_docs_per_request: int = MAX_CLIENT_BATCH,
        max_length: int | None = None,
        tokenizer: Any = "auto",
        pair_special_tokens: int | None = None,
        transport: Any = None,
        async_transport: Any = None,
        device: str | None = None,
    ) -> None:
        httpx = require("httpx", extra="tei", purpose="the tei backend")
        if device is not None:
            raise ConfigError("device does not apply to the tei backend (the model runs remotely)")
        if base_url is None:
            raise ConfigError("the tei backend needs base_url=..., e.g. 'http://localhost:8080'")
        self._url = check_url(base_url).rstrip("/")
        self.base_url = clean_url(base_url)
        self._retry = RetryPolicy.checked(timeout, max_retries, backoff, max_retry_wait)
        positive("max_docs_per_request", max_docs_per_request, minimum=1, integer=True)
        if max_length is not None:
            positive("max_length", max_length, minimum=16, integer=True)
        if pair_special_tokens is not None:
            positive("pair_special_tokens", pair_special_tokens, integer=True)
        if model is not None and (not isinstance(model, str) or not model.strip()):
            raise ConfigError(f"model must be a non-empty string, got {model!r}")
        self._key = self._resolve_key(api_key)
        self._httpx = httpx
        self.timeout = self._retry.timeout
        self.max_docs_per_request = int(max_docs_per_request)
        self._transport = transport
        self._async_transport = async_transport
        self._client: Any = None
        self._async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self.model = model or "tei"
        self._tokenizer, self._tokenizer_kind = self._choose_tokenizer(
            tokenizer, pair_special_tokens
        )
        special = int(self._tokenizer.pair_special_tokens)
        self._max_length = max(
            max_length if max_length is not None else _DEFAULT_MAX_LENGTH, special + 2
        )
        self.truncate = self._tokenizer_kind == "words"
        self.model_id = self.model
        self._fingerprint = fingerprint_of(
            backend="tei", base_url=self.base_url, model=self.model, truncate=self.truncate
        )

    # ------------------------------------------------------------------ protocol

    def score_pairs(self, pairs: Sequence[Pair]) -> list[float]:
        out = [math.nan] * len(pairs)
        for query, positions in group_requests(pairs, self.max_docs_per_request):
            scores = self._rerank(query, [pairs[i][1] for i in positions])
            for i, s in zip(positions, scores, strict=True):
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

        await asyncio.gather(
            *(one(q, pos) for q, pos in group_requests(pairs, self.max_docs_per_request))
        )
        return out

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "base_url": self.base_url,
            "tokenizer": self._tokenizer_kind,
            "truncate": self.truncate,
            "max_docs_per_request": self.max_docs_per_request,
        }

    def close(self) -> None:
        """Close the sync client's connections (async clients close with their loop)."""
        with self._lock:
            client, self._client = self._client, None
            self._async_clients = weakref.WeakKeyDictionary()
        if client is not None:
            client.close()

    def __repr__(self) -> str:
        return (
            f"TEIBackend(base_url={self.base_url!r}, model={self.model!r}, "
            f"tokenizer={self._tokenizer_kind!r}, max_length={self._max_length})"
        )

    # ------------------------------------------------------------------ set-up

    @staticmethod
    def _resolve_key(api_key: Any) -> Secret | None:
        if api_key is None:
            return None
        getter = getattr(api_key, "get_secret_value", None)  # pydantic SecretStr
        value = getter() if callable(getter) else api_key
        if not isinstance(value, str) or not value.strip():
            raise ConfigError("api_key must be a non-empty string")
        return Secret(value.strip())

    def _choose_tokenizer(self, tokenizer: Any, special: int | None) -> tuple[Tokenizer, str]:
        if isinstance(tokenizer, str) and tokenizer in ("auto", "server"):
            try:
                return ServerTokenizer(self, self._server_special_tokens(special)), "server"
            except APIError as exc:
                if tokenizer == "server":
                    raise ConfigError(
                        f"tokenizer='server': {self.base_url}/tokenize did not answer ({exc}); "
                        "pass the served model's tokenizer name as tokenizer=... instead"
                    ) from exc
                logger.warning(
                    "%s/tokenize is not available (%s); windows are cut with a word-based "
                    "estimate (pass tokenizer=<the served model's tokenizer> for exact windows)",
                    self.base_url,
                    exc,
                )
                return WordTokenizer(pair_special_tokens=4 if special is None else special), (
                    "words"
                )
        built = build_tokenizer(
            tokenizer, 4 if special is None else special, extra="tei", backend="tei"
        )
        kind = "words" if isinstance(built, WordTokenizer) else "local"
        return built, kind

    def _server_special_tokens(self, given: int | None) -> int:
        """Special tokens the served model adds around a pair: ``given``, else twice what
        ``/tokenize`` adds to one text (BERT adds 2 to a text and 3 to a pair, RoBERTa and
        XLM-R 2 and 4: twice is exact or one token safe)."""
        with_special = self._tokenize([_PROBE], add_special_tokens=True)[0]
        alone = self._tokenize([_PROBE], add_special_tokens=False)[0]
        if given is not None:
            return given
        return 2 * max(0, len(with_special) - len(alone))

    # ------------------------------------------------------------------ HTTP

    def _headers(self) -> dict[str, str]:
        if self._key is None:
            return {}
        return {"authorization": f"Bearer {self._key.get()}"}

    def _sync_client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._httpx.Client(
                    timeout=self.timeout, transport=self._transport, follow_redirects=True
                )
            return self._client

    def _async_client(self) -> Any:
        loop = asyncio.get_running_loop()
        with self._lock:
            # an httpx.AsyncClient's connections belong to the loop that opened them
            client = self._async_clients.get(loop)
            if client is None:
                client = self._httpx.AsyncClient(
                    timeout=self.timeout, transport=self._async_transport, follow_redirects=True
                )
                self._async_clients[loop] = client
            return client

    def _post(self, path: str, payload: dict[str, Any]) -> Any:
        client = self._sync_client()
        attempt = 0
        while True:
            try:
                response = client.post(self._url + path, json=payload, headers=self._headers())
                return self._json(path, response)
            except Exception as exc:
                delay = self._retry.delay(self._classify(path, exc), attempt, _cause(exc))
            time.sleep(delay)
            attempt += 1

    async def _apost(self, path: str, payload: dict[str, Any]) -> Any:
        client = self._async_client()
        attempt = 0
        while True:
            try:
                response = await client.post(
                    self._url + path, json=payload, headers=self._headers()
                )
                return self._json(path, response)
            except Exception as exc:
                delay = self._retry.delay(self._classify(path, exc), attempt, _cause(exc))
            await asyncio.sleep(delay)
            attempt += 1

    def _json(self, path: str, response: Any) -> Any:
        if response.status_code >= 400:
            raise _HTTPStatus(response)
        try:
            return response.json()
        except ValueError:
            raise _NotJSON(response) from None

    def _tokenize(self, inputs: list[Any], *, add_special_tokens: bool) -> list[Any]:
        got = self._post("/tokenize", {"inputs": inputs, "add_special_tokens": add_special_tokens})
        if not isinstance(got, list) or len(got) != len(inputs):
            raise APIError(f"{self._where('/tokenize')}: expected one token list per input")
        return got

    def _payload(self, query: str, texts: list[str]) -> dict[str, Any]:
        return {"query": query, "texts": texts, "raw_scores": True, "truncate": self.truncate}

    def _rerank(self, query: str, texts: list[str]) -> list[float]:
        return self._collect(self._post("/rerank", self._payload(query, texts)), len(texts))

    async def _arerank(self, query: str, texts: list[str]) -> list[float]:
        got = await self._apost("/rerank", self._payload(query, texts))
        return self._collect(got, len(texts))

    def _collect(self, results: Any, n: int) -> list[float]:
        where = self._where("/rerank")
        if not isinstance(results, list):
            raise APIError(f"{where}: expected a list of {{index, score}}")
        scores: dict[int, float] = {}
        for item in results:
            index = item.get("index") if isinstance(item, dict) else None
            score = item.get("score") if isinstance(item, dict) else None
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n:
                raise APIError(f"{where}: a result has no index among the {n} texts sent")
            if index in scores:
                raise APIError(f"{where}: text {index} is scored twice")
            if isinstance(score, bool) or not isinstance(score, (int, float)):
                raise APIError(f"{where}: result {index} has no numeric score")
            if not math.isfinite(score):
                raise APIError(f"{where}: result {index} has a non-finite score")
            scores[index] = float(score)
        if len(scores) != n:
            raise APIError(f"{where}: scored {len(scores)} of the {n} texts sent")
        return [scores[i] for i in range(n)]

    # ------------------------------------------------------------------ errors

    def _where(self, path: str) -> str:
        return f"TEI server {self.base_url}{path}"

    def _redact(self, text: str, limit: int = 300) -> str:
        if self._key is not None:
            text = text.replace(self._key.get(), "***")
        text = " ".join(text.split())
        return text if len(text) <= limit else text[: limit - 1] + "…"

    def _classify(self, path: str, exc: Exception) -> Failure:
        where = self._where(path)
        if isinstance(exc, APIError):  # our own checks of the answer: not retried
            return Failure(type(exc), str(exc), status=exc.status_code, retryable=False)
        if isinstance(exc, _HTTPStatus):
            detail = self._redact(body_text(exc.body))
            return status_failure(exc.status, detail, exc.headers, where)
        if isinstance(exc, _NotJSON):
            return Failure(
                APIError,
                f"{where} sent a response that is not JSON: {self._redact(exc.text)}",
                status=exc.status,
                retryable=False,
            )
        detail = self._redact(f"{type(exc).__name__}: {exc}")
        transport = transport_failure(self._httpx, exc, where, self.timeout, detail)
        if transport is not None:
            return transport
        return Failure(APIError, f"{where} failed: {detail}", retryable=False)


class _HTTPStatus(Exception):
    """An HTTP error status, carried to the retry policy."""

    def __init__(self, response: Any) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.status = int(response.status_code)
        self.headers = dict(response.headers)
        try:
            self.body: Any = response.json()
        except ValueError:
            self.body = response.text


class _NotJSON(Exception):
    def __init__(self, response: Any) -> None:
        super().__init__("not JSON")
        self.status = int(response.status_code)
        self.text = str(response.text)


def _cause(exc: Exception) -> Exception | None:
    """The exception to chain: transport errors are kept; our carriers are not."""
    return None if isinstance(exc, (_HTTPStatus, _NotJSON, APIError)) else exc
