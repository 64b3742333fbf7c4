"""How well the rank-1 score separates queries whose top-1 is relevant from those whose
top-1 is not: DL19 (43 judged queries), BM25 top-100 reranked by the bundled reranker
``models/crossrank-minilm-l6``; "relevant" = grade >= 2 (TREC DL's binary level).

Prints the ROC AUC of the rank-1 score, the suggested ``confidence_threshold`` for several
targets X (the top-1 score below which the top-1 is relevant less than X of the time) with
the flag's precision/recall, and what the flag does with a threshold chosen that way:

    python -m benchmarks.confidence                 # ~2-4 minutes on 2 CPU cores
"""

from __future__ import annotations

import time

from crossrank_lab.quality.confidence import suggest_threshold, top1_outcomes

from ._production import load, parser


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    dataset, first, backend = load(args)
    from rerank_core import Reranker

    rr = Reranker(backend, cache=None)
    run: dict[str, list[tuple[str, float]]] = {}
    t0 = time.perf_counter()
    low = 0
    for qid, cands in first.items():
        top = cands[: args.candidates]
        ranked = rr.rerank(dataset.queries[qid], [dataset.body(d) for d, _ in top])
        run[qid] = [(top[r.index][0], r.score) for r in ranked]
    took = time.perf_counter() - t0
    outcomes = top1_outcomes(run, dataset.qrels, rel_level=2)
    print(
        f"DL19: {len(outcomes)} queries, BM25 top-{args.candidates} reranked by "
        f"{args.model.name} in {took:.0f}s; score scale {rr.score_scale}"
    )
    rel = sorted(s for s, r in outcomes if r)
    bad = sorted(s for s, r in outcomes if not r)
    print(
        f"top-1 relevant: {len(rel)} queries, rank-1 score median {rel[len(rel) // 2]:.3f}; "
        f"not relevant: {len(bad)}, median {bad[len(bad) // 2]:.3f}"
    )
    for x in (0.25, 0.5):
        print(f"X={x:.0%}: {suggest_threshold(outcomes, max_relevant=x).line('logit')}")
    low = sum(1 for s, _ in outcomes if s < 0)
    print(f"(for scale: {low} of {len(outcomes)} queries have a negative rank-1 logit)")
    rr.close()


if __name__ == "__main__":
    main()
