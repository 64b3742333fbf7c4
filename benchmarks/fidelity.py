"""Does the fast default rank as well as exact fp32 scoring? nDCG@10 on TREC DL 2019.

Reranks the official BM25 top-100 of the 43 DL19 queries with one model in several
precision modes and scores each run against the NIST qrels with ir-measures::

    python -m benchmarks.fidelity --model models/crossrank-minilm-l6

Prints and writes ``benchmarks/results/fidelity.md``: nDCG@10 per mode, its difference to
exact (the target: within 0.002), the largest score difference, top-10 agreement and the
time each mode took. Needs a *trained* cross-encoder: an untrained head ranks at random.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "trec-dl-2019-passage"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="models/crossrank-minilm-l6")
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--modes", default="exact,auto,bf16", help="precision modes to compare")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/fidelity.md"))
    args = p.parse_args(argv)

    import numpy as np
    from crossrank_lab.bench.common import load_trec_dl
    from crossrank_lab.quality.data import sort_run
    from crossrank_lab.quality.metrics import evaluate_run
    from rerank_core import Reranker

    dataset, first = load_trec_dl(args.data)
    qids = list(first)
    queries = dataset.queries
    run = {q: [d for d, _ in first[q]] for q in qids}

    def ndcg10(scored: dict[str, list[tuple[str, float]]]) -> float:
        """nDCG@10 of the run, each query's documents ordered by score (best first)."""
        ranked = sort_run(scored)
        return evaluate_run(dataset.qrels, ranked, rel_level=2, metrics=("ndcg@10",))["ndcg@10"]

    results: dict[str, dict] = {"BM25": {"ndcg": ndcg10(first)}}
    scores: dict[str, list[np.ndarray]] = {}
    for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
        rr = Reranker("minilm", model=args.model, precision=mode, cache=None)
        facts = rr.describe()
        label = f"{mode} ({facts.get('runtime')} {facts.get('precision')})"
        t0 = time.perf_counter()
        per_query = [
            np.asarray(rr.score(queries[q], [dataset.body(d) for d in run[q]])) for q in qids
        ]
        took = time.perf_counter() - t0
        ndcg = ndcg10(
            {
                q: [(d, float(s)) for d, s in zip(run[q], sc, strict=True)]
                for q, sc in zip(qids, per_query, strict=True)
            }
        )
        results[label] = {"ndcg": ndcg, "seconds": took, "pairs": sum(len(run[q]) for q in qids)}
        scores[label] = per_query
        print(f"{label}: nDCG@10 {ndcg:.4f} in {took:.1f}s", flush=True)
        rr.close()
    labels = list(scores)
    ref = labels[0]
    spread = float(np.std(np.concatenate(scores[ref])))
    lines = [
        f"# Fidelity of the fast modes: {args.data.name}, BM25 top-100 reranked",
        "",
        f"- model: {args.model}; {len(qids)} queries; command: "
        f"`python -m benchmarks.fidelity {' '.join(sys.argv[1:])}`",
        f"- reference mode: {ref}; its scores (logits) have a standard deviation of {spread:.2f}",
        "",
        "| run | nDCG@10 | Δ vs reference | mean abs Δ score | max abs Δ score "
        "| mean top-10 overlap | s |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| BM25 | {results['BM25']['ndcg']:.4f} | | | | | |",
    ]
    for label in labels:
        r = results[label]
        pairs = list(zip(scores[label], scores[ref], strict=True))
        diff = max(float(np.max(np.abs(a - b))) for a, b in pairs)
        mean_diff = float(np.mean(np.concatenate([np.abs(a - b) for a, b in pairs])))
        overlap = statistics.fmean(
            len(set(np.argsort(-a)[:10]) & set(np.argsort(-b)[:10])) / 10 for a, b in pairs
        )
        lines.append(
            f"| {label} | {r['ndcg']:.4f} | {r['ndcg'] - results[ref]['ndcg']:+.4f} | "
            f"{mean_diff:.3f} | {diff:.3f} | {overlap:.3f} | {r['seconds']:.0f} |"
        )
    md = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(md, encoding="utf-8")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
