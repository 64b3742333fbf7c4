"""What the remote (HTTP) backends share: option checks, a key that never shows, URLs safe to
show, pairs grouped into requests, the retry policy (timeouts, 429/408/5xx with bounded
exponential backoff that honours ``Retry-After``) and the typed errors it ends in, and the
tokenizer that cuts client-side windows (a word estimate, a named Hugging Face tokenizer or
a tokenizer object; the served model's own files when the model is named by a local
folder). Used by ``cohere.py`` and ``tei.py``; imports nothing heavy.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..deps import require
from ..errors import APIError, APITimeoutError, AuthenticationError, ConfigError, RateLimitError
from ..types import Pair, Tokenizer
from ._words import WordTokenizer
from .runtime.hf import HFTokenizer, model_max_length
from .trained_length import trained_max_length

__all__ = [
    "MAX_BACKOFF",
    "Failure",
    "RetryPolicy",
    "Secret",
    "body_text",
    "build_tokenizer",
    "check_url",
    "clean_url",
    "group_requests",
    "local_model_dir",
    "local_window_length",
    "named_tokenizer",
    "positive",
    "retry_after",
    "status_failure",
    "transport_failure",
]

MAX_BACKOFF = 30.0

logger = logging.getLogger("crossrank")


class Secret:
    """Holds an API key; its repr never shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


def clean_url(url: str) -> str:
    """``url`` without credentials, query or trailing slash (safe to show and to key on)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def check_url(url: object) -> str:
    """``url`` if it is an http(s) URL with a host, else a ConfigError."""
    if (
        not isinstance(url, str)
        or urlsplit(url).scheme not in ("http", "https")
        or not urlsplit(url).hostname
    ):
        raise ConfigError(f"base_url must be an http(s) URL, got {url!r}")
    return url


def positive(name: str, value: object, *, minimum: float = 0.0, integer: bool = False) -> None:
    """A ConfigError unless ``value`` is a number (an int with ``integer``) >= ``minimum``."""
    ok = not isinstance(value, bool) and isinstance(value, int if integer else (int, float))
    if not ok or not value >= minimum:  # type: ignore[operator]
        what = "an int" if integer else "a number"
        raise ConfigError(f"{name} must be {what} >= {minimum:g}, got {value!r}")


def group_requests(pairs: Sequence[Pair], step: int) -> list[tuple[str, list[int]]]:
    """One (query, positions) per request: pairs grouped by query, ``step`` at most each."""
    groups: dict[str, list[int]] = {}
    for i, (query, _) in enumerate(pairs):
        groups.setdefault(query, []).append(i)
    return [
        (query, positions[s : s + step])
        for query, positions in groups.items()
        for s in range(0, len(positions), step)
    ]


# ---------------------------------------------------------------------------- tokenizers


class _FastTokenizer:
    """A ``tokenizers.Tokenizer`` with the two members :class:`HFTokenizer` reads from a
    transformers fast tokenizer."""

    def __init__(self, tok: Any) -> None:
        self.backend_tokenizer = tok

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        post = self.backend_tokenizer.post_processor
        return 0 if post is None else int(post.num_special_tokens_to_add(pair))


def named_tokenizer(name: str, *, extra: str, backend: str) -> _FastTokenizer:
    """The fast tokenizer (``tokenizer.json``) of a Hugging Face model, by local path or hub
    id, loaded with ``tokenizers`` and ``huggingface_hub`` (no transformers, no torch)."""
    purpose = f"the {backend} backend's tokenizer={name!r} option"
    tokenizers = require("tokenizers", extra=extra, purpose=purpose)
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
            hub = require("huggingface_hub", extra=extra, purpose=purpose)
            path = Path(hub.hf_hub_download(repo_id=name, filename="tokenizer.json"))
        return _FastTokenizer(tokenizers.Tokenizer.from_file(str(path)))
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"could not load tokenizer {name!r}: {type(exc).__name__}: {str(exc).strip()}"
        ) from exc


def local_model_dir(model: object) -> Path | None:
    """``model`` as a local model folder with a fast tokenizer (``tokenizer.json``), as
    when a self-hosted server was started on that folder; ``None`` for anything else."""
    if not isinstance(model, str):
        return None
    path = Path(model).expanduser()
    try:
        return path if (path / "tokenizer.json").is_file() else None
    except OSError:
        return None


def _json_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def local_window_length(folder: Path) -> int | None:
    """The pair length to window a local model folder's model at, as the local backends
    choose it: the training length ``crossrank finetune`` recorded, within the model's own
    limit (``tokenizer_config.json``'s ``model_max_length``, ``config.json``'s position
    embeddings); ``None`` when the folder states neither."""
    tok = _json_file(folder / "tokenizer_config.json")
    config = _json_file(folder / "config.json")
    tok_max = tok.get("model_max_length")
    limit = model_max_length(
        SimpleNamespace(model_max_length=tok_max if isinstance(tok_max, int) else None),
        SimpleNamespace(
            **{
                k: config[k]
                for k in ("max_position_embeddings", "model_type", "pad_token_id")
                if k in config
            }
        ),
        default=0,
    )
    trained = trained_max_length(str(folder))
    if trained is not None and limit:
        return min(trained, limit)
    return trained or limit or None


def build_tokenizer(tokenizer: Any, special: int, *, extra: str, backend: str) -> Tokenizer:
    """``"words"`` (the estimate, ``special`` tokens per pair), a Hugging Face tokenizer name
    or path, a fast tokenizer, or any object with ``pair_special_tokens``/``token_spans``."""
    if isinstance(tokenizer, str) and tokenizer == "words":
        return WordTokenizer(pair_special_tokens=special)
    if isinstance(tokenizer, str):
        return HFTokenizer(named_tokenizer(tokenizer, extra=extra, backend=backend), extra=extra)
    if getattr(tokenizer, "backend_tokenizer", None) is not None:
        return HFTokenizer(tokenizer, extra=extra)
    if isinstance(tokenizer, Tokenizer):
        return tokenizer
    raise ConfigError(
        "tokenizer must be 'words', a Hugging Face tokenizer name or path, a fast tokenizer, "
        f"or an object with pair_special_tokens and token_spans; got {type(tokenizer).__name__}"
    )


# ---------------------------------------------------------------------------- retries


@dataclass(frozen=True, slots=True)
class Failure:
    """What went wrong with one attempt: the error type and message, and whether (and
    after how many seconds, when the server said) to retry."""

    kind: type[APIError]
    message: str
    status: int | None = None
    retryable: bool = True
    wait: float | None = None  # seconds the server asked for (Retry-After)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``timeout`` seconds per attempt; ``max_retries`` retries after the first attempt for
    a retryable failure, waiting what the server asked (``Retry-After``; more than
    ``max_retry_wait`` ends the retries at once) or ``backoff * 2**attempt`` seconds
    (at most 30) with jitter."""

    timeout: float
    max_retries: int
    backoff: float
    max_retry_wait: float

    @classmethod
    def checked(
        cls, timeout: float, max_retries: int, backoff: float, max_retry_wait: float
    ) -> RetryPolicy:
        """The policy, or a ConfigError naming the first bad value."""
        positive("timeout", timeout, minimum=0.001)
        positive("max_retries", max_retries, integer=True)
        positive("backoff", backoff)
        positive("max_retry_wait", max_retry_wait)
        return cls(float(timeout), int(max_retries), float(backoff), float(max_retry_wait))

    def delay(self, failure: Failure, attempt: int, cause: BaseException | None) -> float:
        """Seconds to wait before retrying after ``failure`` (attempt ``attempt``, from 0),
        or raise the typed error to report (chained to ``cause``)."""
        attempts = attempt + 1
        message = failure.message
        if failure.retryable and attempt < self.max_retries:
            wait = failure.wait
            if wait is None:
                wait = min(MAX_BACKOFF, self.backoff * 2.0**attempt) * (0.5 + random.random() / 2)
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
        raise failure.kind(message, status_code=failure.status) from cause


