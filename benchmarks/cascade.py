"""A two-stage cascade (small model → its top ``keep`` → large model) against the large
model alone: nDCG@10, pairs scored per query and ms/query p50/p95 on the same candidates.

    python -m benchmarks.cascade --small /work/models/student-l2-kd \\
        --large models/crossrank-minilm-l6                     # DL19, official BM25 top-100
    python -m benchmarks.cascade --small DIR --dataset ../shared/data/scifact \\
        --candidates 100,500 --max-queries 40 --timed-queries 10  # SciFact test, bm25s

DL19: the judged queries and the official BM25 top-100 (``load_trec_dl``); any other BEIR
folder: its test split (the first ``--max-queries`` queries, in file order) and a bm25s
top-``max(candidates)`` run over the whole corpus (as ``crossrank eval --bm25 --depth``).

How it measures. Every query's candidates are scored once by each model at the deepest
depth; the rows' rankings are composed from those scores (the cascade: the small model's
top ``keep`` of the first stage's top ``D``, ordered by the large model), so every query
counts for quality without paying for each row's model calls again. Latency is measured
on the first ``--timed-queries`` queries by real ``rerank`` calls: for each depth, the
large model alone, the small model alone, each ``Cascade`` and the first stage's top
``keep`` → large model, one call per query each, no cache, the order of the rows reversed
every other query so that a busy machine slows all of them alike. The timed cascades'
top-10 is checked against the composed one (``cascade_agrees``: the share of identical
top-10 lists, which should be 1.0). The 1-minute load average is sampled around each
query (``load``: before, after, highest seen). Prints a markdown table; ``--json`` and
``--md`` write the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._production import DEFAULT_DATA, DEFAULT_MODEL


def pct(ms: list[float], q: float) -> float:
    s = sorted(ms)
    return s[min(len(s) - 1, max(0, round(q * len(s)) - 1))]


def finite(x: Any) -> Any:
    """NaN (an untimed row's milliseconds) as JSON null."""
    if isinstance(x, float) and x != x:
        return None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [finite(v) for v in x]
    return x


def ints(text: str) -> list[int]:
    out = [int(x) for x in text.replace(" ", ",").split(",") if x]
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"positive numbers expected, got {text!r}")
    return sorted(set(out))


def inputs(data: Path, candidates: int, max_queries: int | None) -> tuple[Any, Any, str]:
    """``(dataset, first-stage run, its name)``."""
    if (data / "bm25_top100.trec").is_file() or "trec-dl" in data.name:
        from crossrank_lab.bench.common import load_trec_dl

        if candidates > 100:
            raise SystemExit("the official TREC DL run has 100 candidates per query")
        dataset, run = load_trec_dl(data, max_queries=max_queries)
        return dataset, {q: r[:candidates] for q, r in run.items()}, "official BM25"
    from crossrank_lab.quality.data import load_beir
    from crossrank_lab.quality.first_stage import bm25_run

    dataset = load_beir(data, "test", max_queries=max_queries)
    return dataset, bm25_run(dataset, candidates), "bm25s BM25"


def order(scores: Sequence[float], among: Sequence[int]) -> list[int]:
    """Positions ``among`` by descending score (ties: first-stage order)."""
    return sorted(among, key=lambda i: (-scores[i], i))


def composed(
    large: Sequence[float], small: Sequence[float], depth: int, keep: int | None
) -> list[int]:
    """A row's ranking of the first stage's top ``depth`` (positions, best first):
    ``keep=None`` the large model alone; else the small model's top ``keep``, ordered by
    the large model, then the rest in the small model's order (as ``Cascade`` returns)."""
    if keep is None:
        return order(large, range(depth))
    by_small = order(small, range(depth))
    return order(large, by_small[:keep]) + by_small[keep:]


