"""p50/p95 latency of ``rerank`` with a latency deadline on the real model: DL19 (43 judged
queries), BM25 top-100, the bundled reranker ``models/crossrank-minilm-l6`` on CPU, one call
per query, no cache. The same queries without a deadline first, then with
``deadline_ms``; for each, the texts scored and nDCG@10 (unscored candidates stay in BM25
order after the scored ones):

    python -m benchmarks.deadline --deadline-ms 300     # ~2-4 minutes on 2 CPU cores
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from ._production import load, parser


def pct(values: list[float], q: float) -> float:
    ms = sorted(v * 1000.0 for v in values)
    return ms[min(len(ms) - 1, max(0, round(q * len(ms)) - 1))]


def one_pass(
    rr: Any, dataset: Any, first: Any, n: int, deadline_ms: float | None
) -> dict[str, Any]:
    from crossrank_lab.quality.metrics import evaluate_run

    run: dict[str, list[tuple[str, float]]] = {}
    seconds: list[float] = []
    scored = total = late = 0
    for qid, cands in first.items():
        top = cands[:n]
        texts = [dataset.body(d) for d, _ in top]
        t0 = time.perf_counter()
        ranked = rr.rerank(dataset.queries[qid], texts, deadline_ms=deadline_ms)
        seconds.append(time.perf_counter() - t0)
        total += len(texts)
        scored += len(texts) - ranked.unscored
        late += ranked.deadline_passed
        # a descending pseudo-score keeps the engine's order (unscored after scored)
        run[qid] = [(top[r.index][0], float(len(ranked) - i)) for i, r in enumerate(ranked)]
    ndcg = evaluate_run(dataset.qrels, run, rel_level=2, metrics=["nDCG@10"])["nDCG@10"]
    return {
        "p50": statistics.median(s * 1000 for s in seconds),
        "p95": pct(seconds, 0.95),
        "max": max(seconds) * 1000,
        "scored": scored / total,
        "late": late,
        "ndcg": ndcg,
    }


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--deadline-ms", type=float, default=300.0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--no-baseline", action="store_true", help="skip the pass without deadline")
    args = p.parse_args()
    dataset, first, backend = load(args)
    from rerank_core import Reranker

    rr = Reranker(backend, cache=None, batch_size=args.batch_size)
    q0 = next(iter(first))
    rr.rerank(dataset.queries[q0], [dataset.body(d) for d, _ in first[q0][:4]])  # warm-up
    n = args.candidates
    print(f"DL19 {len(first)} queries, BM25 top-{n}, {args.model.name}, batch_size {rr.batch_size}")
    for label, ms in (
        ("no deadline", None),
        (f"deadline_ms={args.deadline_ms:g}", args.deadline_ms),
    ):
        r = one_pass(rr, dataset, first, n, ms)
        print(
            f"{label:>18}: p50 {r['p50']:.0f} ms, p95 {r['p95']:.0f} ms, max {r['max']:.0f} ms; "
            f"{r['scored']:.0%} of candidates scored, deadline hit on {r['late']} queries; "
            f"nDCG@10 {r['ndcg']:.3f}"
        )
    rr.close()


if __name__ == "__main__":
    main()
