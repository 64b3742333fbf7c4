"""The on-disk cache of ONNX exports: what it holds, its bounds, eviction and clearing.

Layout: ``<root>/onnx/<digest>/`` per model (see
:mod:`~rerank_core.backends.runtime.onnx_export`), where ``<root>`` is
:func:`~rerank_core.backends.runtime.onnx_export.cache_root`. A folder's modification time
is its last use (an export that is loaded touches it). The cache is bounded in entries and
in bytes, least recently used first out:

* ``$CROSSRANK_ONNX_CACHE_ENTRIES``: at most this many models (default 8);
* ``$CROSSRANK_CACHE_MAX_MB``: at most this many megabytes in all (default 2048).

The folder just written or used is never evicted, even when it alone exceeds the bound.
``crossrank cache info`` / ``crossrank cache clear`` show and empty it. Nothing here
imports torch or onnxruntime.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_MAX_MB",
    "ExportEntry",
    "clear",
    "entries",
    "limits",
    "prune",
    "touch",
]

DEFAULT_MAX_ENTRIES = 8
DEFAULT_MAX_MB = 2048


@dataclass(frozen=True, slots=True)
class ExportEntry:
    """One model's exports: ``digest`` (folder name), ``path``, ``bytes`` on disk,
    ``last_used`` (epoch seconds), ``model`` (where it was loaded from, from
    ``meta.json``), ``files`` (model file names) and ``verdicts`` (the fidelity guard's
    choice per CPU key: an int8 variant's name or ``"fp32"``)."""

    digest: str
    path: Path
    bytes: int
    last_used: float
    model: str
    files: tuple[str, ...]
    verdicts: dict[str, str]

    def as_dict(self) -> dict[str, object]:
        return {
            "digest": self.digest,
            "path": str(self.path),
            "megabytes": round(self.bytes / 1e6, 1),
            "last_used": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.last_used)),
            "model": self.model,
            "files": list(self.files),
            "verdicts": dict(self.verdicts),
        }


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() and int(value) > 0 else default


def limits() -> tuple[int, int]:
    """``(max entries, max bytes)`` from the environment (see the module docstring)."""
    return (
        _env_int("CROSSRANK_ONNX_CACHE_ENTRIES", DEFAULT_MAX_ENTRIES),
        _env_int("CROSSRANK_CACHE_MAX_MB", DEFAULT_MAX_MB) * 1_000_000,
    )


def touch(folder: Path) -> None:
    """Mark ``folder`` as just used."""
    with contextlib.suppress(OSError):
        os.utime(folder)


def _entry(folder: Path) -> ExportEntry | None:
    try:
        stat = folder.stat()
        files = [f for f in folder.iterdir() if f.is_file()]
    except OSError:
        return None
    size = 0
    for f in files:
        with contextlib.suppress(OSError):
            size += f.stat().st_size
    model = ""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        model = str(json.loads((folder / "meta.json").read_text()).get("name_or_path", ""))
    verdicts: dict[str, str] = {}
    for g in folder.glob("guard.*.json"):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            verdicts[g.name[6:-5]] = json.loads(g.read_text()).get("variant") or "fp32"
    names = tuple(sorted(f.name for f in files if f.name.endswith(".onnx")))
    return ExportEntry(folder.name, folder, size, stat.st_mtime, model, names, verdicts)


def entries(root: Path) -> list[ExportEntry]:
    """The exports under ``<root>/onnx``, most recently used first."""
    base = root / "onnx"
    try:
        folders = [p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError:
        return []
    found = [e for e in (_entry(p) for p in folders) if e is not None]
    return sorted(found, key=lambda e: e.last_used, reverse=True)


def _remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)  # a process that maps a file keeps its pages


def prune(root: Path, keep: Path | None = None) -> list[str]:
    """Evict least recently used exports until the cache is within :func:`limits`;
    ``keep`` (the folder just used) stays. Returns the evicted digests."""
    max_entries, max_bytes = limits()
    current = entries(root)
    kept = [e for e in current if keep is not None and e.path == keep]
    others = [e for e in current if not (keep is not None and e.path == keep)]
    count = len(kept)
    total = sum(e.bytes for e in kept)
    evicted: list[str] = []
    for e in others:  # most recent first: keep while within both bounds
        if count + 1 <= max_entries and total + e.bytes <= max_bytes:
            count += 1
            total += e.bytes
        else:
            _remove(e.path)
            evicted.append(e.digest)
    return evicted


def clear(root: Path, digests: Sequence[str] = ()) -> list[ExportEntry]:
    """Remove the exports named by ``digests`` (prefixes are enough; all when empty).
    Returns what was removed. Raises ``KeyError`` naming a digest that matches nothing
    or more than one export."""
    current = entries(root)
    chosen: list[ExportEntry] = []
    for d in digests:
        hits = [e for e in current if e.digest.startswith(d)]
        if len(hits) != 1:
            what = "no export" if not hits else f"{len(hits)} exports"
            raise KeyError(f"{d!r} matches {what} in {root / 'onnx'}")
        chosen.append(hits[0])
    for e in chosen or current:
        _remove(e.path)
    return chosen or current
