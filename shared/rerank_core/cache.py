"""Score caches.

A cache maps a key (a hex digest of the backend fingerprint, the query and the
window text) to a float score. Any object with ``get_many`` and ``set_many`` is a
cache (:class:`ScoreCache`); the engine wraps it in :class:`GuardedCache` so a failing
tier never breaks reranking. Values are stored as plain numbers: nothing is pickled.

The engine sees every cache through one managed interface, :class:`ManagedCache`:
``get_many``/``set_many``, ``stats`` and ``close`` — with ownership: ``close`` releases
the cache only when the engine built it (``cache="memory"`` or a file path). A cache
the caller passed in stays open, so several engines can share one cache.
"""

from __future__ import annotations

import hashlib
import logging
import math
import sqlite3
import sys
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ._validate import number, positive_int
from .errors import ConfigError
from .types import SupportsClose

__all__ = [
    "CacheLike",
    "CacheStats",
    "CacheWarning",
    "GuardedCache",
    "ManagedCache",
    "MemoryCache",
    "SQLiteCache",
    "ScoreCache",
    "TieredCache",
    "cache_key",
    "close_quietly",
]

logger = logging.getLogger("crossrank.cache")


class CacheWarning(RuntimeWarning):
    """A cache tier failed; reranking goes on without it."""


@runtime_checkable
class ScoreCache(Protocol):
    """The cache protocol: batched get and set of float scores by string key."""

    def get_many(self, keys: Sequence[str]) -> list[float | None]: ...

    def set_many(self, items: Mapping[str, float]) -> None: ...


def cache_key(fingerprint: str, query: str, text: str) -> str:
    """The cache key of one (query, window) pair under one scoring function."""
    h = hashlib.sha256()
    for part in (fingerprint, query, text):
        data = part.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counters since the engine was built (or since ``reset_stats``)."""

    hits: int = 0
    misses: int = 0
    errors: int = 0

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class MemoryCache:
    """A bounded, thread-safe in-process LRU."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = positive_int("max_entries", max_entries)
        self._data: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"MemoryCache(max_entries={self.max_entries})"

    def get_many(self, keys: Sequence[str]) -> list[float | None]:
        out: list[float | None] = []
        with self._lock:
            for k in keys:
                v = self._data.get(k)
                if v is not None:
                    self._data.move_to_end(k)
                out.append(v)
        return out

    def set_many(self, items: Mapping[str, float]) -> None:
        with self._lock:
            for k, v in items.items():
                self._data[k] = float(v)
                self._data.move_to_end(k)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


