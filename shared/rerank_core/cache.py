"""Score caches.

A cache maps a key (a hex digest of the backend fingerprint, the query and the
window text) to a float score. Any object with ``get_many`` and ``set_many`` is a
cache; the engine wraps it in :class:`GuardedCache` so a failing tier never
breaks reranking. Values are stored as plain numbers: nothing is pickled.
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

__all__ = [
    "CacheStats",
    "CacheWarning",
    "GuardedCache",
    "MemoryCache",
    "SQLiteCache",
    "ScoreCache",
    "TieredCache",
    "cache_key",
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
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        self._data: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

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
        self.path = Path(path)
        self._timeout = timeout
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

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
    until it answers again, while the other tiers keep serving.
    """

    def __init__(self, *tiers: ScoreCache, retry_after: float = 5.0) -> None:
        if not tiers:
            raise ValueError("TieredCache needs at least one tier")
        self.tiers: tuple[GuardedCache, ...] = tuple(
            t if isinstance(t, GuardedCache) else GuardedCache(t, retry_after=retry_after)
            for t in tiers
        )

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


class GuardedCache:
    """Wraps any cache so that its failures never reach the caller.

    On the first failure it warns once (``CacheWarning`` and a log record), then
    skips the cache for ``retry_after`` seconds and tries again; when the cache
    answers again it logs the recovery, and a later outage warns again.
    """

    def __init__(self, inner: ScoreCache, *, retry_after: float = 5.0) -> None:
        self.inner = inner
        self.retry_after = retry_after
        self._down_since: float | None = None
        self._lock = threading.Lock()
        self.errors = 0

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
