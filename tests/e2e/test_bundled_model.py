"""The reranker the repository bundles, ``models/crossrank-minilm-l6``: stored compactly
(fp16 weights), computed in fp32, documented, and a real reranker — far better than chance
on the bundled SciFact sample, better than BM25 on TREC DL 2019 (top 20). On SciFact it
stays below BM25 (a known limitation of the recipe, kept visible as an xfail)."""

from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from helpers import need

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "models" / "crossrank-minilm-l6"


@pytest.fixture(scope="module")
def bundled() -> Path:
    """The bundled model; its absence from a checkout is a failure, not a skip."""
    from rerank_core.commands import _hub

    found = _hub.bundled_model()
    assert found is not None, f"{BUNDLED} is missing or incomplete"
    assert found.path == BUNDLED
    return BUNDLED


def test_it_is_stored_in_fp16_with_a_card(bundled: Path) -> None:
    from safetensors import safe_open

    weights = bundled / "model.safetensors"
    assert weights.stat().st_size < 60e6  # about 45 MB: fp16
    with safe_open(str(weights), "np") as f:
        dtypes = {str(f.get_slice(k).get_dtype()) for k in f.keys()}  # noqa: SIM118
    assert "F16" in dtypes and "F32" not in dtypes
    config = json.loads((bundled / "config.json").read_text())
    assert config["dtype"] == "float32"  # loaded back as fp32
    card = (bundled / "README.md").read_text()
    for needed in ("crossrank finetune", "SciFact", "CC BY", "TREC", "nDCG@10", "Apache-2.0"):
        assert needed in card, needed
    assert "non-commercial" in card  # MS MARCO's terms, said plainly
    summary = json.loads((bundled / "crossrank.json").read_text())["summary"]
    assert "DL19 nDCG@10" in summary


def test_the_wheel_config_leaves_it_out() -> None:
    """It lives in git but not in the wheel or sdist (the wheel itself is checked in
    test_wheel_install.py)."""
    import tomllib

    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    targets = build["targets"]
    assert not any(p.startswith("models") for p in targets["wheel"]["packages"])
    assert not any(p.startswith("models") for p in targets["sdist"]["include"])
    ignore = (ROOT / ".gitignore").read_text().splitlines()
    assert "/models/*" in ignore and "!/models/crossrank-minilm-l6/" in ignore


@pytest.mark.model
def test_it_computes_in_fp32(bundled: Path) -> None:
    from rerank_core.backends.cross_encoder import CrossEncoderBackend

    torch = need("torch")
    from sentence_transformers import CrossEncoder

    ce = CrossEncoder(str(bundled), device="cpu")
    assert {p.dtype for p in ce.model.parameters()} == {torch.float32}
    pairs = [
        ("what causes scurvy", "Scurvy is caused by a lack of vitamin C."),
        ("what causes scurvy", "The Eiffel Tower is in Paris."),
    ]
    ref = ce.predict(pairs, activation_fn=torch.nn.Identity())
    backend = CrossEncoderBackend(str(bundled), precision="exact")
    got = backend.score_pairs(pairs)
    assert got == pytest.approx([float(x) for x in ref], abs=1e-4)
    assert got[0] > got[1] + 1.0  # a trained score head, not noise


def _sample() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    data = resources.files("rerank_core.data")
    passages = [
        json.loads(x) for x in data.joinpath("scifact_sample.jsonl").read_text().splitlines()
    ]
    claims = [
        json.loads(x)
        for x in data.joinpath("scifact_sample_queries.jsonl").read_text().splitlines()
    ]
    return passages, claims


def _ndcg10(ranked_ids: list[str], relevant: set[str]) -> float:
    dcg = sum(1 / math.log2(i + 2) for i, d in enumerate(ranked_ids[:10]) if d in relevant)
    idcg = sum(1 / math.log2(i + 2) for i in range(min(10, len(relevant))))
    return dcg / idcg