class SQLiteCache:
    """A persistent cache in one SQLite file (WAL mode, safe across threads and processes)."""

    def __init__(self, path: str | Path, *, timeout: float = 2.0) -> None:
        if not isinstance(path, (str, Path)):
            raise ConfigError(f"path must be a str or Path, got {type(path).__name__}")
        self.path = Path(path)
        self._timeout = number("timeout", timeout, at_least=0.0)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def __repr__(self) -> str:
        return f"SQLiteCache({str(self.path)!r})"

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self._timeout, check_same_thread=False)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS scores (k TEXT PRIMARY KEY, v REAL NOT NULL)"
                )
                conn.commit()
            except Exception:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def get_many(self, keys: Sequence[str]) -> list[float | None]:
        found: dict[str, float] = {}
        with self._lock, self._reconnect_on_error():
            conn = self._connect()
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                marks = ",".join("?" * len(chunk))
                for k, v in conn.execute(f"SELECT k, v FROM scores WHERE k IN ({marks})", chunk):
                    if isinstance(v, float) and math.isfinite(v):
                        found[k] = v
        return [found.get(k) for k in keys]

    def set_many(self, items: Mapping[str, float]) -> None:
        if not items:
            return
        with self._lock, self._reconnect_on_error():
            conn = self._connect()
            with conn:
                conn.executemany(
                    "INSERT OR REPLACE INTO scores (k, v) VALUES (?, ?)",
                    [(k, float(v)) for k, v in items.items()],
                )

    @contextmanager
    def _reconnect_on_error(self) -> Iterator[None]:
        """After an SQLite error drop the connection, so that the next call opens the
        file afresh: a connection that saw a corrupt or replaced file never recovers."""
        try:
            yield
        except sqlite3.Error:
            if self._conn is not None:
                with suppress(sqlite3.Error):
                    self._conn.close()
                self._conn = None
            raise

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class TieredCache:
    """Fast tier first, slower tiers behind; a hit in a slow tier is copied forward.

    Each tier is guarded on its own: a tier that fails warns once and is skipped
    until it answers again, while the other tiers keep serving. :meth:`close`
    closes every tier.
    """

    def __init__(self, *tiers: ScoreCache, retry_after: float = 5.0) -> None:
        if not tiers:
            raise ConfigError("TieredCache needs at least one tier")
        for i, t in enumerate(tiers):
            if not isinstance(t, ScoreCache):
                raise ConfigError(
                    f"tier {i} must be a cache with get_many/set_many, got {type(t).__name__}"
                )
        self.tiers: tuple[GuardedCache, ...] = tuple(
            t if isinstance(t, GuardedCache) else GuardedCache(t, retry_after=retry_after)
            for t in tiers
        )
        self._counts = _Counts()

    @property
    def stats(self) -> CacheStats:
        """Keys answered by some tier (hits) or by none (misses); failures of all tiers."""
        return self._counts.stats(errors=sum(t.stats.errors for t in self.tiers))

    def close(self) -> None:
        """Close every tier; never raises."""
        for tier in self.tiers:
            tier.close()

    def __repr__(self) -> str:
        return f"TieredCache({', '.join(repr(t) for t in self.tiers)})"

    def get_many(self, keys: Sequence[str]) -> list[float | None]:
        out: list[float | None] = [None] * len(keys)
        missing = list(range(len(keys)))
        for depth, tier in enumerate(self.tiers):
            if not missing:
                break
            got = tier.get_many([keys[i] for i in missing])
            hits: dict[str, float] = {}
            for i, v in zip(missing, got, strict=True):
                if v is not None:
                    out[i] = v
                    hits[keys[i]] = v
            if hits and depth > 0:
                for upper in self.tiers[:depth]:
                    upper.set_many(hits)
            missing = [i for i in missing if out[i] is None]
        self._counts.add(len(keys) - len(missing), len(missing))
        return out

    def set_many(self, items: Mapping[str, float]) -> None:
        for tier in self.tiers:
            tier.set_many(items)


_OUR_PACKAGES = ("rerank_core", "llamaindex_rerank", "langchain_rerank")


