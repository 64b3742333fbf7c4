"""Markdown tables and the knee plot of an evaluation result (as ``crossrank eval`` writes it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["markdown_table", "plot_knee"]

_LABELS = {
    "ndcg@10": "nDCG@10",
    "mrr@10": "MRR@10",
    "recall@10": "R@10",
    "recall@100": "R@100",
    "map@100": "MAP@100",
    "judged@10": "judged@10",
}


def _label(name: str) -> str:
    return _LABELS.get(name, name)


def markdown_table(result: Mapping[str, Any], metrics: Sequence[str] | None = None) -> str:
    """The first stage and each reranking depth N as a markdown table."""
    first = result["first_stage"]
    names = list(metrics or first["metrics"])
    head = ["ranking", *(_label(m) for m in names), "ms/query (p50)", "ms/query (p95)", "pairs/s"]
    rows = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|",
    ]
    cells = [first["name"], *(f"{first['metrics'][m]:.4f}" for m in names), "—", "—", "—"]
    rows.append("| " + " | ".join(cells) + " |")
    for r in result["rerank"]:
        lat = r["latency_ms"]
        cells = [
            f"+ rerank top-{r['candidates']}",
            *(f"{r['metrics'][m]:.4f}" for m in names),
            f"{lat['p50']:.0f}",
            f"{lat['p95']:.0f}",
            f"{r['pairs_per_s']:.0f}",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def plot_knee(result: Mapping[str, Any], path: str | Path, *, metric: str = "ndcg@10") -> None:
    """nDCG@10 (left axis) and median latency per query (right axis) against N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rr = sorted(result["rerank"], key=lambda r: r["candidates"])
    ns = [r["candidates"] for r in rr]
    quality = [r["metrics"][metric] for r in rr]
    latency = [r["latency_ms"]["p50"] for r in rr]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    ax.plot(ns, quality, "o-", color="tab:blue", label=f"{_label(metric)} after reranking")
    base = result["first_stage"]["metrics"][metric]
    ax.axhline(base, color="tab:blue", ls=":", lw=1, label=f"{result['first_stage']['name']} alone")
    lo, hi = min(base, *quality), max(base, *quality)
    pad = max(0.01, 0.08 * (hi - lo))
    ax.set_ylim(lo - pad, hi + pad)
    for n, q in zip(ns, quality, strict=True):
        ax.annotate(f"{q:.3f}", (n, q), textcoords="offset points", xytext=(0, 6), ha="center",
                    fontsize=7, color="tab:blue")  # fmt: skip
    ax.set_xlabel("candidates reranked (N)")
    ax.set_ylabel(_label(metric), color="tab:blue")
    ax.set_xscale("log")
    ax.set_xticks(ns)
    ax.set_xticklabels([str(n) for n in ns])
    ax.minorticks_off()
    ax2 = ax.twinx()
    ax2.plot(ns, latency, "s--", color="tab:red", label="latency per query (p50)")
    ax2.set_ylabel("ms per query (p50)", color="tab:red")
    ax2.set_ylim(bottom=0)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    # below the axes, never over a point
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper center",
              bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=8, frameon=False)  # fmt: skip
    model = Path(str(result.get("model", {}).get("model") or "")).name or "model"
    where = str(result.get("device", "cpu"))
    ran = result.get("model", {})
    if ran.get("runtime") or ran.get("precision") not in (None, "default"):
        where += ", " + " ".join(str(ran[k]) for k in ("runtime", "precision") if ran.get(k))
    if result.get("torch_threads"):
        where += f", {result['torch_threads']} thread(s)"
    ax.set_title(f"{result['dataset']}: {model}, {where}", fontsize=9)
    fig.tight_layout()
    fig.savefig(str(path), bbox_inches="tight")  # the figure grows to hold the legend
    plt.close(fig)
