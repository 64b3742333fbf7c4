"""``crossrank cache``: what the ONNX export cache holds, and emptying it.

``crossrank cache info`` lists each cached model (digest, size, last use, where it was
loaded from, its files and the fidelity guard's choices) and the cache's bounds;
``crossrank cache clear`` removes every export, or only those whose digests (or digest
prefixes) are given. ``--cache-dir`` picks another cache than ``$CROSSRANK_CACHE_DIR`` /
``~/.cache/crossrank``. Nothing here imports torch or onnxruntime.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..backends.runtime import export_cache
from ..backends.runtime.onnx_export import cache_root
from ..errors import ConfigError

__all__ = ["HELP", "add_arguments", "run"]

HELP = "show or empty the ONNX export cache (info, clear)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="{info,clear}")
    info = sub.add_parser("info", help="list the cached exports and the cache's bounds")
    info.add_argument("--json", action="store_true", help="print JSON")
    clear = sub.add_parser("clear", help="remove cached exports (all, or the digests given)")
    clear.add_argument("digests", nargs="*", metavar="DIGEST", help="digests or prefixes")
    for q in (info, clear):
        q.add_argument("--cache-dir", type=Path, help="the cache (default: the usual one)")


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def run(args: argparse.Namespace) -> int:
    root = cache_root(args.cache_dir)
    if args.action == "clear":
        try:
            removed = export_cache.clear(root, args.digests)
        except KeyError as exc:
            raise ConfigError(str(exc.args[0])) from None
        freed = sum(e.bytes for e in removed)
        print(f"removed {len(removed)} export(s), {_mb(freed)}, from {root / 'onnx'}")
        return 0
    found = export_cache.entries(root)
    max_entries, max_bytes = export_cache.limits()
    total = sum(e.bytes for e in found)
    if args.json:
        doc = {
            "cache": str(root / "onnx"),
            "entries": [e.as_dict() for e in found],
            "megabytes": round(total / 1e6, 1),
            "max_entries": max_entries,
            "max_megabytes": max_bytes // 1_000_000,
        }
        print(json.dumps(doc, indent=1))
        return 0
    print(
        f"{root / 'onnx'}: {len(found)} export(s), {_mb(total)} "
        f"(bounds: {max_entries} exports, {_mb(max_bytes)}; least recently used out; "
        "$CROSSRANK_ONNX_CACHE_ENTRIES, $CROSSRANK_CACHE_MAX_MB)"
    )
    for e in found:
        d = e.as_dict()
        verdicts = ", ".join(f"{v} (CPU {k})" for k, v in e.verdicts.items()) or "-"
        print(f"  {e.digest}  {_mb(e.bytes):>10}  last used {d['last_used']}  {e.model or '?'}")
        print(f"      files: {', '.join(e.files) or '-'}; fidelity guard: {verdicts}")
    return 0