def _caller_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside crossrank
    (the caller's ``rerank`` line), for the function that calls ``warnings.warn``."""
    frame: Any = sys._getframe(1)  # the frame that calls warnings.warn: level 1
    level = 1
    while frame is not None:
        name = str(frame.f_globals.get("__name__", ""))
        if name.partition(".")[0] not in _OUR_PACKAGES:
            return level
        frame = frame.f_back
        level += 1
    return max(1, level - 1)  # a worker thread: no caller frame, point at the last one


class _Counts:
    """Thread-safe hit and miss counters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def add(self, hits: int, misses: int) -> None:
        with self._lock:
            self.hits += hits
            self.misses += misses

    def stats(self, *, errors: int) -> CacheStats:
        with self._lock:
            return CacheStats(hits=self.hits, misses=self.misses, errors=errors)


class GuardedCache:
    """Wraps any cache so that its failures never reach the caller.

    On the first failure it warns once (``CacheWarning`` and a log record), then
    skips the cache for ``retry_after`` seconds and tries again; when the cache
    answers again it logs the recovery, and a later outage warns again.
    ``stats`` counts hits, misses and failures; :meth:`close` closes the wrapped
    cache (if it has a ``close``).
    """

    def __init__(self, inner: ScoreCache, *, retry_after: float = 5.0) -> None:
        if not isinstance(inner, ScoreCache):
            raise ConfigError(f"cache must have get_many/set_many, got {type(inner).__name__}")
        self.inner = inner
        self.retry_after = number("retry_after", retry_after, at_least=0.0)
        self._down_since: float | None = None
        self._lock = threading.Lock()
        self.errors = 0
        self._counts = _Counts()

    @property
    def stats(self) -> CacheStats:
        return self._counts.stats(errors=self.errors)

    def close(self) -> None:
        """Close the wrapped cache; never raises."""
        close_quietly(self.inner)

    def __repr__(self) -> str:
        return f"GuardedCache({self.inner!r})"

    @property
    def available(self) -> bool:
        with self._lock:
            return self._down_since is None or (
                time.monotonic() - self._down_since >= self.retry_after
            )

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            self.errors += 1
            first = self._down_since is None
            self._down_since = time.monotonic()
        if first:
            msg = (
                f"score cache {type(self.inner).__name__} failed ({type(exc).__name__}: {exc}); "
                f"reranking without it, retrying in {self.retry_after:g}s"
            )
            logger.warning(msg)
            warnings.warn(msg, CacheWarning, stacklevel=_caller_stacklevel())

    def _ok(self) -> None:
        if self._down_since is not None:
            with self._lock:
                was_down = self._down_since is not None
                self._down_since = None
            if was_down:
                logger.warning("score cache %s is back", type(self.inner).__name__)

    def get_many(self, keys: Sequence[str]) -> list[float | None]:
        if not keys or not self.available:
            return [None] * len(keys)
        try:
            got = self.inner.get_many(keys)
            if len(got) != len(keys):
                raise ValueError(f"cache returned {len(got)} values for {len(keys)} keys")
            clean = [_as_score(v) for v in got]
        except Exception as exc:
            self._failed(exc)
            return [None] * len(keys)
        self._ok()
        found = sum(v is not None for v in clean)
        self._counts.add(found, len(keys) - found)
        return clean

    def set_many(self, items: Mapping[str, float]) -> None:
        if not items or not self.available:
            return
        try:
            self.inner.set_many(items)
        except Exception as exc:
            self._failed(exc)
            return
        self._ok()


def _as_score(v: object) -> float | None:
    """Accept a finite number (or its text form); treat anything else as a miss."""
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, (bytes, str)):
        try:
            v = float(v)
        except ValueError:
            return None
    if isinstance(v, (int, float)):
        f = float(v)
        return f if math.isfinite(f) else None
    return None


def close_quietly(obj: object) -> None:
    """``obj.close()`` if it has one; a failure is logged, never raised."""
    if isinstance(obj, SupportsClose):
        try:
            obj.close()
        except Exception:  # closing must never raise
            logger.debug("closing %r failed", obj, exc_info=True)


#: What ``Reranker(cache=...)`` takes: ``"memory"``, a file path, ``None`` or a cache object.
CacheLike = ScoreCache | str | Path | None

_MEMORY = "memory"


class ManagedCache:
    """The engine's cache: one guarded interface and the ownership of it.

    ``get_many``/``set_many`` never raise (a failing tier warns once and is skipped);
    ``stats`` gives the cache's hits, misses and failures; :meth:`close` releases the
    cache only when ``owned`` (the engine built it), so a cache the caller passed in
    stays usable by every other engine and caller that shares it.
    """

    __slots__ = ("cache", "owned")

    def __init__(self, cache: GuardedCache | TieredCache, *, owned: bool) -> None:
        self.cache = cache
        self.owned = owned

    @classmethod
    def build(cls, spec: CacheLike) -> ManagedCache | None:
        """``None`` → no cache; ``"memory"`` → an in-process LRU; a path → SQLite behind
        the LRU (both owned); a cache object → that object, guarded, not owned."""
        if spec is None:
            return None
        if isinstance(spec, str) and spec == _MEMORY:
            return cls(GuardedCache(MemoryCache()), owned=True)
        if isinstance(spec, (str, Path)):
            return cls(TieredCache(MemoryCache(), SQLiteCache(spec)), owned=True)
        if isinstance(spec, (GuardedCache, TieredCache)):
            return cls(spec, owned=False)
        if isinstance(spec, ScoreCache):
            return cls(GuardedCache(spec), owned=False)
        raise ConfigError(
            "cache must be None, 'memory', a file path (SQLite) or an object with "
            f"get_many/set_many; got {type(spec).__name__}"
        )

    def get_many(self, keys: Sequence[str]) -> list[float | None]:
        return self.cache.get_many(keys)

    def set_many(self, items: Mapping[str, float]) -> None:
        self.cache.set_many(items)

    @property
    def stats(self) -> CacheStats:
        return self.cache.stats

    def close(self) -> None:
        """Release the cache if the engine owns it; never raises."""
        if self.owned:
            self.cache.close()

    def __repr__(self) -> str:
        return f"ManagedCache({self.cache!r}, owned={self.owned})"
