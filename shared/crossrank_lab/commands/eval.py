"""``crossrank eval``: ranking quality of a reranker on a BEIR-layout dataset.

First stage: a TREC run file (``--run``; default: the folder's ``runs/bm25_top100.trec``
when there is one) or BM25 over the corpus (``--bm25``). Each depth N of
``--candidates`` is reranked in its own cold pass (no score cache) and evaluated with
trec_eval's metrics; the table, a JSON result and the knee plot are written.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from rerank_core.commands import positive_int
from rerank_core.errors import ConfigError, ModelLoadError

from . import add_threads_argument, set_torch_threads
from .eval_fusion import add_fusion_arguments, run_fusion

__all__ = [
    "HELP",
    "PRECISIONS",
    "REQUIRES",
    "WARN_DROP",
    "add_arguments",
    "quality_warnings",
    "run",
]

HELP = "evaluate reranking quality on a BEIR-layout dataset"
REQUIRES = (("ir_measures", "eval"), ("bm25s", "eval"))
# the engine's precision choices (each backend takes its own subset: checked before loading)
PRECISIONS = ("auto", "exact", "fp32", "int8", "bf16", "fp16")
# a reranked nDCG@10 this far below the first stage's is called out (untrained/mismatched model)
WARN_DROP = 0.05


def _candidates(value: str) -> list[int]:
    """One ``--candidates`` argument: ``20``, or comma-separated depths ``10,20,50``."""
    parts = value.split(",")
    if any(not p.strip() for p in parts):
        msg = f"empty depth in {value!r}; give depths like 10,20,50 or 10 20 50"
        raise argparse.ArgumentTypeError(msg)
    try:
        ns = [int(p) for p in parts]
    except ValueError:
        msg = f"expected depths like 10,20,50 or 10 20 50; got {value!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if min(ns) < 1:
        raise argparse.ArgumentTypeError(f"candidate depths must be >= 1; got {value!r}")
    return ns


def _depths(values: list[list[int]]) -> list[int]:
    """``--candidates 20 50`` and ``--candidates 20,50`` alike: the depths, sorted, unique."""
    return sorted({n for group in values for n in group})


def quality_warnings(result: dict[str, Any], drop: float = WARN_DROP) -> list[str]:
    """One line per reranking depth whose nDCG@10 falls more than ``drop`` below the first
    stage's: the sign of an untrained score head or a model that does not fit the data."""
    first = result["first_stage"]["metrics"].get("ndcg@10")
    if first is None:
        return []
    out = []
    for r in result.get("rerank", []):
        got = r["metrics"].get("ndcg@10")
        if got is not None and got < first - drop:
            out.append(
                f"reranking the top {r['candidates']} gives nDCG@10 {got:.4f}, far below the "
                f"first stage's {first:.4f}: an untrained or mismatched model?"
            )
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", type=Path, help="BEIR-layout folder (corpus, queries, qrels)")
    p.add_argument("--split", default="test", help="qrels split to evaluate (default: test)")
    first = p.add_mutually_exclusive_group()
    first.add_argument("--run", type=Path, help="first stage: a TREC run file")
    first.add_argument("--bm25", action="store_true", help="first stage: BM25 over the corpus")
    p.add_argument("--depth", type=positive_int, default=100, help="first-stage depth (BM25 top-k)")
    p.add_argument("--backend", default="minilm", help="backend preset (minilm, bge, cohere)")
    p.add_argument("--model", help="model id or local directory (default: the preset's)")
    p.add_argument(
        "--cascade",
        metavar="SPEC",
        help="rerank with a cascade instead of one model, e.g. "
        "'minilm:model=DIR2,keep=30;minilm:model=DIR6' (stages split by ';', each "
        "name:key=value,...; keep= on every stage but the last); replaces --backend/--model/"
        "--precision",
    )
    p.add_argument("--device", help="cpu (default), auto, cuda:0, ...")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="the backend's precision option (default: its own, auto for local models); the "
        "result records what ran",
    )
    p.add_argument("--batch-size", type=positive_int, default=32, help="pairs per model call")
    p.add_argument(
        "--candidates",
        type=_candidates,
        nargs="+",
        default=[[10, 20, 50, 100]],
        metavar="N",
        help="depths N to rerank: 10,20,50 or 10 20 50 (default: 10,20,50,100)",
    )
    p.add_argument(
        "--first-stage-only", action="store_true", help="evaluate the first stage, load no model"
    )
    p.add_argument(
        "--rel-level",
        default="auto",
        help="grade from which binary metrics count relevant (auto: 2 for 0–3 TREC DL grades, "
        "else 1)",
    )
    p.add_argument(
        "--max-queries", type=positive_int, help="evaluate only the first N judged queries"
    )
    p.add_argument("--max-windows", type=positive_int, help="cap windows per text (1 = truncate)")
    p.add_argument(
        "--aggregate",
        choices=("max", "mean", "first", "topk_mean"),
        default="max",
        help="how window scores combine into a text score",
    )
    p.add_argument(
        "--confidence-below",
        type=_fraction,
        default=0.5,
        metavar="X",
        help="suggest a confidence_threshold per depth: the top-1 score below which the top-1 "
        "document is relevant less than X of the time (default 0.5)",
    )
    p.add_argument("--json", type=Path, metavar="OUT.json", help="write the result as JSON")
    p.add_argument("--plot", type=Path, metavar="OUT.png", help="draw nDCG@10 and latency vs N")
    p.add_argument("--markdown", type=Path, metavar="OUT.md", help="write the markdown table")
    p.add_argument("--save-runs", type=Path, metavar="DIR", help="write each run as TREC files")
    add_threads_argument(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_fusion_arguments(p)


def _progress(quiet: bool) -> Any:
    if quiet:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return lambda **kw: tqdm(file=sys.stderr, leave=False, **kw)


def run(args: argparse.Namespace) -> int:
    """Errors propagate: ``crossrank`` prints them in one line (exit 2 for bad input)."""
    from ..quality.data import load_beir, read_trec_run, sort_run, write_trec_run
    from ..quality.first_stage import bm25_run
    from ..quality.report import markdown_table, plot_knee
    from ..quality.sweep import evaluate_first_stage

    args.candidates = _depths(args.candidates)
    if not args.first_stage_only:
        _check_backend(args)  # a bad --backend/--precision/--cascade fails before data is read
    dataset = load_beir(args.dataset, args.split, max_queries=args.max_queries)
    if args.rel_level == "auto":
        rel_level = dataset.default_rel_level()
    else:
        try:
            rel_level = int(args.rel_level)
        except ValueError:
            msg = f"--rel-level must be 'auto' or a grade, got {args.rel_level!r}"
            raise ConfigError(msg) from None
    run_path: Path | None = args.run
    if run_path is None and not args.bm25 and "bm25_top100" in dataset.runs:
        run_path = dataset.runs["bm25_top100"]
    t0 = time.perf_counter()
    if run_path is not None:
        first_run = read_trec_run(run_path)
        first_name = f"run {run_path.name}"
    else:
        first_run = bm25_run(dataset, args.depth)
        first_name = f"BM25 (bm25s) top-{args.depth}"
    first_run = sort_run({q: first_run.get(q, [])[: args.depth] for q in dataset.queries})
    first_s = time.perf_counter() - t0
    if args.fusion and not args.first_stage_only:  # the weight on --fusion-dev, test reported
        return run_fusion(args, dataset, first_run, rel_level, _progress(args.quiet))
    first_metrics = evaluate_first_stage(dataset, first_run, rel_level=rel_level)
    result: dict[str, Any] = {
        "dataset": dataset.name,
        "split": dataset.split,
        "queries": len(dataset.queries),
        "rel_level": rel_level,
        "first_stage": {"name": first_name, "seconds": first_s, "metrics": first_metrics},
        "rerank": [],
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }
    print(
        f"{dataset.name} ({dataset.split}): {len(dataset.queries)} queries, "
        f"{len(dataset.corpus)} docs; binary metrics count grade >= {rel_level} relevant",
        file=sys.stderr,
    )
    if not args.first_stage_only:
        result.update(_rerank(args, dataset, first_run, rel_level))
    runs = [r.pop("run") for r in result["rerank"]]
    result["warnings"] = quality_warnings(result)
    table = markdown_table(result)
    print(table)
    _suggest_thresholds(result, runs, dataset, rel_level, args.confidence_below)
    written: list[str] = []
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        written.append(f"JSON {args.json}")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table, encoding="utf-8")
        written.append(f"markdown {args.markdown}")
    if args.plot:
        if not result["rerank"]:
            print("crossrank eval: --plot needs at least one reranking depth", file=sys.stderr)
        else:
            args.plot.parent.mkdir(parents=True, exist_ok=True)
            plot_knee(result, args.plot)
            written.append(f"plot {args.plot}")
    if args.save_runs:
        args.save_runs.mkdir(parents=True, exist_ok=True)
        write_trec_run(first_run, args.save_runs / "first_stage.trec", "first")
        for r, rr in zip(result["rerank"], runs, strict=True):
            n = r["candidates"]
            write_trec_run(rr, args.save_runs / f"rerank_top{n}.trec", f"crossrank{n}")
        written.append(f"TREC runs {args.save_runs}/")
    for what in written:
        print(f"crossrank eval: wrote {what}", file=sys.stderr)
    for warning in result["warnings"]:
        print(f"crossrank eval: WARNING: {warning}", file=sys.stderr)
    return 0


