"""Thread scaling: pairs/s of crossrank default, crossrank exact and sentence-transformers
``CrossEncoder.predict`` at several thread counts, on the same inputs, in one process.

``python -m benchmarks.threads --threads 1,2`` (the repository's wrapper; writes
``threads.md`` and ``threads.json`` to ``benchmarks/results``). Every (configuration,
threads) pair is its own scorer: crossrank with ``num_threads=N`` (its own ONNX Runtime
session of N intra-op threads), predict with ``torch.set_num_threads(N)`` set before each
call; the rounds interleave all of them per query (:func:`.speed.time_systems`), so a
noisy machine slows them alike. The speedup is pairs/s at the most threads over pairs/s
at the fewest. The 1-minute load average is recorded as in ``crossrank bench``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rerank_core.commands import positive_int
from rerank_core.errors import ConfigError, CrossrankError

from .common import (
    BUSY_WARNING,
    busy_machine,
    load_average,
    load_inputs,
    machine_facts,
    usable_cores,
)

__all__ = ["CONFIGS", "ScalingRow", "main", "parse_threads"]

CONFIGS = {
    "crossrank-default": "crossrank default, cache off",
    "crossrank-exact": "crossrank precision='exact' (fp32), cache off",
    "st-predict": "sentence-transformers CrossEncoder.predict",
}


def parse_threads(value: str) -> list[int]:
    """``"1,2"`` -> ``[1, 2]``: distinct counts >= 1, ascending."""
    try:
        counts = sorted({int(x) for x in value.split(",") if x.strip()})
    except ValueError:
        raise ConfigError(f"--threads: expected counts like 1,2; got {value!r}") from None
    if not counts or counts[0] < 1:
        raise ConfigError(f"--threads: counts must be >= 1; got {value!r}")
    return counts


@dataclass(slots=True)
class ScalingRow:
    name: str
    label: str
    pairs_per_s: dict[int, float]  # threads -> pairs/s (median over rounds)
    speedup: float  # pairs/s at the most threads / at the fewest


def _scorers(model: str, counts: list[int], configs: list[str]) -> dict[str, Any]:
    import torch
    from rerank_core import Reranker
    from sentence_transformers import CrossEncoder

    fns: dict[str, Any] = {}
    ce = CrossEncoder(model, device="cpu") if "st-predict" in configs else None
    for n in counts:
        for name in configs:
            key = f"{name}@{n}"
            if name == "st-predict":

                def predict(q: str, ts: list[str], n: int = n) -> Any:
                    torch.set_num_threads(n)
                    assert ce is not None
                    return ce.predict([(q, t) for t in ts], show_progress_bar=False)

                fns[key] = predict
            else:
                precision = "exact" if name == "crossrank-exact" else "auto"
                rr = Reranker("minilm", model=model, precision=precision, num_threads=n, cache=None)
                fns[key] = rr.rerank
    return fns


def render(report: dict[str, Any]) -> str:
    counts = report["threads"]
    lines = ["# Thread scaling", ""]
    if report["busy"]:
        lines += [
            f"> **WARNING: {BUSY_WARNING}.** 1-minute load average {report['load1_before']:.2f}"
            f" at the start, above 0.5 × {report['cores']} cores: on a busy machine the "
            "second thread finds no free core and the speedups below understate scaling.",
            "",
        ]
    m = report["machine"]
    lines += [
        f"- machine: {m['cpu']}, {m['cores']} cores usable; date {m['date']}",
        f"- 1-minute load average before/after: {report['load1_before']:.2f} / "
        f"{report['load1_after']:.2f}",
        f"- model: {report['model']}",
        f"- inputs: {report['inputs']}; {report['rounds']} interleaved rounds",
        f"- crossrank default resolves to: {report['default_plan']}",
        f"- command: `{report['command']}`",
        "",
        "| configuration | "
        + " | ".join(f"pairs/s @ {n} thread{'s' if n > 1 else ''}" for n in counts)
        + f" | speedup {counts[0]}→{counts[-1]} |",
        "|---|" + "---:|" * (len(counts) + 1),
    ]
    for r in report["rows"]:
        vals = " | ".join(f"{r['pairs_per_s'][str(n)]:,.1f}" for n in counts)
        lines.append(f"| {r['label']} | {vals} | {r['speedup']:.2f}× |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None, *, default_out: Path = Path("crossrank-bench")) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.threads", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--threads", default="1,2", help="thread counts, comma-separated (1,2)")
    p.add_argument(
        "--model", help="cross-encoder directory or hub id (default: as crossrank bench)"
    )
    p.add_argument("--data", type=Path, help="TREC DL passage folder (default: as crossrank bench)")
    p.add_argument("--queries", type=positive_int, default=1, help="queries (1)")
    p.add_argument("--candidates", type=positive_int, default=100, help="passages per query (100)")
    p.add_argument("--rounds", type=positive_int, default=3, help="interleaved rounds (3)")
    p.add_argument("--only", default=",".join(CONFIGS), help=f"subset of: {', '.join(CONFIGS)}")
    p.add_argument("--out", type=Path, default=default_out, help=f"output folder ({default_out})")
    args = p.parse_args(argv)
    try:
        return _run(args)
    except CrossrankError as exc:
        print(f"benchmarks.threads: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    counts = parse_threads(args.threads)
    configs = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown or not configs:
        raise ConfigError(f"--only: unknown configuration(s) {unknown}; known: {list(CONFIGS)}")
    cores = usable_cores()
    load1_before = load_average()
    busy = busy_machine(load1_before, cores)
    inputs = load_inputs(args.data, args.queries, args.candidates)
    if busy:
        print(
            f"WARNING: {BUSY_WARNING} (1-minute load average {load1_before:.2f} > 0.5 × "
            f"{cores} cores)",
            file=sys.stderr,
            flush=True,
        )
    if counts[-1] > cores:
        print(f"note: {counts[-1]} threads on {cores} usable cores", file=sys.stderr)
    from rerank_core import Reranker

    from .speed import resolve_model, time_systems

    model, model_desc = resolve_model(args.model)
    fns = _scorers(model, counts, configs)
    facts = Reranker("minilm", model=model, cache=None).describe()
    plan = f"runtime={facts.get('runtime')}, precision={facts.get('precision')}"
    print(f"timing {len(fns)} scorers, {args.rounds} rounds ...", flush=True)
    round_times, _ = time_systems(fns, inputs.jobs, args.rounds)
    pairs = sum(len(ts) for _, ts in inputs.jobs)
    rows: list[ScalingRow] = []
    for name in configs:
        rate = {n: pairs / statistics.median(round_times[f"{name}@{n}"]) for n in counts}
        rows.append(ScalingRow(name, CONFIGS[name], rate, rate[counts[-1]] / rate[counts[0]]))
    report: dict[str, Any] = {
        "machine": machine_facts(facts),
        "cores": cores,
        "load1_before": load1_before,
        "load1_after": load_average(),
        "busy": busy,
        "warning": BUSY_WARNING if busy else None,
        "threads": counts,
        "model": model_desc,
        "inputs": inputs.source,
        "rounds": args.rounds,
        "default_plan": plan,
        "command": " ".join(["python -m benchmarks.threads", *sys.argv[1:]]),
        "rows": [
            {**asdict(r), "pairs_per_s": {str(k): v for k, v in r.pairs_per_s.items()}}
            for r in rows
        ],
    }
    md = render(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "threads.md").write_text(md, encoding="utf-8")
    (args.out / "threads.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print()
    print(md)
    print(f"written: {args.out / 'threads.md'}, threads.json")
    return 0
