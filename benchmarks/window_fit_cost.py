"""What fitting every window costs (issue 14 item 1): planning time with and without
re-encoding each window, and one uncached rerank, on the bundled SciFact sample and model.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/window_fit_cost.py
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rerank_core import Reranker
from rerank_core.planning import Planner

SAMPLE = Path(__file__).resolve().parents[1] / "shared/rerank_core/data/scifact_sample.jsonl"
QUERY = "what causes scurvy in sailors"


def in_place(self: Any, texts: Sequence[str], spans: Any, budget: int) -> list[Any]:
    """The planner before the fix: windows cut in place, never re-encoded."""
    return [self._cut(s, len(t), budget) for t, s in zip(texts, spans, strict=True)]


def main() -> None:
    with SAMPLE.open() as f:
        docs = [json.loads(line) for line in f]
    texts = [f"{d['title']} {d['text']}" for d in docs]
    rr = Reranker("minilm", model="models/crossrank-minilm-l6", cache=None)
    planner = rr._planner
    fitted = Planner.fitted_windows
    for label, fn in (("in place", in_place), ("fitted", fitted)) * 2:
        Planner.fitted_windows = fn  # type: ignore[method-assign]
        t0 = time.perf_counter()
        plan = planner.plan([(QUERY, texts)])
        t1 = time.perf_counter()
        planner.plan([(QUERY, texts)])
        t2 = time.perf_counter()
        rr.rerank(QUERY, texts)
        t3 = time.perf_counter()
        print(
            f"{label}: {len(plan.pairs)} windows; plan {1000 * (t1 - t0):.0f} ms, "
            f"again {1000 * (t2 - t1):.0f} ms; rerank (cache=None) {t3 - t2:.2f} s"
        )
    Planner.fitted_windows = fitted  # type: ignore[method-assign]


if __name__ == "__main__":
    main()