def first_stage_cut(large: Sequence[float], depth: int, keep: int) -> list[int]:
    """The first stage's top ``keep`` ordered by the large model, then the rest unchanged."""
    return order(large, range(min(keep, depth))) + list(range(min(keep, depth), depth))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", type=Path, required=True, help="first-stage cross-encoder dir")
    p.add_argument("--large", type=Path, default=DEFAULT_MODEL, help="final cross-encoder dir")
    p.add_argument("--dataset", type=Path, default=DEFAULT_DATA, help="TREC DL or BEIR folder")
    p.add_argument("--candidates", type=ints, default=[100], help="first-stage depths: 100,500")
    p.add_argument("--keep", type=ints, default=[30, 50], help="what the small model passes on")
    p.add_argument("--max-queries", type=int, help="only the first N judged queries")
    p.add_argument("--timed-queries", type=int, help="time the first N queries (default: all)")
    p.add_argument("--timed-depths", type=ints, help="depths to time (default: all)")
    p.add_argument("--precision", default="auto", help="the engines' precision (default auto)")
    p.add_argument("--small-precision", help="the small model's, if not --precision")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="torch / ONNX threads")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--md", type=Path, help="write the table here")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from crossrank_lab.quality.metrics import evaluate_run
    from rerank_core import Cascade, Reranker

    torch.set_num_threads(args.threads)
    depths, keeps = args.candidates, args.keep
    deepest = max(depths)
    dataset, first, first_name = inputs(args.dataset, deepest, args.max_queries)
    rel = dataset.default_rel_level()
    opts: dict[str, Any] = {"cache": None, "batch_size": args.batch_size}
    opts |= {"num_threads": args.threads}
    t_load = time.perf_counter()
    small_precision = args.small_precision or args.precision
    small = Reranker("minilm", model=str(args.small), precision=small_precision, **opts)
    large = Reranker("minilm", model=str(args.large), precision=args.precision, **opts)
    load_s = time.perf_counter() - t_load
    cascades = {k: Cascade([(small, k), large]) for k in keeps}
    q0 = next(iter(first))
    warm = [dataset.body(d) for d, _ in first[q0][:8]]
    for s in (small, large, *cascades.values()):  # one-off setup (ONNX sessions, first batch)
        s.rerank(dataset.queries[q0], warm)

    # rows: (key, depth, keep or None); "large", "small", "cascade", "first"
    rows: list[tuple[str, int, int | None]] = []
    for d in depths:
        rows += [("large", d, None), ("small", d, None)]
        rows += [("cascade", d, k) for k in keeps if k < d]
        rows += [("first", d, k) for k in keeps if k < d]
    nq = len(first)
    timed_n = nq if args.timed_queries is None else min(nq, args.timed_queries)
    timed_depths = set(depths if args.timed_depths is None else args.timed_depths)
    ms: dict[tuple[str, int, int | None], list[float]] = {r: [] for r in rows}
    agree: dict[tuple[int, int], list[bool]] = {(d, k): [] for d in depths for k in keeps if k < d}
    runs: dict[tuple[str, int, int | None], dict[str, list[tuple[str, float]]]] = {
        r: {} for r in rows
    }
    loads = [os.getloadavg()[0]]
    t_all = time.perf_counter()

    def timed(fn: Any, *a: Any) -> tuple[Any, float]:
        t0 = time.perf_counter()
        out = fn(*a)
        return out, (time.perf_counter() - t0) * 1000.0

    for n, (qid, cands) in enumerate(first.items()):
        ids = [d for d, _ in cands]
        texts = [dataset.body(d) for d in ids]
        query = dataset.queries[qid]
        scores: dict[str, list[float]] = {}
        cascade_top: dict[tuple[int, int], list[int]] = {}
        if n < timed_n:
            todo = [r for r in rows if r[1] in timed_depths]
            if n % 2:
                todo.reverse()
            for key, d, k in todo:
                if key == "large" or key == "small":
                    engine = large if key == "large" else small
                    ranked, t = timed(engine.rerank, query, texts[:d])
                    if d == deepest:
                        got = [0.0] * d
                        for r in ranked:
                            got[r.index] = r.score
                        scores[key] = got
                elif key == "cascade":
                    assert k is not None
                    ranked, t = timed(cascades[k].rerank, query, texts[:d])
                    cascade_top[(d, k)] = [r.index for r in ranked[:10]]
                else:
                    assert k is not None
                    _, t = timed(large.rerank, query, texts[: min(k, d)])
                ms[(key, d, k)].append(t)
        if "large" not in scores:  # untimed: score once with each model
            scores = {"large": large.score(query, texts), "small": small.score(query, texts)}
        loads.append(os.getloadavg()[0])
        for key, d, k in rows:
            if key == "first":
                assert k is not None
                pos = first_stage_cut(scores["large"], d, k)
            elif key == "small":
                pos = order(scores["small"], range(d))
            else:
                pos = composed(scores["large"], scores["small"], d, k)
            runs[(key, d, k)][qid] = [(ids[i], float(len(pos) - j)) for j, i in enumerate(pos)]
            if key == "cascade" and (d, k) in cascade_top:
                assert k is not None
                agree[(d, k)].append(cascade_top[(d, k)] == pos[:10])
        if (n + 1) % 10 == 0 or n + 1 == nq:
            print(
                f"  {n + 1}/{nq} queries, {time.perf_counter() - t_all:.0f} s, "
                f"load {loads[-1]:.1f}",
                file=sys.stderr,
                flush=True,
            )
    wall = time.perf_counter() - t_all

    def pairs(key: str, d: int, k: int | None) -> int:
        return {"large": d, "small": d, "cascade": d + (k or 0), "first": min(k or d, d)}[key]

    def label(key: str, d: int, k: int | None) -> str:
        return {
            "large": f"{args.large.name} alone",
            "small": f"{args.small.name} alone",
            "cascade": f"cascade {args.small.name} → top-{k} → {args.large.name}",
            "first": f"first stage top-{k} → {args.large.name}",
        }[key]

    first_ndcg = {
        d: evaluate_run(
            dataset.qrels, {q: r[:d] for q, r in first.items()}, rel_level=rel, metrics=["nDCG@10"]
        )["nDCG@10"]
        for d in depths
    }
    results: list[dict[str, Any]] = []
    for key, d, k in rows:
        m = evaluate_run(dataset.qrels, runs[(key, d, k)], rel_level=rel, metrics=["nDCG@10"])
        t = ms[(key, d, k)] or [float("nan")]
        results.append(
            {
                "system": label(key, d, k),
                "kind": key,
                "candidates": d,
                "keep": k,
                "nDCG@10": m["nDCG@10"],
                "pairs_per_query": pairs(key, d, k),
                "ms_p50": statistics.median(t),
                "ms_p95": pct(t, 0.95),
                "ms_mean": statistics.fmean(t),
                "timed_queries": len(ms[(key, d, k)]),
            }
        )
    for r in results:
        base = next(
            b for b in results if b["kind"] == "large" and b["candidates"] == r["candidates"]
        )
        r["delta_vs_large"] = r["nDCG@10"] - base["nDCG@10"]
        r["p50_vs_large"] = r["ms_p50"] / base["ms_p50"]
        r["p95_vs_large"] = r["ms_p95"] / base["ms_p95"]
        if r["kind"] == "cascade":
            r["meets_target"] = r["delta_vs_large"] >= -0.005 and r["p50_vs_large"] <= 0.5
    ran = {
        name: {x: e.describe().get(x) for x in ("runtime", "precision", "int8_variant")}
        for name, e in (("small", small), ("large", large))
    }
    load_note = (
        f"1-min load average {loads[0]:.1f} before, {loads[-1]:.1f} after, "
        f"highest {max(loads):.1f} ({os.cpu_count()} CPUs)"
    )
    head = (
        f"{dataset.name}: {nq} queries (latency: the first {timed_n}), {first_name} "
        f"top-{'/'.join(map(str, depths))} (nDCG@10 "
        f"{', '.join(f'{first_ndcg[d]:.4f}' for d in depths)}); {args.threads} thread(s), "
        f"batch_size {args.batch_size}; large: precision {args.precision} {ran['large']}, "
        f"small: precision {small_precision} {ran['small']}; "
        f"{load_note}; {wall:.0f} s"
    )
    lines = [
        head,
        "",
        "| candidates | system | nDCG@10 | Δ vs alone | pairs/query | ms/query p50 | p95 "
        "| p50 vs alone |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['candidates']} | {r['system']} | {r['nDCG@10']:.4f} | "
            f"{r['delta_vs_large']:+.4f} | {r['pairs_per_query']} | {r['ms_p50']:.0f} | "
            f"{r['ms_p95']:.0f} | {r['p50_vs_large']:.0%} |"
        )
    agreement = {f"{d}/{k}": statistics.fmean(v) if v else None for (d, k), v in agree.items()}
    lines += [
        "",
        "timed cascades whose top-10 equals the composed one: "
        + ", ".join(f"top-{dk}: {v:.0%}" for dk, v in agreement.items() if v is not None),
    ]
    text = "\n".join(lines)
    print(text)
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(text + "\n", encoding="utf-8")
    if args.json:
        out = {
            "command": "python -m benchmarks.cascade " + " ".join(sys.argv[1:]),
            "dataset": dataset.name,
            "queries": nq,
            "timed_queries": timed_n,
            "first_stage": {"name": first_name, "nDCG@10": first_ndcg},
            "small": str(args.small),
            "large": str(args.large),
            "engines": ran,
            "threads": args.threads,
            "batch_size": args.batch_size,
            "load_average": {"before": loads[0], "after": loads[-1], "max": max(loads)},
            "cpus": os.cpu_count(),
            "load_seconds": load_s,
            "wall_seconds": wall,
            "rows": results,
            "cascade_agrees": agreement,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(finite(out), indent=2) + "\n", encoding="utf-8")
    for s in (small, large):
        s.close()


if __name__ == "__main__":
    main()
