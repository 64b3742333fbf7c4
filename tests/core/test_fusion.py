"""Score fusion (rerank_core.fusion): RRF and normalized linear interpolation, through the
engine with a deterministic keyword backend."""

from __future__ import annotations

import asyncio
import math

import pytest
from helpers import KeywordBackend
from rerank_core import (
    BackendError,
    ConfigError,
    FirstStageScoreError,
    Fusion,
    InputError,
    Reranker,
)
from rerank_core.fusion import fuse_scores, parse_fusion

# keyword scores for "cat dog": [1, 1, 2, 0]
TEXTS = ["a cat sat", "a dog ran", "cat and dog", "nothing here"]
FIRST = [0.9, 0.1, 0.2, 0.8]  # BM25-like, higher is better


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("rrf", Fusion(method="rrf", k=60)),
        ("RRF:20", Fusion.rrf(20)),
        ("linear:0.3", Fusion.linear(0.3)),
        ("linear", Fusion.linear(0.5)),
        (("linear", 0.25), Fusion.linear(0.25)),
        (("rrf", 10), Fusion.rrf(10)),
        (Fusion.rrf(7), Fusion.rrf(7)),
        (None, None),
        ("none", None),
    ],
)
def test_parse_fusion_spellings(value: object, expected: Fusion | None) -> None:
    assert parse_fusion(value) == expected


@pytest.mark.parametrize(
    "value", ["borda", "linear:1.5", "linear:x", "rrf:0", "rrf:2.5", ("linear", True), 3, ["rrf"]]
)
def test_parse_fusion_rejects_with_config_error(value: object) -> None:
    with pytest.raises(ConfigError, match="fusion"):
        parse_fusion(value)


def test_spec_round_trips() -> None:
    for f in (Fusion.rrf(), Fusion.rrf(20), Fusion.linear(0.3), Fusion.linear(0.0)):
        assert parse_fusion(f.spec()) == f
    assert Fusion.rrf().spec() == "rrf" and Fusion.linear(0.3).spec() == "linear:0.3"


def test_rrf_formula() -> None:
    # rerank ranks: [2, 3, 1, 4] (ties by position); first ranks: [1, 4, 3, 2]
    got = fuse_scores([1.0, 1.0, 2.0, 0.0], FIRST, Fusion.rrf(60))
    want = [1 / 62 + 1 / 61, 1 / 63 + 1 / 64, 1 / 61 + 1 / 63, 1 / 64 + 1 / 62]
    assert got == pytest.approx(want)


def test_linear_formula_and_extremes() -> None:
    rerank = [1.0, 1.0, 2.0, 0.0]
    got = fuse_scores(rerank, FIRST, Fusion.linear(0.3))
    rn = [0.5, 0.5, 1.0, 0.0]
    fn = [(f - 0.1) / 0.8 for f in FIRST]
    assert got == pytest.approx([0.7 * a + 0.3 * b for a, b in zip(rn, fn, strict=True)])
    assert fuse_scores(rerank, FIRST, Fusion.linear(0.0)) == pytest.approx(rn)
    assert fuse_scores(rerank, FIRST, Fusion.linear(1.0)) == pytest.approx(fn)
    assert fuse_scores([3.0, 3.0], [1.0, 1.0], Fusion.linear(0.5)) == [0.0, 0.0]


def test_engine_rrf_orders_by_fused_and_keeps_both_scores(keyword_backend: KeywordBackend) -> None:
    rr = Reranker(keyword_backend)
    out = rr.rerank("cat dog", TEXTS, fusion="rrf", first_stage_scores=FIRST)
    fused = fuse_scores([1.0, 1.0, 2.0, 0.0], FIRST, Fusion.rrf())
    assert [r.index for r in out] == sorted(range(4), key=lambda i: (-fused[i], i))
    assert [r.index for r in out] == [0, 2, 3, 1]
    by_index = {r.index: r for r in out}
    assert [by_index[i].rerank_score for i in range(4)] == [1.0, 1.0, 2.0, 0.0]
    assert [by_index[i].first_stage_score for i in range(4)] == FIRST
    assert [by_index[i].score for i in range(4)] == pytest.approx(fused)
    assert out.top_score == 2.0  # the reranker's best, not the fused one


def test_without_fusion_the_new_fields_are_none(keyword_backend: KeywordBackend) -> None:
    out = Reranker(keyword_backend).rerank("cat dog", TEXTS)
    assert all(r.rerank_score is None and r.first_stage_score is None for r in out)


def test_linear_weight_zero_is_reranker_order_one_is_first_stage(
    keyword_backend: KeywordBackend,
) -> None:
    rr = Reranker(keyword_backend)
    alone = [r.index for r in rr.rerank("cat dog", TEXTS)]
    w0 = rr.rerank("cat dog", TEXTS, fusion=("linear", 0.0), first_stage_scores=FIRST)
    w1 = rr.rerank("cat dog", TEXTS, fusion=("linear", 1.0), first_stage_scores=FIRST)
    assert [r.index for r in w0] == alone
    assert [r.index for r in w1] == [0, 3, 2, 1]


