"""What the `crossrank` subcommands print is true: `eval` says where it wrote its files,
warns when reranking falls far below the first stage, takes the engine's precisions and
records what ran, parses `--candidates` strictly, and keeps its plot legend off the points;
`finetune --dry-run` runs no teacher and the time-budget progress bar's ETA is the budget's;
`rerank`'s "Before" lists the rows it announces."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from helpers import need
from rerank_core.cli import main

need("bm25s")
need("ir_measures")

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "models" / "crossrank-minilm-l6"
TEST_QUERIES = 6


@pytest.fixture(scope="module")
def tiny_beir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BEIR-layout folder from the bundled SciFact sample (6 test claims, 24 train)."""
    data = resources.files("rerank_core.data")
    docs = [json.loads(x) for x in data.joinpath("scifact_sample.jsonl").read_text().splitlines()]
    queries = [
        json.loads(x)
        for x in data.joinpath("scifact_sample_queries.jsonl").read_text().splitlines()
    ]
    root = tmp_path_factory.mktemp("beir") / "scifact-tiny"
    (root / "qrels").mkdir(parents=True)
    with (root / "corpus.jsonl").open("w") as f:
        for d in docs:
            f.write(json.dumps({"_id": d["id"], "title": d["title"], "text": d["text"]}) + "\n")
    with (root / "queries.jsonl").open("w") as f:
        for q in queries:
            f.write(json.dumps({"_id": q["id"], "text": q["text"]}) + "\n")
    for split, part in (("test", queries[:TEST_QUERIES]), ("train", queries[TEST_QUERIES:])):
        with (root / "qrels" / f"{split}.tsv").open("w") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for q in part:
                for doc in q["relevant"]:
                    f.write(f"{q['id']}\t{doc}\t1\n")
    return root


# ---------------------------------------------------------------- eval: arguments


