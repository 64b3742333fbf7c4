"""A score cache shared by many processes, on Redis.

Keys are ``<namespace>:<engine key>``. The engine key is a SHA-256 over the
backend fingerprint (model, weights, max_length, precision, activation), the
query and the window text, so two models can never read each other's scores;
``namespace`` separates deployments that share one Redis. Values are plain
decimal numbers (``repr`` of the float, exact on the way back), never pickles:
whatever else is found under a key is a miss. Each call is one round trip: a
pipelined ``MGET`` for lookups and a pipelined ``SET ... EX ttl`` for stores.

The client gets short socket timeouts (0.5 s) and no retry back-off, so a dead
or hung Redis costs a rerank call at most about one timeout; the engine wraps
the cache so that such a failure warns once and reranking goes on without it.
``redis`` is imported when a ``RedisCache`` is built, never by ``import rerank_core``.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from . import deps
from ._validate import number
from .errors import CacheError, ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import redis

__all__ = ["DEFAULT_TTL", "RedisCache"]

#: Default time to live of a stored score: 30 days.
DEFAULT_TTL = 30 * 24 * 3600

# Keys per MGET / per pipeline: bounds one command's size on huge calls.
_CHUNK = 1000
_NUMBER = re.compile(rb"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_NAMESPACE = re.compile(r"[A-Za-z0-9_.\-:]{1,64}")


def redact_url(url: str) -> str:
    """The URL with any password (in the userinfo or a ``password=`` query) shown as ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    netloc = parts.netloc
    userinfo, at, host = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
    query = re.sub(r"(?i)(^|&)(password=)[^&]*", r"\1\2***", parts.query)
    if netloc == parts.netloc and query == parts.query:
        return url
    if not netloc:
        return url.replace(parts.query, query)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _secrets_in(url: str) -> list[str]:
    """The password strings a URL carries (to scrub them from any message)."""
    found = re.findall(r"(?i)(?:^|[?&])password=([^&]+)", url)
    userinfo = url.partition("://")[2].split("/", 1)[0].rpartition("@")[0]
    if ":" in userinfo:
        found.append(userinfo.split(":", 1)[1])
    return [s for s in found if s]


