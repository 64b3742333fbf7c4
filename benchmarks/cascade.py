"""A two-stage cascade (small model → its top ``keep`` → large model) against the large
model alone: nDCG@10, pairs scored per query and ms/query p50/p95 on the same candidates.

    python -m benchmarks.cascade --small /work/models/student-l2-kd \\
        --large models/crossrank-minilm-l6                     # DL19, official BM25 top-100
    python -m benchmarks.cascade --small DIR --dataset ../shared/data/scifact \\
        --candidates 100,500 --max-queries 40 --timed-queries 10  # SciFact test, bm25s
    python -m benchmarks.cascade --small DIR --keep 30 --small-fusion rrf \\
        --small-fusion linear:0.5 --small-precision int8   # the small stage fused with BM25

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
top-10 lists, which should be 1.0).

``--small-fusion SPEC`` (repeatable: ``rrf``, ``rrf:K``, ``linear:W``) adds, per spec, the
small model's score fused with the first stage's (the run's own scores) over the top ``D``
(``small+SPEC alone``, not timed: it costs what the small model alone does) and the
cascade whose small stage ranks by that fused score (``Stage(small, keep, fusion=SPEC)``,
given ``first_stage_scores=``), composed with :func:`rerank_core.fusion.fuse_scores`
exactly as the stage fuses and timed like the other cascades.

The 1-minute load average is sampled around each query (``load``: before, after, highest
seen). Prints a markdown table; ``--json`` and ``--md`` write the numbers.
"""

from __future__ import annotations

import argparse
import functools
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


def fused_order(
    small: Sequence[float], first: Sequence[float], depth: int, fusion: Any
) -> list[int]:
    """Positions of the top ``depth`` by the small model's score fused with the first
    stage's (``fusion``: a :class:`~rerank_core.fusion.Fusion`), ties by position: the
    order a fusing cascade stage ranks its pool in."""
    from rerank_core.fusion import fuse_scores

    fused = fuse_scores(list(small[:depth]), list(first[:depth]), fusion)
    return order(fused, range(depth))