def test_candidates_take_spaces_or_commas_and_reject_empty_depths(
    tiny_beir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for spelled in (["20", "50"], ["20,50"], ["50", "20,50"]):
        out = tmp_path / "r.json"
        code = main(
            ["eval", str(tiny_beir), "--bm25", "--first-stage-only", "--quiet",
             "--json", str(out), "--candidates", *spelled]
        )  # fmt: skip
        assert code == 0, spelled
        assert json.loads(out.read_text())["options"]["candidates"] == [20, 50]
    capsys.readouterr()
    for bad, message in (
        ("20,,50", "empty depth in '20,,50'"),
        ("20,", "empty depth"),
        ("x", "expected depths like"),
        ("0,5", "must be >= 1"),
    ):
        with pytest.raises(SystemExit) as exc:
            main(["eval", str(tiny_beir), "--first-stage-only", "--candidates", bad])
        assert exc.value.code == 2, bad
        assert message in capsys.readouterr().err, bad


def test_precision_takes_the_engines_choices_checked_per_backend_before_any_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "no-such-dataset")  # the backend check comes first
    with pytest.raises(SystemExit) as exc:
        main(["eval", missing, "--precision", "int4"])
    assert exc.value.code == 2 and "invalid choice: 'int4'" in capsys.readouterr().err
    assert main(["eval", missing, "--backend", "bge", "--precision", "bf16"]) == 2
    err = capsys.readouterr().err
    assert "precision must be one of" in err and "does not exist" not in err
    assert main(["eval", missing, "--backend", "cohere", "--precision", "int8"]) == 2
    assert "backend 'cohere' takes no option 'precision'" in capsys.readouterr().err
    # the first stage alone loads no model, so it checks no backend option
    assert main(["eval", missing, "--first-stage-only", "--precision", "int8"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_eval_says_where_it_wrote_each_file(
    tiny_beir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    js, md, runs = tmp_path / "out" / "r.json", tmp_path / "t.md", tmp_path / "runs"
    code = main(
        ["eval", str(tiny_beir), "--bm25", "--first-stage-only", "--quiet", "--json", str(js),
         "--markdown", str(md), "--save-runs", str(runs)]
    )  # fmt: skip
    assert code == 0
    err = capsys.readouterr().err
    assert f"crossrank eval: wrote JSON {js}\n" in err
    assert f"crossrank eval: wrote markdown {md}\n" in err
    assert f"crossrank eval: wrote TREC runs {runs}/\n" in err
    assert js.exists() and md.exists() and (runs / "first_stage.trec").exists()
    assert json.loads(js.read_text())["warnings"] == []


def test_quality_warnings_flag_a_reranker_far_below_the_first_stage() -> None:
    from crossrank_lab.commands.eval import quality_warnings

    def result(first: float, *reranked: tuple[int, float]) -> dict[str, Any]:
        return {
            "first_stage": {"metrics": {"ndcg@10": first}},
            "rerank": [{"candidates": n, "metrics": {"ndcg@10": v}} for n, v in reranked],
        }

    assert quality_warnings(result(0.68, (20, 0.70), (100, 0.64))) == []  # within 0.05
    warnings = quality_warnings(result(0.68, (20, 0.20), (50, 0.66)))
    assert len(warnings) == 1
    assert "top 20 gives nDCG@10 0.2000, far below the first stage's 0.6800" in warnings[0]
    assert "untrained or mismatched model?" in warnings[0]


# ---------------------------------------------------------------- eval: a real run


@pytest.mark.model
def test_eval_warns_loudly_and_records_what_ran(
    tiny_beir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An ideal first stage (judged-relevant first: nDCG@10 1.0) that any real reranker
    spoils: the warning is printed, kept in the JSON, and the JSON says what ran."""
    qrels: dict[str, list[str]] = {}
    for line in (tiny_beir / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        qid, doc, _ = line.split("\t")
        qrels.setdefault(qid, []).append(doc)
    corpus = [json.loads(x)["_id"] for x in (tiny_beir / "corpus.jsonl").read_text().splitlines()]
    run = tmp_path / "ideal.trec"
    with run.open("w") as f:
        for qid, rel in qrels.items():
            ranked = rel + [d for d in corpus if d not in rel][: 20 - len(rel)]
            for rank, doc in enumerate(ranked, 1):
                f.write(f"{qid} Q0 {doc} {rank} {100 - rank} ideal\n")
    out, plot = tmp_path / "r.json", tmp_path / "knee.png"
    code = main(
        ["eval", str(tiny_beir), "--run", str(run), "--model", str(BUNDLED), "--precision",
         "exact", "--candidates", "20", "--json", str(out), "--plot", str(plot), "--quiet"]
    )  # fmt: skip
    assert code == 0
    err = capsys.readouterr().err
    result = json.loads(out.read_text())
    assert result["first_stage"]["metrics"]["ndcg@10"] == pytest.approx(1.0)
    assert result["rerank"][0]["metrics"]["ndcg@10"] < 0.95
    assert len(result["warnings"]) == 1
    assert "crossrank eval: WARNING: reranking the top 20 gives nDCG@10" in err
    assert "untrained or mismatched model?" in err
    # what ran, from the backend's describe(): exact is fp32, on ONNX Runtime or torch
    model = result["model"]
    assert model["precision_requested"] == "exact"
    assert model["precision"] == "fp32" and model["runtime"] in ("onnx", "torch")
    assert f"ran: runtime {model['runtime']}, precision fp32" in err
    assert f"crossrank eval: wrote plot {plot}" in err


CORNERS = [(10, 0.40, 10.0), (20, 0.70, 900.0), (50, 0.41, 20.0), (100, 0.69, 1000.0)]


def test_knee_plot_legend_sits_outside_the_axes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    need("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from crossrank_lab.quality.report import plot_knee

    figures: list[Any] = []
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figure to measure it
    result = {
        "dataset": "tiny",
        "first_stage": {"name": "BM25", "metrics": {"ndcg@10": 0.50}},
        # points in every corner of the axes, where an inside legend would cover one
        "rerank": [
            {"candidates": n, "metrics": {"ndcg@10": q}, "latency_ms": {"p50": ms}}
            for n, q, ms in CORNERS
        ],
        "model": {"model": "m", "runtime": "onnx", "precision": "int8"},
    }
    path = tmp_path / "knee.png"
    plot_knee(result, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (fig,) = figures
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes = fig.axes[0]
    legend = axes.get_legend()
    assert legend is not None
    box, area = legend.get_window_extent(renderer), axes.get_window_extent(renderer)
    assert not box.overlaps(area), (box, area)
    assert "onnx int8" in axes.get_title()  # the title says what ran
    plt.close(fig)


# ---------------------------------------------------------------- finetune


def test_finetune_dry_run_builds_the_lists_without_the_teacher(
    tiny_beir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    code = main(
        ["finetune", "--train", f"{tiny_beir}:train", "--output", str(out), "--dry-run",
         "--group-size", "4", "--depth", "8", "--teacher", "dense=0.7,bm25=0.3",
         # a teacher that cannot load: were it run, the command would fail
         "--teacher-model", str(tmp_path / "no-such-bi-encoder"), "--quiet"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    shown = json.loads(capsys.readouterr().out)
    assert shown["lists"] == 24 and len(shown["example"]["docs"]) == 4
    assert "not run: --dry-run" in shown["teacher"] and "targets" not in shown["example"]
    assert not out.exists()


def test_projected_end_is_the_budget_unless_the_steps_run_out_first() -> None:
    from crossrank_lab.quality.trainer import projected_seconds

    assert projected_seconds(0.0, 0, 5000, 180.0) == 180.0  # no pace yet: the budget
    assert projected_seconds(10.0, 10, 5000, 180.0) == 180.0  # 5000 steps would take 5000 s
    assert projected_seconds(10.0, 100, 200, 180.0) == pytest.approx(20.0)  # steps end first


@pytest.mark.model
def test_finetune_progress_bar_counts_the_time_budget(
    tiny_beir: Path, tmp_path: Path, minilm_bi_encoder_path: Path
) -> None:
    """--max-minutes 0.05 with 10,000 steps allowed: the bar's total is the 3-second budget,
    not the 10,000 steps (whose ETA would be hours)."""
    out = tmp_path / "bce"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "rerank_core.cli", "finetune", "--train", f"{tiny_beir}:train",
         "--output", str(out), "--loss", "bce", "--max-steps", "10000", "--max-minutes", "0.05",
         "--batch-size", "4", "--group-size", "3", "--depth", "6", "--max-length", "64",
         "--precision", "fp32", "--base-model", str(minilm_bi_encoder_path)],
        capture_output=True, text=True, env=env, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    bars = re.findall(r"training \(time budget\):.*?(\d+)/(\d+)s \[", done.stderr)
    assert bars, done.stderr[-2000:]
    assert all(int(total) <= 3 for _, total in bars)
    assert "/10000" in done.stderr  # the steps are shown beside it, as steps
    record = json.loads((out / "crossrank_training.json").read_text())
    assert record["stopped_by_time_budget"]


# ---------------------------------------------------------------- rerank


@pytest.mark.model
def test_rerank_before_lists_every_row_it_announces(tmp_path: Path) -> None:
    passages = tmp_path / "p.jsonl"
    passages.write_text(
        "\n".join(
            json.dumps({"id": str(i), "text": t})
            for i, t in enumerate(
                ["Scurvy is caused by a lack of vitamin C.", "The Eiffel Tower is in Paris.",
                 "Lemons prevent scurvy on long voyages."]
            )
        ),
        encoding="utf-8",
    )  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "rerank_core.cli", "rerank", "--model", str(BUNDLED),
         "--passages", str(passages), "--query", "what causes scurvy", "--candidates", "20"],
        capture_output=True, text=True, env=env, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # 20 asked, 3 exist: it says 3 and lists 3
    assert "Before: BM25 top 3\n" in done.stdout
    before = done.stdout.split("Before:")[1].split("After:")[0].strip().splitlines()[1:]
    assert len(before) == 3