def _fraction(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        x = -1.0
    if not 0.0 < x <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1]; got {value!r}")
    return x


def _suggest_thresholds(
    result: dict[str, Any], runs: list[Any], dataset: Any, rel_level: int, below: float
) -> None:
    """Per reranking depth: the suggested confidence_threshold, printed and in the JSON."""
    from ..quality.confidence import suggest_threshold, top1_outcomes

    for r, run in zip(result["rerank"], runs, strict=True):
        s = suggest_threshold(
            top1_outcomes(run, dataset.qrels, rel_level=rel_level), max_relevant=below
        )
        r["confidence"] = s.as_dict()
        print(f"confidence, top-{r['candidates']} on {dataset.name}: {s.line()}")


def _check_backend(args: argparse.Namespace) -> None:
    """The backend name and its options as the backend would check them (no model load)."""
    from rerank_core.commands.rerank import check_backend_options

    if args.cascade is not None:
        from rerank_core.cascade import parse_spec

        if args.model or args.precision:
            raise ConfigError("--cascade names each stage's model: drop --model/--precision")
        parse_spec(args.cascade)
        return

    options: dict[str, Any] = {}
    if args.model:
        options["model"] = args.model
    if args.device:
        options["device"] = args.device
    if args.precision:
        options["precision"] = args.precision
    check_backend_options(args.backend, options)


