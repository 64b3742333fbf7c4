"""Do the engine's windows fit the model? Windows counted in place (tokens of the whole
text, as before issue 14 item 1) against the planner's fitted windows (each window encoded
again on its own, a text cut finer where one is over): how many windows each gives and how
many encode longer than ``max_length`` with the model's own tokenizer
(``tokenizer(query, window, truncation=False)``), on the bundled SciFact sample (281 title
+ abstract passages), overlap 16.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/window_fit.py [FOLDER ...] [--tiny]

``FOLDER``: local cross-encoder folders (default: the bundled crossrank-minilm-l6).
``--tiny``: also the tests' tiny random BERT, ELECTRA and RoBERTa (real tokenizers:
WordPiece, and a byte-level BPE trained on the sample; ``tests/backends/_tiny_presets.py``),
built in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from rerank_core.backends.cross_encoder import CrossEncoderBackend
from rerank_core.planning import Planner
from rerank_core.windows import Window, make_windows, window_budget

ROOT = Path(__file__).resolve().parents[1]
QUERY = "what causes scurvy in sailors"
OVERLAP = 16


def measure(label: str, path: Path, texts: list[str]) -> None:
    from transformers import AutoTokenizer

    backend = CrossEncoderBackend(str(path), precision="exact", runtime="torch")
    hf = AutoTokenizer.from_pretrained(str(path))
    tok, limit = backend.tokenizer, backend.max_length
    q = len(tok.token_spans([QUERY])[0])
    budget = window_budget(limit, q, tok.pair_special_tokens)
    spans = tok.token_spans(texts)
    in_place = [
        make_windows(s, len(t), budget=budget, overlap=OVERLAP)[0]
        for s, t in zip(spans, texts, strict=True)
    ]
    planner = Planner(tok, limit, OVERLAP, max_query_tokens=64)
    fitted = [w for w, _ in planner.fitted_windows(texts, spans, budget)]

    def over(cut: list[list[Window]]) -> tuple[int, int, int]:
        total = n = worst = 0
        for text, windows in zip(texts, cut, strict=True):
            for w in windows:
                total += 1
                extra = len(hf(QUERY, text[w.start : w.end], truncation=False)["input_ids"]) - limit
                if extra > 0:
                    n, worst = n + 1, max(worst, extra)
        return total, n, worst

    t0, n0, w0 = over(in_place)
    t1, n1, _ = over(fitted)
    moved = sum(
        [(w.start, w.end) for w in a] != [(w.start, w.end) for w in b]
        for a, b in zip(in_place, fitted, strict=True)
    )
    print(
        f"{label}: max_length {limit}; in place {t0} windows, {n0} over max_length "
        f"(by up to {w0}); fitted {t1} windows, {n1} over; texts cut differently {moved}"
    )
    backend.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="*", default=[str(ROOT / "models" / "crossrank-minilm-l6")])
    ap.add_argument("--tiny", action="store_true", help="also the tests' tiny random models")
    args = ap.parse_args()
    data = ROOT / "shared" / "rerank_core" / "data" / "scifact_sample.jsonl"
    docs = [json.loads(line) for line in data.open()]
    texts = [f"{d['title']} {d['text']}" for d in docs]
    for folder in args.folders:
        measure(Path(folder).name, Path(folder), texts)
    if args.tiny:
        sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "backends")]
        from _tiny_presets import make_tiny

        with tempfile.TemporaryDirectory() as tmp:
            for arch in ("bert", "electra", "roberta"):
                measure(f"tiny {arch}", make_tiny(arch, Path(tmp) / arch), texts)


if __name__ == "__main__":
    main()
