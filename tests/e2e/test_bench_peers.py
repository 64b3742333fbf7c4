"""The ONNX peer rows of ``crossrank bench`` (``crossrank_lab.bench.peers``), the ranking
agreement figures every row reports (``crossrank_lab.bench.agreement``), the busy-machine
warning, and the thread-scaling report (``crossrank_lab.bench.threads``).

Tolerances:

- fastembed runs the fp32 export of the very weights ``CrossEncoder.predict`` runs, with
  the same tokenization: only kernel and summation order differ, which moves fp32 logits
  by ~1e-7 (4e-8 measured); 1e-4 leaves room for other CPUs' kernels while staying two
  orders below what any quantization does (the stock int8 graph moves these logits by
  ~1e-2 on the untrained head, ~0.4 on a trained one).
- FlashRank runs the stock per-tensor int8 graph, whose error is that size: it is
  checked at the rank level, on a trained model (``models/crossrank-minilm-l6``) and
  three passages whose fp32 logits are 3.4 apart (an untrained head's logits all sit
  within ~0.03 of each other, below the int8 error, so their order means nothing).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import need

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "models" / "crossrank-minilm-l6"
QUERY = "what causes scurvy"
PASSAGES = [
    "Scurvy is a disease caused by a lack of vitamin C in the diet.",
    "Scurvy was common among sailors on long sea voyages.",
    "The stock market closed higher on Tuesday after strong earnings.",
]


def _logits(model: str | Path, query: str, passages: list[str]) -> list[float]:
    import torch
    from sentence_transformers import CrossEncoder

    ce = CrossEncoder(str(model), device="cpu")
    out = ce.predict(
        [(query, p) for p in passages], activation_fn=torch.nn.Identity(), show_progress_bar=False
    )
    return [float(x) for x in out]


@pytest.fixture(scope="session")
def peer_cache(tmp_path_factory: pytest.TempPathFactory, minilm_path: Path) -> Iterator[Path]:
    """A bench cache (``CROSSRANK_CACHE_DIR``) holding the peers' export of ``minilm_path``."""
    need("fastembed", why="the dev group")
    need("flashrank", why="the dev group")
    need("onnxruntime", why="the fast extra")
    from crossrank_lab.bench.peers import export_peer_models

    cache = tmp_path_factory.mktemp("bench-cache")
    old = os.environ.get("CROSSRANK_CACHE_DIR")
    os.environ["CROSSRANK_CACHE_DIR"] = str(cache)
    try:
        export_peer_models(str(minilm_path))
    finally:
        if old is None:
            del os.environ["CROSSRANK_CACHE_DIR"]
        else:
            os.environ["CROSSRANK_CACHE_DIR"] = old
    yield cache