def test_min_score_and_threshold_read_on_the_reranker_score(
    keyword_backend: KeywordBackend,
) -> None:
    rr = Reranker(keyword_backend, fusion="rrf")
    out = rr.rerank(
        "cat dog", TEXTS, first_stage_scores=FIRST, min_score=1.0, confidence_threshold=3.0
    )
    assert {r.index for r in out} == {0, 1, 2}  # rerank score 0 dropped though fused high
    assert [r.index for r in out] == [0, 2, 1]
    assert out.low_confidence and out.top_score == 2.0
    assert [r.index for r in rr.rerank("cat dog", TEXTS, first_stage_scores=FIRST, top_n=2)] == [
        0,
        2,
    ]


def test_engine_default_and_per_call_override(keyword_backend: KeywordBackend) -> None:
    rr = Reranker(keyword_backend, fusion=("linear", 1.0))
    assert rr.fusion == Fusion.linear(1.0)
    assert rr.describe()["engine"]["fusion"] == "linear:1"
    assert [r.index for r in rr.rerank("cat dog", TEXTS, first_stage_scores=FIRST)] == [0, 3, 2, 1]
    off = rr.rerank("cat dog", TEXTS, fusion="none")
    assert [r.index for r in off] == [2, 0, 1, 3] and off[0].rerank_score is None


def test_missing_first_stage_scores_is_typed_error_before_scoring(
    keyword_backend: KeywordBackend,
) -> None:
    rr = Reranker(keyword_backend, fusion="rrf")
    with pytest.raises(FirstStageScoreError, match="first_stage_scores") as e:
        rr.rerank("cat dog", TEXTS)
    assert isinstance(e.value, InputError) and e.value.index is None
    with pytest.raises(FirstStageScoreError, match=r"has 3 scores for 4 texts"):
        rr.rerank("cat dog", TEXTS, first_stage_scores=FIRST[:3])
    with pytest.raises(FirstStageScoreError, match=r"first_stage_scores\[1\]") as e:
        rr.rerank("cat dog", TEXTS, first_stage_scores=[0.1, None, 0.3, 0.4])  # type: ignore[list-item]
    assert e.value.index == 1
    with pytest.raises(FirstStageScoreError, match=r"\[2\] must be a finite number"):
        rr.rerank("cat dog", TEXTS, first_stage_scores=[0.1, 0.2, math.nan, 0.4])
    with pytest.raises(FirstStageScoreError, match="sequence of numbers"):
        rr.rerank("cat dog", TEXTS, first_stage_scores="0.1")  # type: ignore[arg-type]
    assert keyword_backend.pairs_seen == 0


def test_scores_without_fusion_and_bad_default_are_config_errors(
    keyword_backend: KeywordBackend,
) -> None:
    with pytest.raises(ConfigError, match="no fusion"):
        Reranker(keyword_backend).rerank("cat", TEXTS, first_stage_scores=FIRST)
    with pytest.raises(ConfigError, match="fusion"):
        Reranker(KeywordBackend(), fusion="borda")


def test_rerank_many_and_async(keyword_backend: KeywordBackend) -> None:
    rr = Reranker(keyword_backend, fusion="rrf")
    jobs = [("cat dog", TEXTS), ("dog", TEXTS[:2])]
    firsts = [FIRST, [0.0, 1.0]]
    many = rr.rerank_many(jobs, first_stage_scores=firsts)
    assert [r.index for r in many[0]] == [0, 2, 3, 1]
    assert [r.index for r in many[1]] == [1, 0]
    with pytest.raises(FirstStageScoreError, match="of job 1"):
        rr.rerank_many(jobs, first_stage_scores=[FIRST, [0.0]])
    with pytest.raises(FirstStageScoreError, match="1 lists for 2 jobs"):
        rr.rerank_many(jobs, first_stage_scores=[FIRST])
    one = asyncio.run(rr.arerank("cat dog", TEXTS, first_stage_scores=FIRST))
    assert [r.index for r in one] == [0, 2, 3, 1]
    both = asyncio.run(rr.arerank_many(jobs, first_stage_scores=firsts))
    assert [[r.index for r in x] for x in both] == [[0, 2, 3, 1], [1, 0]]


def test_callers_scores_not_mutated_and_passthrough_keeps_input_order(
    keyword_backend: KeywordBackend,
) -> None:
    first = list(FIRST)
    rr = Reranker(keyword_backend, fusion="rrf", on_error="passthrough")

    keyword_backend.fail = BackendError("down")
    out = rr.rerank("cat dog", TEXTS, first_stage_scores=first)
    assert [r.index for r in out] == [0, 1, 2, 3] and not any(r.scored for r in out)
    assert [r.first_stage_score for r in out] == FIRST
    assert first == FIRST


def test_score_call_ignores_fusion(keyword_backend: KeywordBackend) -> None:
    assert Reranker(keyword_backend, fusion="rrf").score("cat dog", TEXTS) == [1.0, 1.0, 2.0, 0.0]