def _scrub(message: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        message = message.replace(secret, "***")
    return message


def _parse(raw: object) -> float | None:
    """A stored value back to a float; anything but a finite plain number is a miss."""
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = raw.encode("ascii", "replace")
    if not isinstance(raw, bytes) or len(raw) > 64 or not _NUMBER.fullmatch(raw):
        return None
    value = float(raw)
    return value if math.isfinite(value) else None


class RedisCache:
    """Scores in Redis, shared by every process that points at the same server.

    ``url``: ``redis://[:password@]host:port/db`` (or ``rediss://``, ``unix://``).
    ``ttl``: seconds a score lives (default 30 days; ``None`` = no expiry).
    ``namespace``: key prefix (letters, digits, ``_.-:``). ``client``: a ready
    ``redis.Redis`` to use instead of building one from ``url`` (its own timeouts
    apply, and :meth:`close` leaves it open). ``socket_timeout`` and
    ``connect_timeout``: seconds before a silent server counts as failed.

    Use it alone, ``Reranker(..., cache=RedisCache(url))``, or behind the
    in-process LRU, ``cache=TieredCache(MemoryCache(), RedisCache(url))``.
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        ttl: float | None = DEFAULT_TTL,
        namespace: str = "crossrank",
        client: redis.Redis | None = None,
        socket_timeout: float = 0.5,
        connect_timeout: float = 0.5,
    ) -> None:
        number("ttl (seconds)", ttl, above=0, allow_none=True)
        if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
            raise ConfigError(
                "namespace must be 1-64 characters of letters, digits and _.-:, "
                f"got {namespace!r:.80}"
            )
        socket_timeout = number("socket_timeout (seconds)", socket_timeout, above=0)
        connect_timeout = number("connect_timeout (seconds)", connect_timeout, above=0)
        self.ttl = ttl
        self.namespace = namespace
        self._prefix = namespace + ":"
        self._owns_client = client is None
        if client is None:
            if not isinstance(url, str):
                raise ConfigError(f"url must be a string, got {type(url).__name__}")
            self._url = redact_url(url)
            self._secrets = _secrets_in(url)
            client = self._build_client(url, socket_timeout, connect_timeout)
        else:
            self._url = "<client>"
            self._secrets = []
        self._client: redis.Redis = client
        self._closed = False
        self._lock = threading.Lock()

    @staticmethod
    def _build_client(url: str, socket_timeout: float, connect_timeout: float) -> redis.Redis:
        redis_mod, backoff, retry = (
            deps.require(module, extra="redis", package="redis", purpose="RedisCache")
            for module in ("redis", "redis.backoff", "redis.retry")
        )
        try:
            client: redis.Redis = redis_mod.Redis.from_url(
                url,
                socket_timeout=socket_timeout,
                socket_connect_timeout=connect_timeout,
                # One immediate reconnect for a connection the server dropped (a
                # restart); never a back-off, and never a retry after a timeout.
                retry=retry.Retry(
                    backoff.NoBackoff(), 1, supported_errors=(redis_mod.ConnectionError,)
                ),
                retry_on_timeout=False,
                health_check_interval=0,
            )
        except ValueError as exc:
            detail = _scrub(str(exc), _secrets_in(url))
            raise ConfigError(f"invalid Redis URL {redact_url(url)!r}: {detail}") from None
        return client

    # ------------------------------------------------------------------ cache protocol

    def get_many(self, keys: Sequence[str]) -> list[float | None]:
        if not keys:
            return []
        self._check_open()
        names = [self._prefix + k for k in keys]
        try:
            pipe = self._client.pipeline(transaction=False)
            for start in range(0, len(names), _CHUNK):
                pipe.mget(names[start : start + _CHUNK])
            replies = pipe.execute()
        except Exception as exc:
            raise self._error("get", exc) from exc
        out: list[float | None] = []
        for reply in replies:
            out.extend(_parse(v) for v in reply)
        if len(out) != len(keys):
            raise CacheError(
                f"redis at {self._url} returned {len(out)} values for {len(keys)} keys"
            )
        return out

    def set_many(self, items: Mapping[str, float]) -> None:
        values = [(self._prefix + k, float(v)) for k, v in items.items()]
        values = [(k, v) for k, v in values if math.isfinite(v)]
        if not values:
            return
        self._check_open()
        ex = px = None
        if self.ttl is not None:
            if float(self.ttl).is_integer():
                ex = int(self.ttl)
            else:
                px = max(1, round(self.ttl * 1000))
        try:
            for start in range(0, len(values), _CHUNK):
                pipe = self._client.pipeline(transaction=False)
                for k, v in values[start : start + _CHUNK]:
                    pipe.set(k, repr(v), ex=ex, px=px)
                pipe.execute()
        except Exception as exc:
            raise self._error("set", exc) from exc

    # ------------------------------------------------------------------ housekeeping

    def clear(self) -> int:
        """Delete every key of this namespace (SCAN + UNLINK; other keys untouched).

        Returns the number of keys deleted.
        """
        self._check_open()
        deleted = 0
        try:
            batch: list[Any] = []
            for name in self._client.scan_iter(match=_glob_escape(self._prefix) + "*", count=1000):
                batch.append(name)
                if len(batch) >= _CHUNK:
                    deleted += int(self._client.unlink(*batch))
                    batch = []
            if batch:
                deleted += int(self._client.unlink(*batch))
        except Exception as exc:
            raise self._error("clear", exc) from exc
        return deleted

    def ping(self) -> bool:
        """True when the server answers within the timeout."""
        self._check_open()
        try:
            return bool(self._client.ping())
        except Exception:
            return False

    def close(self) -> None:
        """Release the connection pool (a client passed in by the caller stays open)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> RedisCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisCache(url={self._url!r}, namespace={self.namespace!r}, ttl={self.ttl!r})"

    def _check_open(self) -> None:
        if self._closed:
            raise CacheError("RedisCache is closed")

    def _error(self, op: str, exc: BaseException) -> CacheError:
        detail = _scrub(f"{type(exc).__name__}: {exc}", self._secrets)
        return CacheError(f"redis {op} at {self._url} failed: {detail}")


def _glob_escape(text: str) -> str:
    """Escape Redis glob metacharacters so a prefix matches literally."""
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)