def _rerank_sample(bundled: Path) -> tuple[float, float, float]:
    """The demo's setting for all 30 bundled claims: BM25 (bm25s) top 20 over the 281
    abstracts, reranked by the bundled model through the engine (its default speed path).
    Mean nDCG@10 on the claims' SciFact qrels of the BM25 order, the reranked order and a
    random order of the same candidates (the mean of 200 seeded shuffles)."""
    import random

    bm25s = need("bm25s")
    from rerank_core import Reranker

    passages, claims = _sample()
    texts = [f"{p['title']}. {p['text']}" if p.get("title") else p["text"] for p in passages]
    ids = [str(p["id"]) for p in passages]
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
    reranker = Reranker("minilm", model=str(bundled))
    rng = random.Random(0)
    before, after, chance = [], [], []
    for claim in claims:
        docs, _ = retriever.retrieve(
            bm25s.tokenize([claim["text"]], stopwords="en", show_progress=False),
            k=20,
            show_progress=False,
        )
        cand = [ids[int(d)] for d in docs[0]]
        relevant = {str(r) for r in claim["relevant"]}
        ranked = reranker.rerank(claim["text"], [texts[ids.index(c)] for c in cand])
        before.append(_ndcg10(cand, relevant))
        after.append(_ndcg10([cand[r.index] for r in ranked], relevant))
        chance.append(sum(_ndcg10(rng.sample(cand, len(cand)), relevant) for _ in range(200)) / 200)
    n = len(claims)
    result = sum(before) / n, sum(after) / n, sum(chance) / n
    print(
        f"SciFact sample, 30 claims, BM25 top-20, nDCG@10: BM25 {result[0]:.4f}, "
        f"reranked {result[1]:.4f}, random order {result[2]:.4f}"
    )
    return result


@pytest.fixture(scope="module")
def sample_ndcg(bundled: Path) -> tuple[float, float, float]:
    return _rerank_sample(bundled)


@pytest.mark.model
def test_it_ranks_the_bundled_scifact_sample_far_better_than_chance(
    sample_ndcg: tuple[float, float, float],
) -> None:
    """A trained score head, not noise: the judged-relevant abstracts rise well above where
    a random order of the same 20 candidates puts them."""
    _bm25, ours, chance = sample_ndcg
    assert ours > chance + 0.15


@pytest.mark.model
@pytest.mark.xfail(
    reason="known limitation of the recipe: on SciFact it ranks below BM25 (README Quality: "
    "0.637 against 0.676 on the test split), and the sample's BM25 is stronger still",
    strict=False,
)
def test_it_beats_bm25_on_the_bundled_scifact_sample(
    sample_ndcg: tuple[float, float, float],
) -> None:
    bm25, ours, _chance = sample_ndcg
    assert ours > bm25


@pytest.mark.model
@pytest.mark.data
def test_it_beats_bm25_on_trec_dl_2019(bundled: Path, shared_data: Path) -> None:
    """The standard protocol, shortened for a test: the official BM25 run's top 20 of the
    43 DL19 queries, reranked; nDCG@10 with graded gains (trec_eval's linear gain)."""
    import csv

    from rerank_core import Reranker

    root = shared_data / "trec-dl-2019-passage"
    queries = {q["_id"]: q["text"] for q in map(json.loads, (root / "queries.jsonl").open())}
    run: dict[str, list[str]] = {}
    for line in (root / "runs" / "bm25_top100.trec").open():
        qid, _, doc, *_ = line.split()
        if len(run.setdefault(qid, [])) < 20:
            run[qid].append(doc)
    qrels: dict[str, dict[str, int]] = {}
    with (root / "qrels" / "test.tsv").open() as f:
        for row in csv.DictReader(f, delimiter="\t"):
            qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = int(row["score"])
    wanted = {d for q in qrels for d in run.get(q, [])}
    corpus = {
        d["_id"]: d["text"]
        for d in map(json.loads, (root / "corpus.jsonl").open())
        if d["_id"] in wanted
    }
    reranker = Reranker("minilm", model=str(bundled))
    before, after = [], []
    for qid in (q for q in qrels if q in run):
        docs = run[qid]
        ranked = reranker.rerank(queries[qid], [corpus[d] for d in docs])
        before.append(_graded_ndcg10(docs, qrels[qid]))
        after.append(_graded_ndcg10([docs[r.index] for r in ranked], qrels[qid]))
    bm25, ours = sum(before) / len(before), sum(after) / len(after)
    print(
        f"DL19, BM25 top-20 of {len(before)} queries: nDCG@10 BM25 {bm25:.4f}, reranked {ours:.4f}"
    )
    assert bm25 == pytest.approx(0.5058, abs=1e-3)  # the official BM25 figure: harness sane
    assert ours > bm25


def _graded_ndcg10(ranking: list[str], judged: dict[str, int]) -> float:
    dcg = sum(judged.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranking[:10]))
    ideal = sorted(judged.values(), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0
