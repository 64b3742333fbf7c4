"""The helpers that ``crossrank bench`` and the repository's ``benchmarks/`` share
(``crossrank_lab.bench.common``): inputs, peak memory, percentiles."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from crossrank_lab.bench.common import load_inputs, load_trec_dl, peak_rss_mb, percentile
from helpers import need
from rerank_core.errors import ConfigError


def test_bundled_inputs_without_data(monkeypatch: pytest.MonkeyPatch) -> None:
    need("bm25s", why="the eval extra")
    monkeypatch.delenv("CROSSRANK_DATA", raising=False)
    got = load_inputs(None, queries=2, candidates=5, callers=3, per_caller=2)
    assert got.source.startswith("bundled SciFact sample, BM25 top-5 of 2 claims")
    assert [len(ts) for _, ts in got.jobs] == [5, 5]
    assert [len(ts) for _, ts in got.callers] == [2, 2, 2]
    assert len(got.filler) == 281 and all(isinstance(t, str) and t for t in got.filler)


def test_bad_data_folders_are_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such folder"):
        load_inputs(tmp_path / "absent", 1, 1)
    with pytest.raises(ConfigError, match="not a TREC DL passage folder"):
        load_inputs(tmp_path, 1, 1)


@pytest.mark.data
def test_trec_dl_inputs_follow_the_run_file(shared_data: Path) -> None:
    folder = shared_data / "trec-dl-2019-passage"
    dataset, run = load_trec_dl(folder)
    assert len(run) == 43 and list(run) == list(dataset.queries)
    first_qid = (folder / "runs" / "bm25_top100.trec").read_text().split()[0]
    assert next(iter(run)) == first_qid  # the run file's query order, not queries.jsonl's
    got = load_inputs(folder, queries=3, candidates=100, callers=4, per_caller=20)
    assert got.jobs[0][0] == dataset.queries[first_qid]
    assert [len(ts) for _, ts in got.jobs] == [100, 100, 100]
    best = run[first_qid][0][0]
    assert got.jobs[0][1][0] == dataset.body(best)


def test_peak_rss_and_percentiles() -> None:
    assert 10 < peak_rss_mb() < 100_000
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([0.0, 10.0], 0.95) == pytest.approx(9.5)
    assert math.isnan(percentile([], 0.5))
