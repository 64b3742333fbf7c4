"""What the production-control studies share: the DL19 inputs and the bundled reranker."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "trec-dl-2019-passage"
DEFAULT_MODEL = ROOT / "models" / "crossrank-minilm-l6"


def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="TREC DL 2019 passage folder")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="cross-encoder directory")
    p.add_argument("--candidates", type=int, default=100, help="BM25 candidates per query")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    return p


def load(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """``(dataset, first-stage run, backend)``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from crossrank_lab.bench.common import load_trec_dl
    from rerank_core import load_backend

    torch.set_num_threads(args.threads)
    dataset, run = load_trec_dl(args.data)
    backend = load_backend("minilm", model=str(args.model))
    return dataset, run, backend
