"""``crossrank eval --fusion``: the options and the run (see :mod:`..quality.fusion_eval`).

The dev split (``--fusion-dev``) chooses the linear fusion's first-stage weight; the test
split (the positional dataset and ``--split``) only reports. The dev split's first stage is
built like the test's: the folder's ``runs/bm25_top100.trec`` when there is one (and no
``--bm25``), else BM25 over its corpus.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rerank_core.errors import ConfigError

__all__ = ["add_fusion_arguments", "parse_dev", "parse_weights", "run_fusion"]


def parse_weights(value: str) -> list[float]:
    """``--fusion-weights``: comma-separated first-stage weights in [0, 1]."""
    try:
        ws = sorted({float(p) for p in value.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected weights like 0,0.1,0.2; got {value!r}"
        ) from None
    if not ws or ws[0] < 0.0 or ws[-1] > 1.0:
        raise argparse.ArgumentTypeError(f"weights must lie in [0, 1]; got {value!r}")
    return ws


def parse_dev(spec: str, dataset_dir: Path) -> tuple[Path, str, int | None]:
    """``--fusion-dev``: ``SPLIT[:N]`` (a split of the evaluated folder) or ``DIR[:N]``
    (another folder's ``test`` split, e.g. DL20 for DL19); ``N``: its first N judged
    queries. Returns (folder, split, N)."""
    head, sep, tail = spec.rpartition(":")
    if not sep or not tail.isdigit():
        head, tail = spec, ""
    n = int(tail) if tail else None
    if n is not None and n < 1:
        raise ConfigError(f"--fusion-dev {spec!r}: N must be >= 1")
    if not head:
        raise ConfigError(f"--fusion-dev {spec!r}: give a split (train:200) or a folder")
    as_dir = Path(head)
    if "/" in head or as_dir.is_dir():
        if not as_dir.is_dir():
            raise ConfigError(f"--fusion-dev {spec!r}: {head} is not a folder")
        return as_dir, "test", n
    return dataset_dir, head, n


def add_fusion_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--fusion",
        action="store_true",
        help="score fusion study: sweep the linear fusion's first-stage weight on --fusion-dev, "
        "report test nDCG@10 of the first stage, the reranker, RRF and the chosen fusion",
    )
    p.add_argument(
        "--fusion-dev",
        metavar="SPLIT[:N]|DIR[:N]",
        help="the dev split that chooses the weight: a split of DATASET (e.g. train:200) or "
        "another folder's test split (e.g. the DL20 folder for DL19); never the test split",
    )
    p.add_argument(
        "--fusion-weights",
        type=parse_weights,
        metavar="W,W,...",
        help="first-stage weights to sweep (default 0,0.05,...,1)",
    )
    p.add_argument("--rrf-k", type=int, default=60, help="RRF constant (default 60)")


def _first_stage(args: argparse.Namespace, dataset: Any) -> Any:
    from ..quality.data import read_trec_run, sort_run
    from ..quality.first_stage import bm25_run

    if not args.bm25 and "bm25_top100" in dataset.runs:
        run = read_trec_run(dataset.runs["bm25_top100"])
    else:
        run = bm25_run(dataset, args.depth)
    return sort_run({q: run.get(q, [])[: args.depth] for q in dataset.queries})


def run_fusion(
    args: argparse.Namespace, dataset: Any, first_run: Any, rel_level: int, progress: Any
) -> int:
    """The study for ``dataset`` (test) with the weight chosen on ``--fusion-dev``."""
    from rerank_core import Reranker, WindowConfig

    from ..quality.data import load_beir
    from ..quality.fusion_eval import DEFAULT_WEIGHTS, Split, fusion_markdown, fusion_study
    from . import set_torch_threads

    if args.cascade is not None:
        raise ConfigError("--fusion scores with one model: drop --cascade")
    if not args.fusion_dev:
        raise ConfigError(
            "--fusion needs --fusion-dev (e.g. train:200 for SciFact, the DL20 folder for DL19): "
            "the weight is never chosen on the test split"
        )
    folder, split, n = parse_dev(args.fusion_dev, args.dataset)
    if folder.resolve() == Path(args.dataset).resolve() and split == dataset.split:
        raise ConfigError(f"--fusion-dev names the test split itself ({split}): choose another")
    dev_ds = load_beir(folder, split, max_queries=n)
    dev_level = dev_ds.default_rel_level() if args.rel_level == "auto" else rel_level
    dev = Split(
        f"{dev_ds.name}:{split}" + (f" (first {n})" if n else ""),
        dev_ds,
        _first_stage(args, dev_ds),
        dev_level,
    )
    test = Split(f"{dataset.name}:{dataset.split}", dataset, first_run, rel_level)
    options: dict[str, Any] = {}
    for key in ("model", "device", "precision"):
        if getattr(args, key):
            options[key] = getattr(args, key)
    set_torch_threads(args.threads)
    window = WindowConfig(max_windows=args.max_windows, aggregate=args.aggregate)
    with Reranker(
        args.backend, batch_size=args.batch_size, window=window, cache=None, **options
    ) as reranker:
        print(f"model: {reranker.backend!r}", file=sys.stderr)
        study = fusion_study(
            reranker,
            dev,
            test,
            args.candidates,
            weights=args.fusion_weights or DEFAULT_WEIGHTS,
            rrf_k=args.rrf_k,
            progress=progress,
        )
        study["model"] = {
            "backend": args.backend,
            "model": args.model,
            "repr": repr(reranker.backend),
        }
    table = fusion_markdown(study)
    print(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(study, indent=2) + "\n", encoding="utf-8")
        print(f"crossrank eval: wrote JSON {args.json}", file=sys.stderr)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table, encoding="utf-8")
        print(f"crossrank eval: wrote markdown {args.markdown}", file=sys.stderr)
    return 0
