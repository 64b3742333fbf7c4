"""IR metrics through ``ir-measures`` (its pytrec_eval provider gives trec_eval's numbers).

nDCG uses the graded judgments with trec_eval's linear gain; the binary metrics
(MRR, recall, MAP) count a document relevant from grade ``rel_level`` up (TREC DL: 2).
Means are over every judged query of the dataset: a query the run does not answer
counts 0, as ``trec_eval -c`` does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rerank_core.errors import ConfigError

from .._support import require
from .data import Qrels, Run

__all__ = ["DEFAULT_METRICS", "evaluate_run", "measure", "per_query"]

DEFAULT_METRICS: tuple[str, ...] = (
    "ndcg@10",
    "mrr@10",
    "recall@10",
    "recall@100",
    "map@100",
    "judged@10",
)


def measure(name: str, rel_level: int) -> Any:
    """The ir-measures measure for a usual metric name (``ndcg@10``, ``mrr@10``, ``recall@100``,
    ``map@100``, ``precision@5``, ``judged@10``)."""
    ir_measures = require("ir_measures", extra="eval", package="ir-measures", purpose="metrics")
    kind, sep, cut = name.lower().partition("@")
    if not sep or not cut.isdigit() or int(cut) < 1:
        raise ConfigError(f"metric {name!r} must look like 'ndcg@10'")
    k = int(cut)
    table: dict[str, Any] = {
        "ndcg": ir_measures.nDCG @ k,
        "mrr": ir_measures.RR(rel=rel_level) @ k,
        "recall": ir_measures.R(rel=rel_level) @ k,
        "map": ir_measures.AP(rel=rel_level) @ k,
        "precision": ir_measures.P(rel=rel_level) @ k,
        "judged": ir_measures.Judged @ k,
    }
    if kind not in table:
        raise ConfigError(f"unknown metric {name!r}; known: {', '.join(sorted(table))} @k")
    return table[kind]


def _as_ir_run(run: Mapping[str, Sequence[tuple[str, float]]]) -> dict[str, dict[str, float]]:
    """A run for trec_eval: strictly decreasing scores in the given order, so that
    trec_eval's own tie-breaking can never reorder a ranking."""
    out: dict[str, dict[str, float]] = {}
    for qid, docs in run.items():
        n = len(docs)
        out[qid] = {doc: float(n - i) for i, (doc, _) in enumerate(docs)}
    return out


def per_query(
    qrels: Qrels,
    run: Run,
    *,
    rel_level: int,
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> dict[str, dict[str, float]]:
    """metric name → {query id: value} for every judged query (0 where the run is silent)."""
    import ir_measures

    measures = {name: measure(name, rel_level) for name in metrics}
    by_measure = {m: name for name, m in measures.items()}
    values: dict[str, dict[str, float]] = {name: dict.fromkeys(qrels, 0.0) for name in metrics}
    ir_run = {q: d for q, d in _as_ir_run(run).items() if q in qrels and d}
    for m in ir_measures.iter_calc(list(measures.values()), qrels, ir_run):
        values[by_measure[m.measure]][m.query_id] = float(m.value)
    return values


def evaluate_run(
    qrels: Qrels,
    run: Run,
    *,
    rel_level: int,
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> dict[str, float]:
    """Mean of each metric over the judged queries, under its usual name."""
    if not qrels:
        raise ConfigError("no judged queries to evaluate")
    values = per_query(qrels, run, rel_level=rel_level, metrics=metrics)
    return {name: sum(v.values()) / len(v) for name, v in values.items()}
