"""Cascade stages that fuse with the first stage: a fusing stage keeps what the fused order
ranks first, every fusing stage gets its pool's first-stage scores in the pool's order
(across stages that reorder), missing or invalid scores fail before any model call, the
final stage may fuse (the result's score is then its fused score), ``score`` stays the
final model's own, the spec's ``fusion=`` key, and describe/stats/repr name each stage's
fusion; with the deterministic keyword backend, one test with a real MiniLM."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from helpers import CASCADE_QUERY as QUERY
from helpers import CASCADE_TEXTS as TEXTS
from helpers import KeywordBackend
from rerank_core import Cascade, ConfigError, FirstStageScoreError, Reranker, Stage
from rerank_core.cascade import parse_spec
from rerank_core.fusion import Fusion, fuse_scores

KEYWORD = [0.0, 2.0, 1.0, 3.0, 0.0, 1.0, 2.0]
#: distinct first-stage scores, so a score handed to the wrong text shows
FIRST = [7.0, 1.0, 5.0, 2.0, 6.0, 4.0, 3.0]


class OrderBackend(KeywordBackend):
    """Keyword score plus a tie-break that prefers longer texts."""

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        base = super().score_pairs(pairs)
        return [s + len(t) / 1000.0 for s, (_, t) in zip(base, pairs, strict=True)]


def top(scores: Sequence[float], pool: Sequence[int], fusion: Fusion | None = None) -> list[int]:
    """The oracle: ``pool`` (input indices) ranked by ``scores`` (in pool order), fused with
    ``FIRST`` when ``fusion`` is given; ties by pool position."""
    ranked = list(scores)
    if fusion is not None:
        ranked = fuse_scores(ranked, [FIRST[i] for i in pool], fusion)
    order = sorted(range(len(pool)), key=lambda p: (-ranked[p], p))
    return [pool[p] for p in order]


def kw(keep: int | None = None, fusion: object = None) -> Stage:
    """A keyword stage with its own engine."""
    return Stage(Reranker(KeywordBackend(), cache=None), keep, fusion=fusion)  # type: ignore[arg-type]


def fused_first_stage(
    fusion: str = "linear:0.5", keep: int = 3
) -> tuple[Cascade, KeywordBackend, OrderBackend]:
    small, large = KeywordBackend(tag="small"), OrderBackend(tag="large")
    c = Cascade(
        [Stage(Reranker(small, cache=None), keep, fusion=fusion), Reranker(large, cache=None)]
    )
    return c, small, large


# ---------------------------------------------------------------------- what is kept


def test_a_fusing_stage_keeps_what_the_fused_order_ranks_first() -> None:
    first = [0.0, 0.0, 10.0, 0.0, 0.0, 10.0, 0.0]
    c, small, large = fused_first_stage("linear:0.5")
    ranked = c.rerank(QUERY, TEXTS, first_stage_scores=first)
    # fused = 0.5 minmax(keyword) + 0.5 minmax(first): 2 and 5 (2/3), 3 (1/2), 1 and 6
    # (1/3), 0 and 4 (0); the keyword alone would keep 3, 1, 6
    assert sorted(t for _, t in large.calls[0]) == sorted([TEXTS[2], TEXTS[5], TEXTS[3]])
    assert small.pairs_seen == len(TEXTS) and large.pairs_seen == 3
    # the final stage (not fusing) ranks 3, then 2 and 5 (a tie: its input order, the
    # fused one); the dropped follow in the fused order
    assert [r.index for r in ranked] == [3, 2, 5, 1, 6, 0, 4]
    assert [r.scored for r in ranked] == [True] * 3 + [False] * 4
    assert ranked[0].rerank_score is None and ranked[0].first_stage_score is None
    for r in ranked[3:]:  # the dropped carry no score of any kind
        assert math.isnan(r.score) and r.rerank_score is None and r.first_stage_score is None
    # stage 0's scores are the fused ones it ranked by
    assert ranked.stage_of[1] == 0 and ranked.stage_scores[1] == pytest.approx(1 / 3)
    plain = Cascade([(Reranker(KeywordBackend(), cache=None), 3), Reranker(OrderBackend())])
    assert [r.index for r in plain.rerank(QUERY, TEXTS)][:3] == [3, 6, 1]


def test_rrf_stage_matches_the_engine_fusing_alone() -> None:
    c, _, large = fused_first_stage("rrf", keep=4)
    ranked = c.rerank(QUERY, TEXTS, first_stage_scores=FIRST)
    want = top(KEYWORD, range(7), Fusion.rrf())
    alone = Reranker(KeywordBackend(), cache=None).rerank(
        QUERY, TEXTS, fusion="rrf", first_stage_scores=FIRST
    )
    assert [r.index for r in alone] == want
    assert sorted(t for _, t in large.calls[0]) == sorted(TEXTS[i] for i in want[:4])
    assert [r.index for r in ranked][4:] == want[4:]


# ---------------------------------------------------------------------- the pool's scores


def test_scores_follow_the_pool_across_stages_that_reorder() -> None:
    a, b, c_ = KeywordBackend(tag="a"), OrderBackend(tag="b"), KeywordBackend(tag="c")
    cascade = Cascade(
        [
            Stage(Reranker(a, cache=None), 5),  # no fusion: 3, 1, 6, 2, 5
            Stage(Reranker(b, cache=None), 3, fusion="linear:0.5"),
            Stage(Reranker(c_, cache=None), fusion="rrf"),  # the final stage fuses too
        ]
    )
    texts, first = list(TEXTS), list(FIRST)
    ranked = cascade.rerank(QUERY, texts, first_stage_scores=first)
    assert texts == TEXTS and first == FIRST  # nothing the caller passed is touched
    pool0 = top(KEYWORD, range(7))[:5]
    assert pool0 == [3, 1, 6, 2, 5]
    order_scores = [KEYWORD[i] + len(TEXTS[i]) / 1000.0 for i in pool0]
    pool1 = top(order_scores, pool0, Fusion.linear(0.5))[:3]
    assert pool1 != top(order_scores, pool0)[:3]  # the fusion changed what went on
    assert sorted(t for _, t in c_.calls[0]) == sorted(TEXTS[i] for i in pool1)
    final = top([KEYWORD[i] for i in pool1], pool1, Fusion.rrf())
    assert [r.index for r in ranked][:3] == final
    for r in ranked[:3]:  # each text's own first-stage score, its model score beside
        assert r.first_stage_score == FIRST[r.index]
        assert r.rerank_score == KEYWORD[r.index]
    rrf = fuse_scores([KEYWORD[i] for i in pool1], [FIRST[i] for i in pool1], Fusion.rrf())
    assert sorted(r.score for r in ranked[:3]) == pytest.approx(sorted(rrf))
    assert ranked.top_score == max(KEYWORD[i] for i in pool1)  # the reranker's, as the engine


def test_rerank_many_and_async_take_one_list_per_job() -> None:
    jobs = [(QUERY, TEXTS), ("gamma", TEXTS[:5]), ("beta", TEXTS[2:])]
    scores = [FIRST, FIRST[:5], FIRST[2:]]
    c, small, large = fused_first_stage("rrf", keep=2)
    many = c.rerank_many(jobs, first_stage_scores=scores)
    assert len(small.calls) == 1 and len(large.calls) == 1  # one batched pass per stage
    for (q, texts), s, got in zip(jobs, scores, many, strict=True):
        single, _, _ = fused_first_stage("rrf", keep=2)
        want = single.rerank(q, texts, first_stage_scores=s)
        assert [(r.index, r.scored) for r in got] == [(r.index, r.scored) for r in want]
    one = asyncio.run(c.arerank(QUERY, TEXTS, first_stage_scores=FIRST))
    amany = asyncio.run(c.arerank_many(jobs, first_stage_scores=scores))
    assert [r.index for r in one] == [r.index for r in many[0]]
    assert [[r.index for r in x] for x in amany] == [[r.index for r in x] for x in many]


# ---------------------------------------------------------------------- errors, early


@pytest.mark.parametrize(
    ("first", "match", "index"),
    [
        (None, r"stage 1 \(.*linear:0.5\) fuses with the first stage", None),
        (FIRST[:6], "6 scores for 7 texts", None),
        ([*FIRST[:3], math.nan, *FIRST[4:]], r"first_stage_scores\[3\]", 3),
        ([*FIRST[:2], "5", *FIRST[3:]], r"first_stage_scores\[2\]", 2),
        ("1234567", "sequence of numbers", None),
    ],
)
def test_missing_or_bad_scores_fail_before_any_model_call(
    first: object, match: str, index: int | None
) -> None:
    # only the SECOND stage fuses: the error still comes before the first stage runs
    a, b, c_ = KeywordBackend(), KeywordBackend(), KeywordBackend()
    cascade = Cascade(
        [
            Stage(Reranker(a, cache=None), 5),
            Stage(Reranker(b, cache=None), 3, fusion="linear:0.5"),
            Reranker(c_, cache=None),
        ]
    )
    with pytest.raises(FirstStageScoreError, match=match) as info:
        cascade.rerank(QUERY, TEXTS, first_stage_scores=first)  # type: ignore[arg-type]
    assert info.value.index == index
    with pytest.raises(FirstStageScoreError, match=match):
        asyncio.run(cascade.arerank(QUERY, TEXTS, first_stage_scores=first))  # type: ignore[arg-type]
    assert a.calls == [] and b.calls == [] and c_.calls == []
    assert cascade.last_stats is None


def test_rerank_many_checks_every_job_before_any_model_call() -> None:
    c, small, large = fused_first_stage("rrf")
    jobs = [(QUERY, TEXTS), ("beta", TEXTS[:3])]
    with pytest.raises(FirstStageScoreError, match="1 lists for 2 jobs"):
        c.rerank_many(jobs, first_stage_scores=[FIRST])
    with pytest.raises(FirstStageScoreError, match=r"of job 1\[1\]"):
        c.rerank_many(jobs, first_stage_scores=[FIRST, [1.0, math.inf, 2.0]])
    with pytest.raises(FirstStageScoreError, match="one sequence per job"):
        c.rerank_many(jobs, first_stage_scores=3)  # type: ignore[arg-type]
    with pytest.raises(FirstStageScoreError, match="one list per job"):
        c.rerank_many(jobs)
    assert small.calls == [] and large.calls == []
    assert c.rerank_many([]) == []  # no jobs, nothing to fuse (the adapters' cutoff check)


def test_scores_without_a_fusing_stage_are_a_config_error() -> None:
    small, large = KeywordBackend(), KeywordBackend()
    c = Cascade([(Reranker(small, cache=None), 3), Reranker(large, cache=None)])
    assert not c.fuses and c.fusions == (None, None)
    with pytest.raises(ConfigError, match="no cascade stage fuses"):
        c.rerank(QUERY, TEXTS, first_stage_scores=FIRST)
    assert small.calls == []
    assert len(c.rerank(QUERY, TEXTS)) == len(TEXTS)  # and none needed


def test_a_bad_stage_fusion_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"stages\[0\].*unknown fusion"):
        Cascade([kw(3, "bm25"), kw()])
    with pytest.raises(ConfigError, match=r"stages\[1\].*weight in \[0, 1\]"):
        Cascade([kw(3), kw(fusion=("linear", 2.0))])


# ---------------------------------------------------------------------- engine default, score


def test_an_engine_default_fusion_fuses_unless_the_stage_turns_it_off() -> None:
    def build(fusion: str | None) -> tuple[Cascade, KeywordBackend]:
        small = KeywordBackend()
        engine = Reranker(small, cache=None, fusion="rrf")
        return Cascade([Stage(engine, 3, fusion=fusion), Reranker(OrderBackend())]), small

    on, _ = build(None)
    assert on.fusions[0] == Fusion.rrf() and on.fuses
    with pytest.raises(FirstStageScoreError):
        on.rerank(QUERY, TEXTS)
    got = on.rerank(QUERY, TEXTS, first_stage_scores=FIRST)
    assert {r.index for r in got[:3]} == set(top(KEYWORD, range(7), Fusion.rrf())[:3])
    off, _ = build("none")
    assert not off.fuses
    assert [r.index for r in off.rerank(QUERY, TEXTS)][:3] == [3, 6, 1]


def test_score_is_the_final_model_score_earlier_stages_still_fuse() -> None:
    first = [0.0, 0.0, 10.0, 0.0, 0.0, 10.0, 0.0]
    c, _, _ = fused_first_stage("linear:0.5")
    with pytest.raises(FirstStageScoreError):
        c.score(QUERY, TEXTS)
    scores = c.score(QUERY, TEXTS, first_stage_scores=first)
    # the fused first stage kept 2, 5, 3: their final (OrderBackend) scores, NaN elsewhere
    assert [i for i, s in enumerate(scores) if not math.isnan(s)] == [2, 3, 5]
    assert scores[3] == pytest.approx(3.016) and scores[2] == pytest.approx(1.005)
    assert asyncio.run(c.ascore(QUERY, TEXTS, first_stage_scores=first)) == scores
    stats = c.last_stats
    assert stats is not None and [s.fusion for s in stats.stages] == ["linear:0.5", None]
    # only the final stage fuses: score() needs no first-stage scores (it never fuses)
    final_only = Cascade([kw(3), kw(fusion="rrf")])
    plain = final_only.score(QUERY, TEXTS)
    assert plain[3] == 3.0 and math.isnan(plain[0])
    assert final_only.last_stats is not None
    assert [s.fusion for s in final_only.last_stats.stages] == [None, None]
    with pytest.raises(FirstStageScoreError):
        final_only.rerank(QUERY, TEXTS)


def test_min_score_reads_the_final_model_score_when_it_fuses() -> None:
    c = Cascade([kw(5), kw(fusion="rrf")])
    ranked = c.rerank(QUERY, TEXTS, first_stage_scores=FIRST, min_score=2.0)
    assert {r.index for r in ranked} == {1, 3, 6}  # keyword >= 2, whatever the fused score
    assert all(r.rerank_score is not None and r.rerank_score >= 2.0 for r in ranked)


# ---------------------------------------------------------------------- facts, spec


def test_describe_stats_and_repr_name_each_stage_fusion() -> None:
    c, _, _ = fused_first_stage("linear:0.3")
    c.rerank(QUERY, TEXTS, first_stage_scores=FIRST)
    d = c.describe()
    assert [s["fusion"] for s in d["stages"]] == ["linear:0.3", None]
    assert [s["fusion"] for s in d["last_stats"]["stages"]] == ["linear:0.3", None]
    assert [s["fusion"] for s in d["stats"]["stages"]] == ["linear:0.3", None]
    assert "(keep=3, fusion=linear:0.3)" in repr(c)


def test_spec_fusion_key() -> None:
    parsed = parse_spec(
        "minilm:model=/m/a,keep=30,fusion=rrf,precision=int8;minilm:model=/m/b,fusion=linear:0.3"
    )
    assert parsed[0]["options"] == {"model": "/m/a", "fusion": "rrf", "precision": "int8"}
    assert parsed[1]["options"]["fusion"] == "linear:0.3"
    dicts: list[dict[str, Any]] = [
        {"backend": "minilm", "keep": 5, "fusion": ("linear", 0.2)},
        {"backend": "minilm"},
    ]
    assert parse_spec(dicts)[0]["options"] == {"fusion": ("linear", 0.2)}
    for spec, match in [
        ("minilm:keep=3,fusion=bm25;minilm", r"stage 0 \(minilm\): unknown fusion"),
        ("minilm:keep=3;minilm:fusion=linear:2", r"stage 1 \(minilm\): .*weight in \[0, 1\]"),
        ("minilm:keep=3,fusion=rrf:0;minilm", r"stage 0 \(minilm\)"),
    ]:
        with pytest.raises(ConfigError, match=match):
            parse_spec(spec)
        with pytest.raises(ConfigError, match=match):
            Cascade.from_spec(spec)


def test_from_spec_puts_the_fusion_on_the_stage(minilm_path: Path) -> None:
    spec = f"minilm:model={minilm_path},keep=2,fusion=rrf;minilm:model={minilm_path}"
    texts = [
        "Paris is the capital city of France.",
        "Bananas are a good source of potassium.",
        "The Eiffel Tower is in Paris.",
        "Mount Everest is the highest mountain on Earth.",
    ]
    with Cascade.from_spec(spec, cache=None) as c:
        assert c.fusions == (Fusion.rrf(), None)
        assert c.stages[0].reranker.fusion is None  # the stage fuses, its engine is plain
        ranked = c.rerank("capital of France", texts, first_stage_scores=[1.0, 4.0, 3.0, 2.0])
        first = c.stages[0].reranker.rerank(
            "capital of France", texts, fusion="rrf", first_stage_scores=[1.0, 4.0, 3.0, 2.0]
        )
        assert {r.index for r in ranked[:2]} == {r.index for r in first[:2]}
        assert c.describe()["stages"][0]["fusion"] == "rrf"
