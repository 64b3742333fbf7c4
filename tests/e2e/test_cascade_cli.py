"""The command line for cascades: ``crossrank eval --cascade SPEC`` (checked before any data
is read or model loaded; a real run records each stage's pairs) and ``crossrank finetune
--layers N`` (a student cut to its first N layers, checked before the lists are built)."""

# ruff: noqa: E402, F401, F811  (tiny_beir is a fixture imported from test_cli_output)
from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import need

need("bm25s")
need("ir_measures")

from rerank_core import ConfigError, Reranker
from rerank_core.cli import main
from test_cli_output import BUNDLED, tiny_beir

# ---------------------------------------------------------------- eval --cascade


def test_eval_checks_the_cascade_before_any_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "no-such-dataset")
    cases = [
        ("minilm:model=a;minilm", "keep must be a positive int"),
        ("minilm:keep=3,modle=x;minilm", "modle"),
        ("nosuch:keep=3;minilm", "unknown backend 'nosuch'"),
    ]
    for spec, message in cases:
        assert main(["eval", missing, "--cascade", spec]) == 2
        err = capsys.readouterr().err
        assert message in err and "does not exist" not in err
    assert main(["eval", missing, "--cascade", "minilm:keep=3;minilm", "--model", "x"]) == 2
    assert "drop --model/--precision" in capsys.readouterr().err


@pytest.mark.model
def test_eval_runs_a_cascade_and_records_its_stages(
    tiny_beir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    spec = f"minilm:model={BUNDLED},keep=4;minilm:model={BUNDLED},batch_size=8"
    code = main(
        ["eval", str(tiny_beir), "--bm25", "--depth", "10", "--candidates", "10",
         "--cascade", spec, "--json", str(out), "--quiet"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "model: Cascade(0:" in err and "(keep=4) → 1:" in err
    result = json.loads(out.read_text())
    model = result["model"]
    assert model["backend"] == "cascade" and model["model"] == spec
    stages = model["cascade"]["stages"]
    # 6 test queries, and the sweep's warm-up call (2 texts)
    assert [s["texts"] for s in stages] == [10 * 6 + 2, 4 * 6 + 2]
    assert [s["kept"] for s in stages] == [4 * 6 + 2, 4 * 6 + 2]
    row = result["rerank"][0]
    assert 0 < row["pairs_scored"] < sum(s["pairs_scored"] for s in stages)
    assert 0.0 <= row["metrics"]["ndcg@10"] <= 1.0


def test_eval_checks_a_stage_fusion_before_any_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "no-such-dataset")
    for spec, message in [
        ("minilm:keep=3,fusion=bm25;minilm", "unknown fusion"),
        ("minilm:keep=3,fusion=linear:1.5;minilm", "weight in [0, 1]"),
    ]:
        assert main(["eval", missing, "--cascade", spec]) == 2
        err = capsys.readouterr().err
        assert message in err and "does not exist" not in err


@pytest.mark.model
def test_eval_passes_the_first_stage_scores_to_a_fusing_cascade(
    tiny_beir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from crossrank_lab.quality.data import load_beir, read_trec_run
    from rerank_core import Cascade

    out, runs = tmp_path / "r.json", tmp_path / "runs"
    spec = f"minilm:model={BUNDLED},keep=4,fusion=rrf;minilm:model={BUNDLED}"
    code = main(
        ["eval", str(tiny_beir), "--bm25", "--depth", "10", "--candidates", "10",
         "--cascade", spec, "--json", str(out), "--save-runs", str(runs), "--quiet"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    stages = json.loads(out.read_text())["model"]["cascade"]["stages"]
    assert [s["fusion"] for s in stages] == ["rrf", None]
    # each query's reranked head is the cascade's, given the BM25 run's own scores
    dataset = load_beir(tiny_beir, "test")
    first, reranked = (
        read_trec_run(runs / "first_stage.trec"),
        read_trec_run(runs / "rerank_top10.trec"),
    )
    with Cascade.from_spec(spec, cache=None) as c:
        for qid in list(dataset.queries)[:2]:
            top = first[qid][:10]
            ranked = c.rerank(
                dataset.queries[qid],
                [dataset.body(d) for d, _ in top],
                first_stage_scores=[s for _, s in top],
            )
            assert [d for d, _ in reranked[qid][:4]] == [top[r.index][0] for r in ranked[:4]]


# ---------------------------------------------------------------- finetune --layers


def test_keep_first_layers_cuts_a_bert_and_checks_the_count() -> None:
    need("transformers")
    from crossrank_lab.quality.trainer import TrainConfig, keep_first_layers
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=1,
    )
    model = BertForSequenceClassification(config)
    assert keep_first_layers(model, 2) == 4
    assert len(model.bert.encoder.layer) == 2 and model.config.num_hidden_layers == 2
    import torch

    logits = model(input_ids=torch.tensor([[1, 5, 7, 2]])).logits
    assert logits.shape == (1, 1)
    with pytest.raises(ConfigError, match="between 1 and 2"):
        keep_first_layers(model, 3)
    with pytest.raises(ConfigError, match="cannot find the transformer layers"):
        keep_first_layers(torch.nn.Linear(2, 2), 1)
    with pytest.raises(ConfigError, match="layers must be >= 1"):
        TrainConfig(layers=0)


def test_finetune_checks_layers_before_building_lists(
    tiny_beir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    code = main(
        ["finetune", "--train", f"{tiny_beir}:train", "--output", str(out), "--dry-run",
         "--base-model", str(BUNDLED), "--layers", "7", "--quiet"]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "--layers must be between 1 and 6" in err and "lists of" not in err


@pytest.mark.model
def test_finetune_layers_writes_a_smaller_model_the_engine_loads(
    tiny_beir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "student"
    code = main(
        ["finetune", "--train", f"{tiny_beir}:train", "--output", str(out), "--loss", "bce",
         "--max-steps", "2", "--batch-size", "4", "--group-size", "3", "--depth", "6",
         "--max-length", "64", "--precision", "fp32", "--base-model", str(BUNDLED),
         "--layers", "2", "--quiet"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 2
    record = json.loads((out / "crossrank_training.json").read_text())
    assert record["layers"] == {"kept": 2, "of": 6} and record["config"]["layers"] == 2
    with Reranker("minilm", model=str(out), cache=None) as rr:
        ranked = rr.rerank("cells", ["cells divide", "stars shine"])
        assert len(ranked) == 2 and all(r.scored for r in ranked)
