"""Does the fast default rank like fp32 on *every* model? The fidelity guard, measured.

For each model: the fidelity guard's probe figures for every int8 variant (what the guard
sees at load time), and what each variant does to real rankings — nDCG@10 on the 43 TREC
DL 2019 queries (official BM25 top-100), its difference to fp32 (target: within 0.002),
Kendall tau per query over the 100 candidates and the top-10 overlap with fp32 — and, for
fp32 and the variant the guard chooses, chunk-max nDCG@10 on buried long documents (each
BM25 top-``--long-depth`` candidate buried after 512-768 tokens of unrelated passages;
target: within 0.01 of fp32)::

    python -m benchmarks.fidelity --models models/crossrank-minilm-l6,DIR2,DIR3

Writes ``benchmarks/results/fidelity.{json,md}``. Needs *trained* cross-encoders (an
untrained head ranks at random) and ``../shared/data``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "trec-dl-2019-passage"


def _swap_runner(reranker: Any, path: Path, precision: str) -> None:
    """Score ``reranker``'s backend with the ONNX model at ``path`` (a benchmark-only
    shortcut: the public way to a variant is the guard or ``precision="int8"``)."""
    from rerank_core.backends.runtime.runners import OnnxRunner

    b = reranker.backend
    old = b._runner
    tok = old._tok.to_str()
    b._runner = OnnxRunner(
        path, tok, precision=precision, encoding=b._encoding, threads=b._threads, extra="minilm"
    )
    old.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="models/crossrank-minilm-l6", help="comma-separated")
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument(
        "--variants", default="int8,int8-rr,int8-ffn32,int8-ffn32-rr,int8-pt", help="int8 variants"
    )
    p.add_argument("--long-depth", type=int, default=10, help="buried candidates per query")
    p.add_argument("--long-queries", type=int, default=43)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fidelity")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from crossrank_lab.bench.common import load_trec_dl
    from crossrank_lab.quality.data import sort_run
    from crossrank_lab.quality.longdocs import long_documents
    from crossrank_lab.quality.metrics import evaluate_run
    from rerank_core import Reranker
    from rerank_core.backends.runtime import guard, onnx_export
    from rerank_core.backends.runtime.fidelity import DEFAULT_BAR, compare, kendall_tau, top_overlap
    from rerank_core.backends.runtime.probe import load_probe

    dataset, first = load_trec_dl(args.data)
    qids = list(first)
    run = {q: [d for d, _ in first[q]] for q in qids}
    bm25 = evaluate_run(dataset.qrels, first, rel_level=2, metrics=("ndcg@10",))["ndcg@10"]
    probe = load_probe()
    ppairs, groups = probe.pairs(), probe.group_slices()
    plong = slice(groups[-1].stop, len(ppairs))

    def ndcg(scored: dict[str, list[tuple[str, float]]]) -> float:
        return evaluate_run(dataset.qrels, sort_run(scored), rel_level=2, metrics=("ndcg@10",))[
            "ndcg@10"
        ]

    def dl19(rr: Any) -> tuple[float, list[list[float]], float]:
        t0 = time.perf_counter()
        scores = [rr.score(dataset.queries[q], [dataset.body(d) for d in run[q]]) for q in qids]
        took = time.perf_counter() - t0
        scored = {q: list(zip(run[q], s, strict=True)) for q, s in zip(qids, scores, strict=True)}
        return ndcg(scored), scores, took

    report: dict[str, Any] = {"bm25": bm25, "bar": DEFAULT_BAR.as_dict(), "models": {}}
    lines = [
        "# Fidelity of the int8 variants, per model",
        "",
        f"Command: `python -m benchmarks.fidelity {' '.join(argv or sys.argv[1:])}`; "
        f"TREC DL 2019, {len(qids)} queries, BM25 top-100 (BM25 nDCG@10 {bm25:.4f}); "
        f"{os.cpu_count()} cores, load average at start {os.getloadavg()[0]:.2f}.",
        f"Guard bar: {DEFAULT_BAR.as_dict()}.",
        "",
    ]
    for model in [m for m in args.models.split(",") if m]:
        rr = Reranker(
            "minilm", model=model, precision="exact", cache=None, num_threads=args.threads
        )
        fp32_path = Path(rr.describe()["onnx_model_path"])
        ref_probe = rr.backend._runner.score(ppairs)
        base_ndcg, base_scores, base_s = dl19(rr)
        rows: list[dict[str, Any]] = []
        for name in [v for v in args.variants.split(",") if v]:
            variant = onnx_export.variant_named(name)
            path = onnx_export.quantized(fp32_path, variant)
            _swap_runner(rr, path, "int8")
            fig = compare(ref_probe, rr.backend._runner.score(ppairs), groups, plong)
            n, s, took = dl19(rr)
            taus = [kendall_tau(a, b) for a, b in zip(base_scores, s, strict=True)]
            over = [top_overlap(a, b, 10) for a, b in zip(base_scores, s, strict=True)]
            rows.append(
                {
                    "variant": name,
                    "probe": fig.as_dict(),
                    "passes": not DEFAULT_BAR.failures(fig),
                    "failures": DEFAULT_BAR.failures(fig),
                    "ndcg10": n,
                    "delta": n - base_ndcg,
                    "tau": statistics.fmean(taus),
                    "top10": statistics.fmean(over),
                    "seconds": took,
                }
            )
            print(model, name, f"{n:.4f} ({n - base_ndcg:+.4f})", fig.summary(), flush=True)
        chosen = next((r["variant"] for r in rows if r["passes"]), None)
        if chosen is not None and chosen not in [v.name for v in guard.VARIANTS]:
            chosen = None
        long = _long_docs(
            rr,
            dataset,
            first,
            qids[: args.long_queries],
            args.long_depth,
            fp32_path,
            chosen,
            long_documents,
            ndcg,
        )
        report["models"][model] = {
            "fp32": {"ndcg10": base_ndcg, "seconds": base_s},
            "variants": rows,
            "guard_choice": chosen,
            "long": long,
        }
        lines += [
            f"## {model}",
            "",
            f"fp32 nDCG@10 {base_ndcg:.4f} ({base_s:.0f} s). Guard's choice: "
            f"**{chosen or 'fp32'}**. Buried long documents (top-{args.long_depth}, chunk-max): "
            + ", ".join(f"{k} {v:.4f}" for k, v in long.items()),
            "",
            "| variant | probe τ | probe top-3 | probe err/spread p95 | long err/spread "
            "| guard | DL19 nDCG@10 | Δ fp32 | τ (100 docs) | top-10 overlap | s |",
            "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            f = r["probe"]
            lines.append(
                f"| {r['variant']} | {f['tau_mean']:.3f} | {f['top3_overlap']:.3f} | "
                f"{f['rel_err_p95']:.3f} | {f['long_rel_err_max']:.3f} | "
                f"{'pass' if r['passes'] else 'fail'} | {r['ndcg10']:.4f} | {r['delta']:+.4f} | "
                f"{r['tau']:.3f} | {r['top10']:.3f} | {r['seconds']:.0f} |"
            )
        lines.append("")
        rr.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    md = "\n".join(lines) + "\n"
    args.out.with_suffix(".md").write_text(md)
    print(md)
    return 0


def _long_docs(
    rr: Any,
    dataset: Any,
    first: Any,
    qids: list[str],
    depth: int,
    fp32_path: Path,
    chosen: str | None,
    long_documents: Any,
    ndcg: Any,
) -> dict[str, float]:
    from rerank_core.backends.runtime import onnx_export

    sub = {q: first[q][:depth] for q in qids}
    tok = rr.backend.tokenizer
    docs = long_documents(
        dataset, sub, depth, count_tokens=lambda t: len(tok.token_spans([t])[0]), seed=0
    )
    out: dict[str, float] = {}
    for label, path, prec in [
        ("fp32", fp32_path, "fp32"),
        *(
            [(chosen, onnx_export.quantized(fp32_path, onnx_export.variant_named(chosen)), "int8")]
            if chosen
            else []
        ),
    ]:
        _swap_runner(rr, path, prec)
        scored = {}
        for q in qids:
            ids = [d for d, _ in sub[q]]
            s = rr.score(dataset.queries[q], [docs[q][d].text for d in ids])
            scored[q] = list(zip(ids, s, strict=True))
        out[label] = ndcg(scored)
        print("long", label, f"{out[label]:.4f}", flush=True)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