def fused_cascade(
    large: Sequence[float],
    small: Sequence[float],
    first: Sequence[float],
    depth: int,
    keep: int,
    fusion: Any,
) -> list[int]:
    """The fused small stage's top ``keep`` ordered by the large model, then the rest in
    the fused order (as ``Cascade`` returns)."""
    by_fused = fused_order(small, first, depth, fusion)
    return order(large, by_fused[:keep]) + by_fused[keep:]


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
    p.add_argument(
        "--small-max-windows",
        type=int,
        help="the small model reads at most N windows of each text (its own cap: results "
        "marked truncated; the large model still reads every window)",
    )
    p.add_argument(
        "--small-fusion",
        action="append",
        default=[],
        metavar="SPEC",
        help="also rank the small stage by its score fused with the first stage's: rrf, "
        "rrf:K or linear:W (repeatable; adds rows)",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="torch / ONNX threads")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--md", type=Path, help="write the table here")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from crossrank_lab.quality.metrics import evaluate_run
    from rerank_core import Cascade, Reranker, Stage, WindowConfig
    from rerank_core.fusion import Fusion, parse_fusion

    fusions: dict[str, Fusion] = {}
    for raw in args.small_fusion:
        parsed = parse_fusion(raw)
        if parsed is None:
            raise SystemExit(f"--small-fusion {raw!r}: give rrf, rrf:K or linear:W")
        fusions[parsed.spec()] = parsed
    torch.set_num_threads(args.threads)
    depths, keeps = args.candidates, args.keep
    deepest = max(depths)
    dataset, first, first_name = inputs(args.dataset, deepest, args.max_queries)
    rel = dataset.default_rel_level()
    opts: dict[str, Any] = {"cache": None, "batch_size": args.batch_size}
    opts |= {"num_threads": args.threads}
    t_load = time.perf_counter()
    small_precision = args.small_precision or args.precision
    small_window = WindowConfig(max_windows=args.small_max_windows)
    small = Reranker(
        "minilm", model=str(args.small), precision=small_precision, window=small_window, **opts
    )
    large = Reranker("minilm", model=str(args.large), precision=args.precision, **opts)
    load_s = time.perf_counter() - t_load
    cascades = {k: Cascade([(small, k), large]) for k in keeps}
    fused_cascades = {
        (f, k): Cascade([Stage(small, k, fusion=fusion), large])
        for f, fusion in fusions.items()
        for k in keeps
    }
    q0 = next(iter(first))
    warm = [dataset.body(d) for d, _ in first[q0][:8]]
    for s in (small, large, *cascades.values()):  # one-off setup (ONNX sessions, first batch)
        s.rerank(dataset.queries[q0], warm)
    warm_first = [float(x) for _, x in first[q0][:8]]
    for c in fused_cascades.values():
        c.rerank(dataset.queries[q0], warm, first_stage_scores=warm_first)

    # rows: (key, depth, keep or None, fusion spec or None); "large", "small", "cascade",
    # "first", and per --small-fusion "small" and "cascade" rows with the spec
    Row = tuple[str, int, int | None, str | None]
    rows: list[Row] = []
    for d in depths:
        rows += [("large", d, None, None), ("small", d, None, None)]
        rows += [("small", d, None, f) for f in fusions]
        rows += [("cascade", d, k, None) for k in keeps if k < d]
        rows += [("cascade", d, k, f) for f in fusions for k in keeps if k < d]
        rows += [("first", d, k, None) for k in keeps if k < d]
    nq = len(first)
    timed_n = nq if args.timed_queries is None else min(nq, args.timed_queries)
    timed_depths = set(depths if args.timed_depths is None else args.timed_depths)
    ms: dict[Row, list[float]] = {r: [] for r in rows}
    agree: dict[tuple[int, int, str | None], list[bool]] = {
        (d, k, f): [] for key, d, k, f in rows if key == "cascade" and k is not None
    }
    runs: dict[Row, dict[str, list[tuple[str, float]]]] = {r: {} for r in rows}
    loads = [os.getloadavg()[0]]
    t_all = time.perf_counter()

    def timed(fn: Any, *a: Any) -> tuple[Any, float]:
        t0 = time.perf_counter()
        out = fn(*a)
        return out, (time.perf_counter() - t0) * 1000.0

    for n, (qid, cands) in enumerate(first.items()):
        ids = [d for d, _ in cands]
        first_scores = [float(x) for _, x in cands]
        texts = [dataset.body(d) for d in ids]
        query = dataset.queries[qid]
        scores: dict[str, list[float]] = {}
        cascade_top: dict[tuple[int, int, str | None], list[int]] = {}
        if n < timed_n:
            # a fused small row costs what the small model alone does: not timed again
            todo = [r for r in rows if r[1] in timed_depths and not (r[0] == "small" and r[3])]
            if n % 2:
                todo.reverse()
            for key, d, k, f in todo:
                if key == "cascade" and f is not None:
                    assert k is not None
                    c = fused_cascades[(f, k)]
                    call = functools.partial(c.rerank, first_stage_scores=first_scores[:d])
                    ranked, t = timed(call, query, texts[:d])
                    cascade_top[(d, k, f)] = [r.index for r in ranked[:10]]
                elif key == "large" or key == "small":
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
                    cascade_top[(d, k, None)] = [r.index for r in ranked[:10]]
                else:
                    assert k is not None
                    _, t = timed(large.rerank, query, texts[: min(k, d)])
                ms[(key, d, k, f)].append(t)
        if "large" not in scores:  # untimed: score once with each model
            scores = {"large": large.score(query, texts), "small": small.score(query, texts)}
        loads.append(os.getloadavg()[0])
        for key, d, k, f in rows:
            if key == "first":
                assert k is not None
                pos = first_stage_cut(scores["large"], d, k)
            elif key == "small" and f is not None:
                pos = fused_order(scores["small"], first_scores, d, fusions[f])
            elif key == "small":
                pos = order(scores["small"], range(d))
            elif f is not None:
                assert k is not None
                pos = fused_cascade(
                    scores["large"], scores["small"], first_scores, d, k, fusions[f]
                )
            else:
                pos = composed(scores["large"], scores["small"], d, k)
            run_q = [(ids[i], float(len(pos) - j)) for j, i in enumerate(pos)]
            runs[(key, d, k, f)][qid] = run_q
            if key == "cascade" and (d, k, f) in cascade_top:
                assert k is not None
                agree[(d, k, f)].append(cascade_top[(d, k, f)] == pos[:10])
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

    def label(key: str, d: int, k: int | None, f: str | None) -> str:
        small_name = args.small.name if f is None else f"{args.small.name}+{f}"
        return {
            "large": f"{args.large.name} alone",
            "small": f"{small_name} alone",
            "cascade": f"cascade {small_name} → top-{k} → {args.large.name}",
            "first": f"first stage top-{k} → {args.large.name}",
        }[key]

    first_ndcg = {
        d: evaluate_run(
            dataset.qrels, {q: r[:d] for q, r in first.items()}, rel_level=rel, metrics=["nDCG@10"]
        )["nDCG@10"]
        for d in depths
    }
    results: list[dict[str, Any]] = []
    for key, d, k, f in rows:
        m = evaluate_run(dataset.qrels, runs[(key, d, k, f)], rel_level=rel, metrics=["nDCG@10"])
        t = ms[(key, d, k, f)] or [float("nan")]
        results.append(
            {
                "system": label(key, d, k, f),
                "kind": key,
                "candidates": d,
                "keep": k,
                "small_fusion": f,
                "nDCG@10": m["nDCG@10"],
                "pairs_per_query": pairs(key, d, k),
                "ms_p50": statistics.median(t),
                "ms_p95": pct(t, 0.95),
                "ms_mean": statistics.fmean(t),
                "timed_queries": len(ms[(key, d, k, f)]),
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
    capped = ""
    if args.small_max_windows:
        capped = f", at most {args.small_max_windows} window(s) per text"
    head = (
        f"{dataset.name}: {nq} queries (latency: the first {timed_n}), {first_name} "
        f"top-{'/'.join(map(str, depths))} (nDCG@10 "
        f"{', '.join(f'{first_ndcg[d]:.4f}' for d in depths)}); {args.threads} thread(s), "
        f"batch_size {args.batch_size}; large: precision {args.precision} {ran['large']}, "
        f"small: precision {small_precision} {ran['small']}" + capped + "; "
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
        if r["timed_queries"]:
            timing = f"{r['ms_p50']:.0f} | {r['ms_p95']:.0f} | {r['p50_vs_large']:.0%}"
        else:  # a fused small row: what the small model alone costs
            timing = "– | – | –"
        lines.append(
            f"| {r['candidates']} | {r['system']} | {r['nDCG@10']:.4f} | "
            f"{r['delta_vs_large']:+.4f} | {r['pairs_per_query']} | {timing} |"
        )
    agreement = {
        f"{d}/{k}" + (f"/{f}" if f else ""): statistics.fmean(v) if v else None
        for (d, k, f), v in agree.items()
    }
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
            "small_precision": small_precision,
            "small_max_windows": args.small_max_windows,
            "small_fusion": list(fusions),
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
        s.close()  # the cascades share these engines (none owns them)


if __name__ == "__main__":
    main()
