"""The cross-encoder teacher of ``crossrank finetune``: ``--teacher reranker=W`` with
``--teacher-reranker MODEL_DIR`` (a student distilled from a reranker's own scores, e.g. a
cascade's 2-layer first stage from the bundled 6-layer). Its raw logits, times W, are added
to the mix after the temperature; the pairing of the two options is checked before any
data is read or model loaded; the scores are the engine's and can be cached."""

# ruff: noqa: E402, F401, F811  (tiny_beir is a fixture imported from test_cli_output)
from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import need

need("bm25s")
need("ir_measures")

from crossrank_lab.quality.training import TeacherMix, build_lists, load_sources, score_lists
from rerank_core import ConfigError, Reranker, WindowConfig
from rerank_core.cli import main
from test_cli_output import BUNDLED, tiny_beir


def test_mix_parses_the_reranker_signal() -> None:
    mix = TeacherMix.parse("reranker=1,label=0.2,temperature=0.05")
    assert (mix.reranker, mix.label, mix.dense, mix.bm25) == (1.0, 0.2, 0.0, 0.0)
    assert TeacherMix.parse("reranker=0.5").reranker == 0.5
    with pytest.raises(ConfigError, match="reranker must be a number >= 0"):
        TeacherMix.parse("reranker=-1")
    with pytest.raises(ConfigError, match="use dense, bm25, label, reranker"):
        TeacherMix.parse("cross=1")
    with pytest.raises(ConfigError, match="at least one signal"):
        TeacherMix.parse("reranker=0")


def test_reranker_logits_are_added_after_the_temperature(tiny_beir: Path) -> None:
    lists = build_lists(load_sources([f"{tiny_beir}:train"]), group_size=3, depth=6, seed=2)[:6]
    before = [list(t.docs) for t in lists]
    calls: list[list[tuple[str, str]]] = []

    def rerank(pairs: list[tuple[str, str]]) -> list[float]:
        calls.append(list(pairs))
        return [len(d) % 7 - 3.5 for _, d in pairs]

    score_lists(
        lists, TeacherMix.parse("reranker=0.5,bm25=0.2,label=1,temperature=0.1"), rerank=rerank
    )
    assert len(calls) == 1  # one call; every distinct pair once
    pairs = calls[0]
    assert len(pairs) == len(set(pairs)) == len({(t.query, d) for t in lists for d in t.docs})
    for t, docs in zip(lists, before, strict=True):
        assert t.docs == docs  # nothing the caller passed is changed but the targets
        top = max(t.bm25)
        for d, b, g, target in zip(t.docs, t.bm25, t.grades, t.targets, strict=True):
            want = (0.2 * b / top + (g or 0)) / 0.1 + 0.5 * (len(d) % 7 - 3.5)
            assert target == pytest.approx(want, rel=1e-6)
    # reranker=1 alone: the targets are the teacher's raw scores (softmax(targets) = its own)
    score_lists(lists, TeacherMix.parse("reranker=1"), rerank=rerank)
    assert lists[0].targets == [len(d) % 7 - 3.5 for d in lists[0].docs]
    with pytest.raises(ConfigError, match="needs a cross-encoder"):
        score_lists(lists, TeacherMix.parse("reranker=1"))
    with pytest.raises(ConfigError, match="one finite score per pair"):
        score_lists(lists, TeacherMix.parse("reranker=1"), rerank=lambda p: [float("nan")] * len(p))
    with pytest.raises(ConfigError, match="one finite score per pair"):
        score_lists(lists, TeacherMix.parse("reranker=1"), rerank=lambda p: [0.0])


def test_finetune_pairs_reranker_and_teacher_reranker_before_any_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "no-such-dataset")
    out = str(tmp_path / "m")
    assert main(["finetune", "--train", missing, "--output", out, "--teacher", "reranker=1"]) == 2
    err = capsys.readouterr().err
    assert "no --teacher-reranker MODEL_DIR" in err and "no-such-dataset" not in err
    code = main(
        ["finetune", "--train", missing, "--output", out, "--teacher", "dense=1",
         "--teacher-reranker", str(BUNDLED)]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "needs a 'reranker=W' weight" in err and "no-such-dataset" not in err


@pytest.mark.model
def test_teacher_scores_are_the_engines_and_are_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crossrank_lab.quality.teacher import cross_encoder, reranker_cache

    cache = reranker_cache(tmp_path / "teacher.npz")
    assert cache == tmp_path / "teacher.reranker.npz" and reranker_cache(None) is None
    pairs = [
        ("vitamin C and scurvy", "Scurvy is caused by a lack of vitamin C."),
        ("vitamin C and scurvy", "The Eiffel tower is in Paris."),
        ("cell division", "Mitosis divides one cell into two."),
        ("vitamin C and scurvy", "Scurvy is caused by a lack of vitamin C."),  # a repeat
    ]
    score = cross_encoder(str(BUNDLED), cache=cache, threads=1)
    got = score(pairs)
    with Reranker("minilm", model=str(BUNDLED), cache=None, num_threads=1) as rr:
        want = rr.score("vitamin C and scurvy", [pairs[0][1], pairs[1][1]])
        want += rr.score("cell division", [pairs[2][1]])
    assert got[:3] == pytest.approx(want, abs=1e-5) and got[3] == got[0]
    assert got[0] > got[1]  # a trained reranker's logits
    assert cache.is_file()

    def refuse(*_a: object, **_k: object) -> list[float]:
        raise AssertionError("scored again despite the cache")

    # the student's view: one window of its --max-length (another cache key)
    long_doc = " ".join(["Scurvy is caused by a lack of vitamin C in the diet."] * 30)
    short = cross_encoder(str(BUNDLED), cache=cache, threads=1, max_length=48, max_windows=1)
    cut = short([("vitamin C and scurvy", long_doc)])
    window = WindowConfig(max_windows=1)
    with Reranker("minilm", model=str(BUNDLED), cache=None, max_length=48, window=window) as rr:
        assert cut == pytest.approx(rr.score("vitamin C and scurvy", [long_doc]), abs=1e-5)
    with Reranker("minilm", model=str(BUNDLED), cache=None) as rr:
        assert rr.score("vitamin C and scurvy", [long_doc]) != pytest.approx(cut, abs=1e-3)

    monkeypatch.setattr(Reranker, "score", refuse)
    again = cross_encoder(str(BUNDLED), cache=cache, threads=1)
    assert again(pairs) == got
    assert short([("vitamin C and scurvy", long_doc)]) == cut


@pytest.mark.model
def test_finetune_distils_a_student_from_a_reranker(
    tiny_beir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "student"
    code = main(
        ["finetune", "--train", f"{tiny_beir}:train", "--output", str(out), "--max-steps", "2",
         "--batch-size", "2", "--group-size", "3", "--depth", "6", "--max-length", "64",
         "--precision", "fp32", "--base-model", str(BUNDLED), "--layers", "2",
         "--teacher", "reranker=1", "--teacher-reranker", str(BUNDLED),
         "--teacher-cache", str(tmp_path / "t.npz"), "--threads", "1", "--quiet"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "crossrank_training.json").read_text())
    assert record["teacher"]["reranker"] == str(BUNDLED)
    assert "reranker=1.0" in record["teacher"]["mix"] and record["steps"] == 2
    assert (tmp_path / "t.reranker.npz").is_file() and not (tmp_path / "t.npz").exists()
