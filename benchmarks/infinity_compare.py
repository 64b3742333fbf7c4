"""A real Infinity server against the local backend on the same model folder: rankings,
windows and scores, with the folder's tokenizer (the cohere backend's default for a local
folder) and with the word estimate.

Start the server first (``bash scripts/setup.sh --dev`` builds ``.venv-infinity``)::

    HF_HUB_OFFLINE=1 INFINITY_ANONYMOUS_USAGE_STATS=0 .venv-infinity/bin/infinity_emb v2 \\
      --model-id models/crossrank-minilm-l6 --port 7997 --url-prefix /v1 \\
      --engine torch --device cpu --no-bettertransformer
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/infinity_compare.py --url http://127.0.0.1:7997

Queries: the first ``--queries`` of the bundled SciFact sample, each over 8 title+abstract
passages (its relevant ones first) and one text three abstracts long. Local side: the
``minilm`` backend, fp32 torch, ``normalize="sigmoid"`` (Infinity's ``relevance_score`` is
the sigmoid of the logit).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rerank_core import RankedText, Reranker
from rerank_core.backends.cohere import CohereBackend
from rerank_core.backends.cross_encoder import CrossEncoderBackend

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "shared" / "rerank_core" / "data"


def jobs(n: int) -> list[tuple[str, list[str]]]:
    docs = [json.loads(line) for line in (DATA / "scifact_sample.jsonl").open()]
    queries = [json.loads(line) for line in (DATA / "scifact_sample_queries.jsonl").open()]
    by_id = {d["id"]: f"{d['title']} {d['text']}" for d in docs}
    out = []
    for i, q in enumerate(queries[:n]):
        texts = [by_id[r] for r in q["relevant"] if r in by_id]
        texts += [f"{d['title']} {d['text']}" for d in docs[10 * i : 10 * i + 8 - len(texts)]]
        texts.append(" ".join(f"{d['title']} {d['text']}" for d in docs[50 + 3 * i : 53 + 3 * i]))
        out.append((q["text"], texts))
    return out


def compare(theirs: list[list[RankedText]], ours: list[list[RankedText]]) -> dict[str, Any]:
    pairs = []
    for a_list, b_list in zip(theirs, ours, strict=True):
        by_index = {b.index: b for b in b_list}
        pairs += [(a, by_index[a.index]) for a in a_list]
    return {
        "queries": len(ours),
        "texts": len(pairs),
        "texts_in_2+_windows": sum(b.n_windows >= 2 for _, b in pairs),
        "most_windows": max(b.n_windows for _, b in pairs),
        "same_order": sum(
            [a.index for a in x] == [b.index for b in y] for x, y in zip(theirs, ours, strict=True)
        ),
        "same_top3": sum(
            [a.index for a in x[:3]] == [b.index for b in y[:3]]
            for x, y in zip(theirs, ours, strict=True)
        ),
        "texts_with_other_window_counts": sum(a.n_windows != b.n_windows for a, b in pairs),
        "max_abs_score_diff": max(abs(a.score - b.score) for a, b in pairs),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:7997", help="the Infinity server")
    ap.add_argument("--model", default=str(ROOT / "models" / "crossrank-minilm-l6"))
    ap.add_argument("--queries", type=int, default=10)
    args = ap.parse_args()
    work = jobs(args.queries)
    local = CrossEncoderBackend(args.model, precision="exact", runtime="torch")
    with Reranker(local, cache=None, normalize="sigmoid") as rr:
        ours = [rr.rerank(q, texts) for q, texts in work]
    for label, kwargs in (
        ("folder tokenizer (default)", {}),
        ("words estimate", {"tokenizer": "words"}),
    ):
        backend = CohereBackend(args.model, base_url=args.url, api_version="v1", **kwargs)
        with Reranker(backend, cache=None) as rr:
            theirs = [rr.rerank(q, texts) for q, texts in work]
        print(f"{label} (max_length {backend.max_length}): {json.dumps(compare(theirs, ours))}")


if __name__ == "__main__":
    main()
