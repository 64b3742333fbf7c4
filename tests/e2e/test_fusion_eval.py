"""``crossrank eval --fusion`` (issue 16): the weight is chosen on dev, never on test; the
fused runs come from the engine's own fuse_scores; bad options fail before any model."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from crossrank_lab.commands.eval_fusion import parse_dev, parse_weights
from crossrank_lab.quality.fusion_eval import choose_weight, fused_run
from rerank_core import ConfigError, Fusion


def test_parse_weights() -> None:
    assert parse_weights("0.5,0,1") == [0.0, 0.5, 1.0]
    for bad in ("x", "1.5", "-0.1"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_weights(bad)


def test_parse_dev_split_or_folder(tmp_path: Path) -> None:
    assert parse_dev("train:200", tmp_path / "ds") == (tmp_path / "ds", "train", 200)
    assert parse_dev("train", tmp_path / "ds") == (tmp_path / "ds", "train", None)
    assert parse_dev(f"{tmp_path}:10", tmp_path / "ds") == (tmp_path, "test", 10)
    with pytest.raises(ConfigError, match="not a folder"):
        parse_dev(str(tmp_path / "missing") + "/", tmp_path)
    with pytest.raises(ConfigError, match="N must be"):
        parse_dev("train:0", tmp_path)


def test_choose_weight_best_then_smaller() -> None:
    assert choose_weight([(0.0, 0.5), (0.3, 0.7), (0.6, 0.7), (1.0, 0.6)]) == (0.3, 0.7)


def test_fused_run_reranks_top_n_then_keeps_first_stage_tail() -> None:
    scored = {"q": [("a", 3.0, 0.0), ("b", 2.0, 5.0), ("c", 1.0, 1.0)]}
    first = {"q": [("a", 3.0), ("b", 2.0), ("c", 1.0), ("d", 0.5)]}
    alone = fused_run(scored, first, 2, None)
    assert [d for d, _ in alone["q"]] == ["b", "a", "c", "d"]
    only_first = fused_run(scored, first, 3, Fusion.linear(1.0))
    assert [d for d, _ in only_first["q"]] == ["a", "b", "c", "d"]
    rrf = fused_run(scored, first, 3, Fusion.rrf())
    # a: ranks (3, 1); b: (1, 2); c: (2, 3)
    assert [d for d, _ in rrf["q"]] == ["b", "a", "c", "d"]


ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "models" / "crossrank-minilm-l6"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BEIR folder: 6 documents, 2 test and 2 train queries, one relevant doc each."""
    root = tmp_path_factory.mktemp("beir") / "tiny"
    (root / "qrels").mkdir(parents=True)
    docs = {
        "d0": "Scurvy is caused by a lack of vitamin C in the diet.",
        "d1": "The Eiffel Tower is a wrought-iron tower in Paris.",
        "d2": "Insulin regulates blood sugar and is made in the pancreas.",
        "d3": "Photosynthesis turns light into chemical energy in plants.",
        "d4": "Vitamin D is made in the skin under sunlight.",
        "d5": "Penicillin was discovered by Alexander Fleming in 1928.",
    }
    queries = {
        "q0": "what causes scurvy",
        "q1": "which organ makes insulin",
        "q2": "who discovered penicillin",
        "q3": "how do plants use light",
    }
    with (root / "corpus.jsonl").open("w") as f:
        for i, t in docs.items():
            f.write(json.dumps({"_id": i, "title": "", "text": t}) + "\n")
    with (root / "queries.jsonl").open("w") as f:
        for i, t in queries.items():
            f.write(json.dumps({"_id": i, "text": t}) + "\n")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq0\td0\t1\nq1\td2\t1\n")
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq2\td5\t1\nq3\td3\t1\n")
    return root


def _eval(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "rerank_core.cli", "eval", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=ROOT,
    )


def test_fusion_needs_a_dev_split_that_is_not_test(tiny: Path) -> None:
    out = _eval(str(tiny), "--fusion", "--bm25", "--candidates", "3")
    assert out.returncode == 2 and "--fusion-dev" in out.stderr
    out = _eval(str(tiny), "--fusion", "--bm25", "--fusion-dev", "test")
    assert out.returncode == 2 and "test split itself" in out.stderr


def test_fusion_study_end_to_end(tiny: Path, tmp_path: Path) -> None:
    js = tmp_path / "fusion.json"
    out = _eval(
        str(tiny), "--fusion", "--bm25", "--fusion-dev", "train", "--candidates", "3,6",
        "--depth", "6", "--model", str(BUNDLED), "--fusion-weights", "0,0.5,1",
        "--quiet", "--json", str(js),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "| top-N | first stage | reranker | RRF" in out.stdout
    study = json.loads(js.read_text())
    assert study["dev"]["label"].endswith(":train") and study["test"]["label"].endswith(":test")
    assert [r["candidates"] for r in study["depths"]] == [3, 6]
    for r in study["depths"]:
        assert r["chosen_weight"] in (0.0, 0.5, 1.0)
        assert [c["first_stage_weight"] for c in r["dev_curve"]] == [0.0, 0.5, 1.0]
        assert set(r["test"]) == {"first_stage", "reranker", "rrf", "linear"}
