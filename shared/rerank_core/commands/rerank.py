"""``crossrank rerank``: rerank passages for a query and print the rankings before and after.

Every argument and file is checked before anything heavy is imported or loaded: bad input
ends in one line and exit status 2 within a fraction of a second. A machine that cannot
reach the Hugging Face hub is found within seconds; the default model then comes from the
local cache, or else from the reranker the checkout bundles (``models/crossrank-minilm-l6``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .._validate import positive_int
from ..backends import backend_class
from ..errors import ConfigError, InputError, ModelLoadError
from . import _hub

__all__ = ["add_arguments", "check_backend_options", "run"]

DEFAULT_CANDIDATES = 20
SHOWN_BEFORE = 20  # first-stage rows printed (the "was #k" of the reranked rows point here)
_LOCAL_MODEL_BACKENDS = ("minilm", "cross-encoder", "bge")  # backends that load a model


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--query", help="the query (default: a SciFact claim from the bundled sample)")
    p.add_argument(
        "--passages",
        type=Path,
        help="JSONL file with a 'text' field per line, optional 'id' and 'title' "
        "(default: the bundled SciFact sample)",
    )
    p.add_argument("--backend", default="minilm", help="backend preset (minilm, bge, cohere)")
    p.add_argument(
        "--model",
        help="model id or local directory (default: the preset's; offline, the reranker "
        "bundled in a checkout, models/crossrank-minilm-l6)",
    )
    p.add_argument("--device", default=None, help="cpu (default), auto, cuda:0, ...")
    p.add_argument(
        "--precision",
        default=None,
        help="minilm: auto (default), exact, fp32, int8, bf16, fp16; bge: auto, exact, fp32, "
        "int8, fp16",
    )
    p.add_argument(
        "--candidates",
        type=int,
        default=DEFAULT_CANDIDATES,
        help=f"first-stage (BM25) candidates to rerank (default {DEFAULT_CANDIDATES})",
    )
    p.add_argument("--top-n", type=int, default=5, help="passages to keep after reranking")
    p.add_argument("--overlap", type=int, default=None, help="tokens shared by consecutive windows")
    p.add_argument(
        "--max-windows", type=int, default=None, help="cap on windows per passage (1 = truncate)"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")


# ---------------------------------------------------------------------------- checks


@dataclass
class _Plan:
    """Everything the run needs, checked: nothing here has loaded a model."""

    query: str
    relevant: set[str]
    rows: list[dict[str, Any]]
    backend: str
    options: dict[str, Any]
    window: Any  # WindowConfig
    notes: list[str] = field(default_factory=list)  # one-line notices for stderr
    model_note: str = ""  # printed after the model line (e.g. the bundled model's quality)
    offline: bool = False  # the hub cannot be reached: models load from local files only


def _load_passages(path: Path | None) -> list[dict[str, Any]]:
    """The passages, each with a 'body' (title + text); an InputError naming the file and
    line for anything unreadable."""
    if path is None:
        data = resources.files("rerank_core.data").joinpath("scifact_sample.jsonl").read_text()
        where = "the bundled sample"
    else:
        where = f"--passages {path}"
        if not path.exists():
            raise InputError(f"{where}: no such file")
        if path.is_dir():
            raise InputError(f"{where}: is a directory, not a JSONL file")
        try:
            data = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(
                f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from None
        except OSError as exc:
            raise InputError(f"{where}: cannot be read ({exc.strerror or exc})") from None
    rows: list[dict[str, Any]] = []
    for n, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}, line {n}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise InputError(f"{where}, line {n}: expected a JSON object with a 'text' field")
        text = row.get("text")
        if not isinstance(text, str):
            got = "no 'text' field" if text is None else f"'text' is {type(text).__name__}"
            raise InputError(f"{where}, line {n}: {got}; each line needs a 'text' string")
        title = row.get("title") or ""
        if not isinstance(title, str):
            raise InputError(f"{where}, line {n}: 'title' must be a string")
        row.setdefault("id", str(n))
        row["body"] = f"{title}. {text}" if title else text
        rows.append(row)
    if not rows:
        raise InputError(f"{where}: no passages (expected one JSON object per line)")
    return rows


def _default_query() -> tuple[str, set[str]]:
    line = resources.files("rerank_core.data").joinpath("scifact_sample_queries.jsonl")
    first = json.loads(line.read_text().splitlines()[4])
    return first["text"], set(first["relevant"])


def check_backend_options(name: str, options: dict[str, Any]) -> None:
    """The checks the backend ``name`` would make of ``options`` at construction (option
    names, ``precision`` against its speed policy), made without constructing it: a
    ConfigError naming what is wrong. ``crossrank eval`` uses it too."""
    from ..backends import _check_options

    cls = backend_class(name)
    _check_options(name, cls, options)
    family = getattr(cls, "family", None) or getattr(sys.modules[cls.__module__], "FAMILY", None)
    policy = getattr(family, "policy", None)
    if "precision" in options and policy is not None:
        from ..backends.runtime import SpeedRequest

        SpeedRequest.checked(policy, options["precision"], "auto", None)


def _max_positions(model_dir: Path) -> int | None:
    """The most tokens the model can take (``max_position_embeddings``), if recorded."""
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = config.get("max_position_embeddings") if isinstance(config, dict) else None
    return value if isinstance(value, int) and value > 0 else None


def _check_local_model(model: str) -> Path:
    path = Path(model).expanduser()
    if not path.exists():
        raise ConfigError(f"--model {model}: no such directory")
    if not path.is_dir():
        raise ConfigError(f"--model {model}: not a directory (a model is a folder of files)")
    if not (path / "config.json").is_file():
        raise ConfigError(f"--model {model}: not a model directory (it has no config.json)")
    return path


def _check_overlap(window: Any, model_dir: Path | None) -> None:
    """An overlap that cannot fit the model's windows, found from its config.json. The
    window budget is at most ``max_length - max_length // 2`` (half is kept for the query);
    the engine checks the exact budget once the tokenizer is loaded."""
    if window.overlap is None or model_dir is None:
        return
    max_length = _max_positions(model_dir)
    if max_length is None:
        return
    query_tokens = window.max_query_tokens or max(1, max_length // 2)
    bound = max_length - query_tokens
    if window.overlap >= bound:
        raise ConfigError(
            f"--overlap {window.overlap} must be smaller than the window budget (under {bound} "
            f"tokens for this model: max_length {max_length}, half kept for the query)"
        )


def _venv_command(name: str) -> str:
    """How to call ``name`` from this interpreter's environment (not a bare ``python`` or
    ``crossrank``, which fail outside an activated venv)."""
    exe = Path(sys.executable)
    script = exe.parent / name
    if name == "python":
        return shlex.quote(str(exe))
    if script.exists():
        return shlex.quote(str(script))
    return f"{shlex.quote(str(exe))} -m rerank_core.cli"


def _offline_hint() -> str:
    """One line: how to run without the hub, with commands that work outside the venv."""
    crossrank = _venv_command("crossrank")
    bundled = _hub.bundled_model()
    if bundled is not None:
        return (
            "To run offline, use the reranker this checkout bundles: "
            f"{crossrank} rerank --model {shlex.quote(str(bundled.path))}"
        )
    return (
        "To run offline, pass a local cross-encoder directory with --model (a clone of the "
        "crossrank repository bundles one: models/crossrank-minilm-l6): "
        f"{crossrank} rerank --model DIR"
    )


def _resolve_model(backend: str, model: str | None, plan: _Plan) -> Path | None:
    """Where the model comes from; the local directory when there is one. Fails fast (no
    download retries) when the hub is needed but cannot be reached."""
    if backend not in _LOCAL_MODEL_BACKENDS:
        return None
    if model is not None and _hub.is_local_path(model):
        return _check_local_model(model)
    cls_module = sys.modules[backend_class(backend).__module__]
    model_id = model if model is not None else str(getattr(cls_module, "DEFAULT_MODEL", ""))
    reason = _hub.offline_reason()
    if reason is None:
        return None
    _hub.go_offline()  # load from the local cache only: no retry storm
    plan.offline = True
    if model_id and _hub.hub_cached(model_id):
        plan.notes.append(f"offline: {reason}; using {model_id} from the local cache")
        return None
    bundled = _hub.bundled_model()
    if model is None and bundled is not None and backend in ("minilm", "cross-encoder"):
        plan.options["model"] = str(bundled.path)
        plan.notes.append(
            f"offline: {reason}, and {model_id} is not in the local cache; using the bundled "
            f"{_hub.BUNDLED_NAME} instead"
        )
        plan.model_note = bundled.summary
        return bundled.path
    raise ModelLoadError(
        f"could not load model {model_id!r}: the Hugging Face hub is offline ({reason}) and "
        f"the model is not in the local cache. {_offline_hint()}"
    )


def _check(args: argparse.Namespace) -> _Plan:
    """Every argument and file, checked before anything is loaded."""
    from ..config import WindowConfig

    positive_int("--top-n", args.top_n)
    positive_int("--candidates", args.candidates)
    if args.query is not None and not args.query.strip():
        raise InputError("--query is empty")
    rows = _load_passages(args.passages)
    relevant: set[str] = set()
    if args.query is not None:
        query = args.query
    elif args.passages is None:
        query, relevant = _default_query()
    else:
        raise InputError("--query is required with --passages")
    window = WindowConfig(overlap=args.overlap, max_windows=args.max_windows)
    options: dict[str, Any] = {}
    if args.model is not None:
        if not args.model.strip():
            raise ConfigError("--model is empty")
        options["model"] = args.model
    if args.device:
        options["device"] = args.device
    if args.precision:
        options["precision"] = args.precision
    check_backend_options(args.backend, options)
    plan = _Plan(query, relevant, rows, args.backend, options, window)
    model_dir = _resolve_model(args.backend, args.model, plan)
    _check_overlap(window, model_dir)
    return plan


# ---------------------------------------------------------------------------- run


def _first_stage(query: str, texts: list[str], k: int) -> tuple[str, list[tuple[int, float]]]:
    """BM25 (bm25s) top ``k``, or the file order when bm25s is not installed."""
    try:
        import bm25s
    except ImportError:
        return "file order (bm25s not installed)", [(i, 0.0) for i in range(min(k, len(texts)))]
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
    docs, scores = retriever.retrieve(
        bm25s.tokenize([query], stopwords="en", show_progress=False),
        k=min(k, len(texts)),
        show_progress=False,
    )
    return "BM25", [(int(d), float(s)) for d, s in zip(docs[0], scores[0], strict=True)]


def _short(text: str, width: int = 88) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def run(args: argparse.Namespace) -> int:
    plan = _check(args)
    # a terminal command: no per-tensor "Loading weights" bars from transformers
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for note in plan.notes:
        print(f"crossrank rerank: {note}", file=sys.stderr)

    from ..engine import Reranker

    rows, query = plan.rows, plan.query
    texts = [r["body"] for r in rows]
    first_name, candidates = _first_stage(query, texts, args.candidates)
    t0 = time.perf_counter()
    try:
        reranker = Reranker(plan.backend, window=plan.window, **plan.options)
    except ModelLoadError as exc:
        if plan.offline:
            raise ModelLoadError(f"{exc}. {_offline_hint()}") from exc
        raise
    load_s = time.perf_counter() - t0
    cand_texts = [texts[i] for i, _ in candidates]
    t0 = time.perf_counter()
    ranked = reranker.rerank(query, cand_texts, top_n=args.top_n)
    rerank_s = time.perf_counter() - t0

    def doc_id(i: int) -> str:
        return str(rows[i].get("id"))

    def mark(i: int) -> str:
        return "*" if doc_id(i) in plan.relevant else " "

    model_name = plan.options.get("model") or getattr(reranker.backend, "model_id", "")
    if args.json:
        out = {
            "query": query,
            "model": str(model_name),
            "first_stage": first_name,
            "before": [{"id": doc_id(i), "bm25": s} for i, s in candidates],
            "after": [
                {"id": doc_id(candidates[r.index][0]), "score": r.score, "window": r.window}
                for r in ranked
            ],
        }
        print(json.dumps(out, indent=2))
        return 0
    print(f"query: {query}")
    print(f"model: {reranker.backend!r}  (loaded in {load_s:.1f}s)")
    if plan.model_note:
        print(f"       {plan.model_note}")
    if plan.relevant:
        print("(* = judged relevant in SciFact)")
    shown = candidates[:SHOWN_BEFORE]
    more = f", first {len(shown)} shown" if len(shown) < len(candidates) else ""
    print(f"\nBefore: {first_name} top {len(candidates)}{more}")
    for rank, (i, s) in enumerate(shown, 1):
        score = f"bm25={s:7.3f}" if first_name == "BM25" else "         "
        print(f"{rank:3d}. {mark(i)} {score}  {_short(texts[i])}")
    print(
        f"\nAfter: crossrank top {len(ranked)} "
        f"({len(cand_texts)} passages, {reranker.pairs_scored} pairs, {rerank_s * 1000:.0f} ms)"
    )
    for rank, r in enumerate(ranked, 1):
        i = candidates[r.index][0]
        was = r.index + 1
        print(f"{rank:3d}. {mark(i)} score={r.score:7.3f}  (was #{was:<2d}) {_short(texts[i], 76)}")
    return 0