def _rerank(
    args: argparse.Namespace, dataset: Any, first_run: Any, rel_level: int
) -> dict[str, Any]:
    from rerank_core import Cascade, Reranker, WindowConfig

    from ..quality.sweep import sweep

    options: dict[str, Any] = {}
    if args.model:
        options["model"] = args.model
    if args.device:
        options["device"] = args.device
    if args.precision:
        options["precision"] = args.precision
    window = WindowConfig(max_windows=args.max_windows, aggregate=args.aggregate)
    set_torch_threads(args.threads)
    t0 = time.perf_counter()
    try:
        common: dict[str, Any] = {"batch_size": args.batch_size, "window": window, "cache": None}
        reranker: Reranker | Cascade
        if args.cascade is not None:
            device = {"device": args.device} if args.device else {}
            reranker = Cascade.from_spec(args.cascade, **common, **device)
        else:
            reranker = Reranker(args.backend, **common, **options)
    except ModelLoadError as exc:
        raise ModelLoadError(
            f"{exc} (for an offline quality check, train a model first: crossrank finetune --help)"
        ) from exc
    load_s = time.perf_counter() - t0
    described = reranker.describe()
    if isinstance(reranker, Cascade):  # what ran: the last stage's facts
        described = {**described["stages"][-1], "model_id": described["model_id"]}
    threads = described.get("num_threads")
    ran = {k: described[k] for k in ("runtime", "precision") if described.get(k) is not None}
    print(
        f"model: {reranker if isinstance(reranker, Cascade) else repr(reranker.backend)}; ran: "
        + (", ".join(f"{k} {v}" for k, v in ran.items()) or "as the backend decides"),
        file=sys.stderr,
    )
    results = sweep(
        reranker,
        dataset,
        first_run,
        [n for n in args.candidates if n <= args.depth] or [args.depth],
        rel_level=rel_level,
        progress=_progress(args.quiet),
    )
    stats = reranker.describe().get("stats") if isinstance(reranker, Cascade) else None
    reranker.close()
    return {
        "model": {
            "backend": "cascade" if args.cascade is not None else args.backend,
            "model": args.cascade if args.cascade is not None else args.model,
            "repr": repr(reranker if isinstance(reranker, Cascade) else reranker.backend),
            "precision_requested": args.precision or "default",
            # what actually ran (the backend's describe()): e.g. runtime onnx, precision int8
            "runtime": ran.get("runtime"),
            "precision": ran.get("precision", args.precision or "default"),
            "load_seconds": load_s,
            "window": {"max_windows": args.max_windows, "aggregate": args.aggregate},
            "batch_size": args.batch_size,
            # per stage: texts, kept, pairs scored and seconds, summed over every depth
            "cascade": stats,
        },
        "device": args.device or "cpu",
        "torch_threads": threads,
        "rerank": results,
    }