def test_peer_folders_load_in_fastembed_and_flashrank(
    peer_cache: Path, minilm_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crossrank_lab.bench.peers import (
        FASTEMBED_FILE,
        export_peer_models,
        fastembed_scorer,
        flashrank_scorer,
    )

    monkeypatch.setenv("CROSSRANK_CACHE_DIR", str(peer_cache))
    peers = export_peer_models(str(minilm_path))
    assert peers.root.parent == peer_cache / "bench" / "peers"  # under the bench's cache
    onnx_file = peers.fastembed_dir / FASTEMBED_FILE
    stamp = onnx_file.stat().st_mtime_ns
    assert export_peer_models(str(minilm_path)) == peers  # reused, not exported again
    assert onnx_file.stat().st_mtime_ns == stamp
    # each library's layout: fastembed's onnx/model.onnx, FlashRank's flashrank-<name>_Q.onnx
    assert peers.flashrank_path.name == f"flashrank-{peers.flashrank_name}_Q.onnx"
    for folder in (peers.fastembed_dir, peers.flashrank_path.parent):
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            assert (folder / name).is_file()
        config = json.loads((folder / "tokenizer_config.json").read_text())
        assert config["model_max_length"] == config["max_length"] == peers.max_length == 512
    assert peers.flashrank_path.stat().st_size < onnx_file.stat().st_size / 3  # int8 weights

    ref = _logits(minilm_path, QUERY, [*PASSAGES, "word " * 700])  # the last one is cut
    fe = fastembed_scorer(peers, threads=1)(QUERY, [*PASSAGES, "word " * 700])
    assert fe == pytest.approx(ref, abs=1e-4)
    fr = flashrank_scorer(peers, threads=1)(QUERY, PASSAGES)
    assert len(fr) == 3 and all(0.0 < s < 1.0 for s in fr)  # FlashRank's sigmoid


def test_flashrank_int8_ranks_a_trained_model_like_fp32(tmp_path: Path) -> None:
    need("flashrank", why="the dev group")
    need("onnxruntime", why="the fast extra")
    from crossrank_lab.bench.peers import export_peer_models, flashrank_scorer

    peers = export_peer_models(str(BUNDLED), tmp_path / "peers")
    ref = _logits(BUNDLED, QUERY, PASSAGES)
    assert ref[0] - ref[1] > 2 and ref[1] - ref[2] > 2  # margins far above the int8 error
    got = flashrank_scorer(peers)(QUERY, PASSAGES)
    assert sorted(range(3), key=lambda i: -got[i]) == [0, 1, 2]
    as_logits = [math.log(p / (1 - p)) for p in got]
    assert as_logits == pytest.approx(ref, abs=1.0)  # int8, per-tensor: ~0.4 measured


def test_every_row_reduces_to_a_ranking_with_its_fidelity(
    peer_cache: Path, minilm_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each peer's own output (scores, sorted nodes, sorted documents, RerankResults)
    becomes the candidates' order; fp32 rows agree with predict exactly."""
    from crossrank_lab.bench import speed

    monkeypatch.setenv("CROSSRANK_CACHE_DIR", str(peer_cache))
    names = ["st-predict", "fastembed", "flashrank", "crossrank-exact"]
    names += [n for n in ("llamaindex", "langchain") if speed.peer_problem(n) is None]
    fns = {n: speed.build(n, str(minilm_path), threads=1) for n in names}
    jobs = [(QUERY, [*PASSAGES, "Vitamin C is found in oranges.", "Lemons are sour."])]
    judged = [("q1", ["d0", "d1", "d2", "d3", "d4"])]
    qrels = {"q1": {"d0": 3, "d3": 1}}
    refs = speed.reference_logits(str(minilm_path), jobs)
    got = speed.rank_fidelity(fns, refs, jobs, judged, qrels)
    for n in names:
        if n != "flashrank":  # fp32 rows: the same order as predict
            assert got[n].tau == pytest.approx(1.0) and got[n].top10_overlap == 1.0, n
            assert got[n].ndcg10 == pytest.approx(got["reference"].ndcg10), n
        assert -1.0 <= got[n].tau <= 1.0 and 0.0 <= got[n].ndcg10 <= 1.0
    diffs = speed.fidelity(fns, refs, jobs)
    assert set(diffs) == {"fastembed", "crossrank-exact"}  # the rows that return logits
    assert max(diffs.values()) < 1e-4


# ---------------------------------------------------------------------- agreement


def test_kendall_tau_and_top_k_overlap() -> None:
    from crossrank_lab.bench.agreement import (
        agreement,
        kendall_tau,
        ranking_from_scores,
        top_k_overlap,
    )

    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # one discordant pair of six: (5 - 1) / 6
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))  # a constant list has no order
    with pytest.raises(ValueError, match="same length"):
        kendall_tau([1, 2], [1, 2, 3])
    stats = need("scipy.stats", why="sentence-transformers' dependency")
    x = [0.3, 0.1, 0.1, 0.9, 0.5, 0.5, 0.2]
    y = [1.0, 0.0, 0.5, 3.0, 2.0, 1.0, 1.0]
    assert kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).statistic)  # tau-b, ties

    assert ranking_from_scores([0.2, 0.9, 0.2, 0.5]) == [1, 3, 0, 2]  # ties: input order
    assert top_k_overlap([0, 1, 2], [2, 1, 0], k=10) == 1.0  # same set, any order
    assert top_k_overlap(list(range(20)), [*range(5), *range(10, 25)], k=10) == 0.5

    refs = [[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]]
    same = agreement(refs, [[0, 1, 2, 3], [3, 2, 1, 0]])
    assert same.tau == pytest.approx(1.0) and same.top10_overlap == 1.0 and same.queries == 2
    flipped = agreement(refs, [[3, 2, 1, 0], [3, 2, 1, 0]])
    assert flipped.tau == pytest.approx(0.0)  # -1 and +1
    with pytest.raises(ValueError, match="exactly once"):
        agreement(refs[:1], [[0, 0, 1, 2]])


