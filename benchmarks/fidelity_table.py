"""One summary table from several ``benchmarks.fidelity`` result files.

    python -m benchmarks.fidelity_table benchmarks/results/fidelity/*.json

Prints, per model: fp32 nDCG@10, the guard's choice and, for every variant measured, the
probe figures, pass/fail against today's bar (``DEFAULT_BAR``, not the one of the run) and
the DL19 difference to fp32 (markdown). A model measured in several runs is merged.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rerank_core.backends.runtime.fidelity import DEFAULT_BAR, Figures
from rerank_core.backends.runtime.onnx_export import VARIANTS


def main(argv: list[str] | None = None) -> int:
    files = [Path(a) for a in (argv if argv is not None else sys.argv[1:])]
    rows = [
        "| model | fp32 DL19 nDCG@10 | variant | probe τ | probe top-3 | probe err/spread p95 "
        "| long err/spread | guard | DL19 nDCG@10 | Δ fp32 | τ (100 docs) | top-10 |",
        "|---|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    choices = []
    merged: dict[str, dict[str, object]] = {}
    for f in files:
        for model, m in json.loads(f.read_text())["models"].items():
            into = merged.setdefault(model, {"fp32": m["fp32"], "variants": {}, "long": {}})
            for r in m["variants"]:
                into["variants"][r["variant"]] = r  # type: ignore[index]
            into["long"].update(m.get("long", {}))  # type: ignore[union-attr]
    order = [v.name for v in VARIANTS]
    for model, m in merged.items():
        name = Path(model).name
        fp32 = m["fp32"]["ndcg10"]  # type: ignore[index]
        passing = []
        for variant, r in m["variants"].items():  # type: ignore[union-attr]
            p = r["probe"]
            ok = not DEFAULT_BAR.failures(Figures(**p))
            if ok and variant in order:
                passing.append(variant)
            rows.append(
                f"| {name} | {fp32:.4f} | `{variant}` | "
                f"{p['tau_mean']:.3f} | {p['top3_overlap']:.3f} | {p['rel_err_p95']:.3f} | "
                f"{p['long_rel_err_max']:.3f} | {'pass' if ok else 'fail'} | "
                f"{r['ndcg10']:.4f} | {r['delta']:+.4f} | {r['tau']:.3f} | {r['top10']:.3f} |"
            )
        choice = min(passing, key=order.index) if passing else "fp32"
        long = ", ".join(f"{k} {v:.4f}" for k, v in m["long"].items())  # type: ignore[union-attr]
        choices.append(
            f"- {name}: the guard's choice **{choice}**; buried long documents "
            f"(chunk-max nDCG@10): {long or 'not measured'}"
        )
    print("\n".join([*rows, "", *choices]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