def transport_failure(
    httpx: Any, exc: BaseException, where: str, timeout: float, detail: str
) -> Failure | None:
    """A timeout or connection failure (retryable), or ``None`` for anything else."""
    if isinstance(exc, httpx.TimeoutException):
        return Failure(APITimeoutError, f"{where} did not answer within {timeout:g}s")
    if isinstance(exc, (httpx.NetworkError, httpx.RemoteProtocolError)):
        return Failure(APIError, f"{where} could not be reached: {detail}")
    return None


def status_failure(status: int | None, detail: str, headers: Any, where: str) -> Failure:
    """The failure an HTTP error status means: 401/403/498 the key, 429 rate limiting,
    408 and 5xx retryable, other 4xx a rejected request."""
    if status in (401, 403, 498):
        return Failure(
            AuthenticationError,
            f"{where} refused the API key (HTTP {status}): {detail}",
            status=status,
            retryable=False,
        )
    if status == 429:
        return Failure(
            RateLimitError,
            f"{where} is rate limiting (HTTP 429): {detail}",
            status=429,
            wait=retry_after(headers),
        )
    if status is not None and (status >= 500 or status == 408):
        return Failure(
            APIError,
            f"{where} failed (HTTP {status}): {detail}",
            status=status,
            wait=retry_after(headers),
        )
    return Failure(
        APIError,
        f"{where} rejected the request (HTTP {status}): {detail}",
        status=status,
        retryable=False,
    )


def body_text(body: Any) -> str:
    """The human part of an error body (``message``/``detail``/``error``), else the body."""
    if isinstance(body, dict):
        for key in ("message", "detail", "error"):
            value = body.get(key)
            if isinstance(value, dict):
                value = value.get("message", value)
            if value:
                return str(value)
        return json.dumps(body, default=str)
    return "" if body is None else str(body)


def retry_after(headers: Any) -> float | None:
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