def test_ndcg_at_10_of_rankings() -> None:
    need("ir_measures", why="the eval extra")
    from crossrank_lab.bench.agreement import ndcg_at_10

    judged = [("q1", ["a", "b", "c"])]
    qrels = {"q1": {"a": 0, "b": 2, "c": 1}, "q9": {"x": 1}}  # q9: not in the run, ignored
    assert ndcg_at_10(qrels, judged, [[1, 2, 0]]) == pytest.approx(1.0)
    worst = ndcg_at_10(qrels, judged, [[0, 2, 1]])
    ideal = 2 / math.log2(2) + 1 / math.log2(3)  # trec_eval's gains: the grades
    assert worst == pytest.approx((1 / math.log2(3) + 2 / math.log2(4)) / ideal)


# ---------------------------------------------------------------------- load average


def test_busy_machine_threshold() -> None:
    from crossrank_lab.bench.common import BUSY_WARNING, busy_machine, load_average

    assert BUSY_WARNING == "busy machine: ratios flatter single-threaded runtimes"
    assert busy_machine(1.01, 2) and busy_machine(4.5, 8)
    assert not busy_machine(1.0, 2) and not busy_machine(0.0, 16)  # exactly half: quiet
    assert not busy_machine(math.nan, 2)  # no load average on this platform
    with pytest.raises(ValueError, match="cores"):
        busy_machine(1.0, 0)
    assert load_average() >= 0.0 or math.isnan(load_average())


def _report(busy: bool) -> dict[str, Any]:
    machine = {"cpu": "cpu", "cores": 2, "flags": "avx2", "versions": {}, "date": "today"}
    return {
        "machine": machine,
        "busy": busy,
        "load1_before": 3.5 if busy else 0.2,
        "cores": 2,
        "load_before": "3.50 1.00 0.50",
        "load_after": "3.00 1.00 0.50",
        "model": "m",
        "inputs": "i",
        "mean_tokens": 90.0,
        "default_plan": "p",
        "threads": None,
        "command": "crossrank bench",
        "fidelity_queries": 1,
        "reference_ndcg10": 0.5,
        "rows": [
            {
                "name": "fastembed",
                "label": "fastembed TextCrossEncoder (ONNX fp32 export)",
                "pairs_per_s": 10.0,
                "p50_ms": 1.0,
                "p95_ms": 2.0,
                "ratio": 1.2,
                "peak_rss_mb": math.nan,
                "max_abs_diff": 4e-8,
                "tau": 0.95,
                "top10_overlap": 0.9,
                "ndcg10": 0.5,
            }
        ],
    }


def test_the_report_marks_a_busy_machine() -> None:
    from crossrank_lab.bench.speed import render_markdown

    busy = render_markdown(_report(busy=True))
    assert "WARNING: busy machine: ratios flatter single-threaded runtimes" in busy
    assert "3.50 at the start, above 0.5 × 2 cores" in busy
    assert "| 0.950 | 0.900 | 0.5000 |" in busy  # τ, top-10 overlap, nDCG@10
    quiet = render_markdown(_report(busy=False))
    assert "WARNING" not in quiet and "(quiet:" in quiet


def test_thread_counts_and_scaling_report() -> None:
    from crossrank_lab.bench.threads import parse_threads, render
    from rerank_core.errors import ConfigError

    assert parse_threads("2,1,2") == [1, 2]
    for bad in ("", "0,1", "one"):
        with pytest.raises(ConfigError, match="--threads"):
            parse_threads(bad)
    report = {
        "threads": [1, 2],
        "busy": True,
        "load1_before": 1.5,
        "load1_after": 1.4,
        "cores": 2,
        "machine": {"cpu": "cpu", "cores": 2, "date": "today"},
        "model": "m",
        "inputs": "i",
        "rounds": 3,
        "default_plan": "p",
        "command": "python -m benchmarks.threads",
        "rows": [
            {
                "name": "st-predict",
                "label": "predict",
                "pairs_per_s": {"1": 40.0, "2": 70.0},
                "speedup": 1.75,
            }
        ],
    }
    md = render(report)
    assert "| predict | 40.0 | 70.0 | 1.75× |" in md and "speedup 1→2" in md
    assert "WARNING: busy machine" in md
