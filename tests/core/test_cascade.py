"""Cascade: stages of engines, coarse to fine (keep sizes, the order and marks of dropped
texts, stats, async, rerank_many, per-call options, spec parsing and validation), with the
deterministic keyword backend; one test with two real MiniLM models."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from helpers import CASCADE_QUERY as QUERY
from helpers import CASCADE_TEXTS as TEXTS
from helpers import KeywordBackend
from rerank_core import (
    Cascade,
    CascadeRanking,
    ConfigError,
    EmptyQueryError,
    InvalidTextError,
    RankedText,
    Reranker,
    Stage,
)
from rerank_core.cascade import parse_spec


class OrderBackend(KeywordBackend):
    """Keyword score plus a tie-break that prefers later texts (a different ranking from
    the plain keyword backend, so a stage's order is visible)."""

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        base = super().score_pairs(pairs)
        return [s + len(t) / 1000.0 for s, (_, t) in zip(base, pairs, strict=True)]


class SlowBackend(KeywordBackend):
    def __init__(self, delay: float, **kw: Any) -> None:
        super().__init__(**kw)
        self.delay = delay

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        time.sleep(self.delay)
        return super().score_pairs(pairs)


class ReversePairwise:
    """A stand-in pairwise stage: reverses the first ``top_k`` and scores them k..1."""

    def __init__(self, top_k: int) -> None:
        self.top_k = top_k
        self.seen: list[list[int]] = []

    def rerank(self, query: str, ranked: Sequence[RankedText]) -> list[RankedText]:
        head = list(ranked[: self.top_k])[::-1]
        self.seen.append([r.index for r in ranked])
        out = [
            RankedText(
                index=r.index,
                score=float(len(head) - i),
                text=r.text,
                window=r.window,
                n_windows=r.n_windows,
            )
            for i, r in enumerate(head)
        ]
        return out + list(ranked[self.top_k :])


def engines(n: int = 2) -> tuple[list[KeywordBackend], list[Reranker]]:
    backends = [KeywordBackend(tag=f"s{i}") for i in range(n)]
    return backends, [Reranker(b, cache=None) for b in backends]


def two_stage(keep: int = 3) -> tuple[Cascade, list[KeywordBackend]]:
    small, large = KeywordBackend(tag="small"), OrderBackend(tag="large")
    c = Cascade([(Reranker(small, cache=None), keep), Reranker(large, cache=None)])
    return c, [small, large]


# ---------------------------------------------------------------------- order and keep


def test_stage_keeps_its_top_and_final_order_is_last_stage_then_dropped() -> None:
    c, (small, large) = two_stage(keep=3)
    texts = list(TEXTS)
    ranked = c.rerank(QUERY, texts)
    assert texts == TEXTS  # the caller's list is not touched
    # stage 0 (keyword): 3 (3), 1 (2), 6 (2), 2 (1), 5 (1), 0, 4 -> keeps 3, 1, 6
    assert sorted(t for _, t in large.calls[0]) == sorted([TEXTS[3], TEXTS[1], TEXTS[6]])
    assert small.pairs_seen == len(TEXTS) and large.pairs_seen == 3
    # stage 1 ranks them by keyword + length: 3, 6 ("beta gamma delta" is longer), 1
    assert [r.index for r in ranked] == [3, 6, 1, 2, 5, 0, 4]
    head, tail = ranked[:3], ranked[3:]
    assert all(r.scored for r in head)
    assert head[0].score == pytest.approx(3.016)
    assert all(not r.scored and math.isnan(r.score) for r in tail)
    assert isinstance(ranked, CascadeRanking)
    assert ranked.dropped == 4 and ranked.unscored == 0 and not ranked.deadline_passed
    assert ranked.top_score == pytest.approx(3.016)
    assert ranked.stage_of == {3: 1, 6: 1, 1: 1, 2: 0, 5: 0, 0: 0, 4: 0}
    assert ranked.stage_scores[2] == 1.0 and ranked.stage_scores[3] == pytest.approx(3.016)
    assert ranked.facts()["dropped"] == 4


def test_later_drops_come_before_earlier_drops() -> None:
    backends, (a, b, c_) = engines(3)
    c = Cascade([Stage(a, keep=5), Stage(b, keep=2), c_])
    ranked = c.rerank(QUERY, TEXTS)
    # stage 0 keeps 3, 1, 6, 2, 5 (drops 0, 4); stage 1 keeps 3, 1 (drops 6, 2, 5)
    assert [r.index for r in ranked] == [3, 1, 6, 2, 5, 0, 4]
    assert [len(x) for b_ in backends for x in b_.calls] == [7, 5, 2]
    assert [r.scored for r in ranked] == [True, True] + [False] * 5
    assert ranked.stage_of[6] == 1 and ranked.stage_of[0] == 0


def test_keep_larger_than_the_texts_passes_everything_on() -> None:
    c, (_, large) = two_stage(keep=30)
    ranked = c.rerank(QUERY, TEXTS[:4])
    assert large.pairs_seen == 4 and ranked.dropped == 0
    assert all(r.scored for r in ranked)


def test_top_n_and_min_score() -> None:
    c, _ = two_stage(keep=3)
    assert [r.index for r in c.rerank(QUERY, TEXTS, top_n=2)] == [3, 6]
    assert [r.index for r in c.rerank(QUERY, TEXTS, top_n=5)] == [3, 6, 1, 2, 5]
    # min_score applies to the final stage; texts dropped earlier are left out too
    assert [r.index for r in c.rerank(QUERY, TEXTS, min_score=2.5)] == [3]
    _, (a, b) = engines()
    default_cut = Cascade([(a, 4), b], top_n=2)
    assert len(default_cut.rerank(QUERY, TEXTS)) == 2
    assert len(default_cut.rerank(QUERY, TEXTS, top_n=6)) == 6


def test_score_is_the_final_stage_score_in_input_order() -> None:
    c, _ = two_stage(keep=3)
    scores = c.score(QUERY, TEXTS)
    assert len(scores) == len(TEXTS)
    assert scores[3] == pytest.approx(3.016) and scores[1] == pytest.approx(2.010)
    assert [math.isnan(s) for s in scores] == [True, False, True, False, True, True, False]
    _, (a, b) = engines()
    cut = Cascade([(a, 3), b], top_n=2)  # the cascade's top_n does not cut scores
    assert len(cut.score(QUERY, TEXTS)) == len(TEXTS)
    assert len(asyncio.run(cut.ascore(QUERY, TEXTS))) == len(TEXTS)


def test_confidence_comes_from_the_final_stage() -> None:
    c, _ = two_stage(keep=3)
    low = c.rerank("zeta", TEXTS, confidence_threshold=0.5)
    assert low.low_confidence and low.confidence_threshold == 0.5
    high = c.rerank(QUERY, TEXTS, confidence_threshold=0.5)
    assert not high.low_confidence


def test_empty_texts_and_blank_query() -> None:
    c, _ = two_stage()
    assert list(c.rerank(QUERY, [])) == []
    with pytest.raises(EmptyQueryError):
        c.rerank("  ", TEXTS)
    with pytest.raises(InvalidTextError):
        c.rerank(QUERY, ["ok", 3])  # type: ignore[list-item]


# ---------------------------------------------------------------------- many, async


def test_rerank_many_matches_single_calls_with_one_batch_per_stage() -> None:
    c, (small, large) = two_stage(keep=2)
    jobs = [(QUERY, TEXTS), ("gamma", TEXTS[:5]), ("beta", TEXTS[2:])]
    many = c.rerank_many(jobs)
    assert len(small.calls) == 1 and len(large.calls) == 1  # every job in one pass per stage
    assert len(large.calls[0]) == 6
    single, _ = two_stage(keep=2)
    for (q, texts), got in zip(jobs, many, strict=True):
        want = single.rerank(q, texts)
        assert [(r.index, r.scored) for r in got] == [(r.index, r.scored) for r in want]
    stats = c.last_stats
    assert stats is not None
    assert [(s.texts, s.kept, s.pairs_scored) for s in stats.stages] == [(17, 6, 17), (6, 6, 6)]


def test_async_matches_sync() -> None:
    c, _ = two_stage(keep=3)
    sync = c.rerank(QUERY, TEXTS, top_n=4)

    async def main() -> tuple[Any, Any, Any]:
        one = await c.arerank(QUERY, TEXTS, top_n=4)
        many = await c.arerank_many([(QUERY, TEXTS), ("gamma", TEXTS)])
        scores = await c.ascore(QUERY, TEXTS)
        return one, many, scores

    one, many, scores = asyncio.run(main())
    assert [(r.index, r.score) for r in one] == [(r.index, r.score) for r in sync]
    assert [r.index for r in many[0]] == [r.index for r in c.rerank(QUERY, TEXTS)]
    assert [s for s in scores if not math.isnan(s)] == [
        s for s in c.score(QUERY, TEXTS) if not math.isnan(s)
    ]


# ---------------------------------------------------------------------- stats, describe


def test_stats_per_stage_and_totals() -> None:
    c, _ = two_stage(keep=3)
    assert c.last_stats is None and c.stats is None
    c.rerank(QUERY, TEXTS)
    c.rerank(QUERY, TEXTS[:2])
    last = c.last_stats
    assert last is not None
    assert [(s.texts, s.kept, s.pairs_scored) for s in last.stages] == [(2, 2, 2), (2, 2, 2)]
    total = c.stats
    assert total is not None and total.calls == 2
    assert [(s.texts, s.pairs_scored) for s in total.stages] == [(9, 9), (5, 5)]
    assert total.pairs_scored == c.pairs_scored == 14
    assert all(s.seconds >= 0 for s in total.stages)
    d = c.describe()
    assert d["backend"] == "Cascade" and "→" in d["model_id"]
    assert [s["keep"] for s in d["stages"]] == [3, None]
    assert d["stages"][0]["engine"]["batch_size"] > 0  # each stage's own engine facts
    assert d["stats"]["pairs_scored"] == 14 and d["last_stats"]["calls"] == 1
    c.reset_stats()
    assert c.stats is None and c.pairs_scored == 0


def test_windows_are_each_stage_engines() -> None:
    """Long texts are cut into windows by each stage's own engine (its max_length)."""
    small = KeywordBackend(max_length=12, tag="w-small")
    large = KeywordBackend(max_length=64, tag="w-large")
    long_text = " ".join(["filler"] * 30 + ["alpha"])
    c = Cascade([(Reranker(small, cache=None), 2), Reranker(large, cache=None)])
    ranked = c.rerank("alpha", [long_text, "beta", "alpha here"])
    assert small.pairs_seen > 3  # the long text became several windows for the small model
    assert large.pairs_seen < small.pairs_seen
    assert {r.index for r in ranked[:2]} == {0, 2}
    assert ranked[0].n_windows >= 1


def test_each_stage_uses_its_cache() -> None:
    small, large = KeywordBackend(tag="c-small"), KeywordBackend(tag="c-large")
    c = Cascade([(Reranker(small), 3), Reranker(large)])  # default memory caches
    c.rerank(QUERY, TEXTS)
    c.rerank(QUERY, TEXTS)
    assert small.pairs_seen == len(TEXTS) and large.pairs_seen == 3
    last = c.last_stats
    assert last is not None and last.pairs_scored == 0


# ---------------------------------------------------------------------- pairwise, deadline


def test_pairwise_final_stage_reorders_the_top_k() -> None:
    _, (a, b) = engines()
    pw = ReversePairwise(top_k=2)
    c = Cascade([(a, 4), b], pairwise=pw)
    ranked = c.rerank(QUERY, TEXTS)
    # stage 1 ranks 3, 1, 6, 2; the pairwise stage reverses its top 2
    assert [r.index for r in ranked][:4] == [1, 3, 6, 2]
    assert [r.scored for r in ranked][:3] == [True, True, False]
    assert ranked[0].score == 2.0 and ranked.dropped == 5
    last = c.last_stats
    assert last is not None and last.stages[-1].pairs_scored == 2  # k(k-1)
    assert c.describe()["pairwise"]["top_k"] == 2
    assert "top_k=2" in repr(c)


def test_deadline_skips_the_stages_it_leaves_no_time_for() -> None:
    slow = Reranker(SlowBackend(0.3, tag="slow"), cache=None, batch_size=64)
    large_backend = KeywordBackend(tag="after")
    c = Cascade([(slow, 2), Reranker(large_backend, cache=None)])
    ranked = c.rerank(QUERY, TEXTS, deadline_ms=50)
    assert large_backend.pairs_seen == 0  # the second stage never started
    assert ranked.deadline_passed and ranked.top_score is None
    assert not any(r.scored for r in ranked)
    assert [r.index for r in ranked][:2] == [3, 1]  # the first stage's order is kept
    last = c.last_stats
    assert last is not None and last.skipped == 1 and len(last.stages) == 1


# ---------------------------------------------------------------------- validation


def test_bad_stages_are_config_errors() -> None:
    _, (a, b) = engines()
    cases: list[tuple[Any, str]] = [
        ([], "non-empty"),
        ([a, b], r"stages\[0\].keep must be a positive int"),
        ([(a, 0), b], "positive int"),
        ([(a, 3), (b, 2)], "last stage"),
        ([(a, 3), "minilm"], r"stages\[1\] must be a Stage"),
        ([(a, 3), a], "same Reranker"),
        ([Stage(object(), 3), b], "needs a rerank_core.Reranker"),  # type: ignore[arg-type]
    ]
    for stages, match in cases:
        with pytest.raises(ConfigError, match=match):
            Cascade(stages)
    c = Reranker(KeywordBackend(tag="third"))
    with pytest.raises(ConfigError, match="more than"):
        Cascade([(a, 3), (b, 5), c])
    with pytest.raises(ConfigError, match="top_n=4"):
        Cascade([(a, 3), Reranker(KeywordBackend(tag="cut"), top_n=4)])
    with pytest.raises(ConfigError, match="top_n"):
        Cascade([(a, 3), b], top_n=0)
    with pytest.raises(ConfigError, match="pairwise"):
        Cascade([(a, 3), b], pairwise=object())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="top_k"):
        Cascade([(a, 3), b], pairwise=ReversePairwise(top_k=1))


def test_bad_call_options_are_config_errors() -> None:
    c, (small, _) = two_stage()
    for kw in ({"top_n": 0}, {"deadline_ms": -1}, {"cutoff_scale": "odds"}, {"min_score": "x"}):
        with pytest.raises(ConfigError):
            c.rerank(QUERY, TEXTS, **kw)
    with pytest.raises(ConfigError, match="min_score"):  # a probability outside 0-1
        c.rerank(QUERY, TEXTS, min_score=3.0, cutoff_scale="probability")
    assert small.pairs_seen == 0  # nothing was scored


def test_close_only_what_it_owns() -> None:
    _, (a, b) = engines()
    closed: list[str] = []
    a.close = lambda: closed.append("a")  # type: ignore[method-assign]
    with Cascade([(a, 2), b]) as c:
        c.rerank(QUERY, TEXTS)
    assert closed == []
    Cascade([(a, 2), b], owns_stages=True).close()
    assert closed == ["a"]


# ---------------------------------------------------------------------- specs


def test_parse_spec_string_and_dicts() -> None:
    parsed = parse_spec("minilm:model=/m/a,keep=30,batch_size=16; minilm:model=/m/b")
    assert parsed == [
        {"backend": "minilm", "keep": 30, "options": {"model": "/m/a", "batch_size": 16}},
        {"backend": "minilm", "keep": None, "options": {"model": "/m/b"}},
    ]
    assert parse_spec([{"backend": "minilm", "keep": 5}, {"backend": "bge"}])[0]["keep"] == 5


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("", "stage 0 is empty"),
        ("minilm:model=a;", "stage 1 is empty"),
        ("minilm:model=a;minilm", "keep must be a positive int"),
        ("minilm:keep=3;minilm:keep=2", "takes no keep"),
        ("minilm:keep=x;minilm", "keep must be a positive int"),
        ("minilm:keep=3,model;minilm", "expected key=value"),
        ("minilm:keep=3,model=a,model=b;minilm", "given twice"),
        ("nosuch:keep=3;minilm", "unknown backend 'nosuch'"),
        ("minilm:keep=3,modle=x;minilm", "modle"),
        ("minilm:keep=3;minilm:keep=5;minilm", "must not grow"),
        ("duot5;minilm", "pairwise stage comes last"),
        ("minilm:keep=3;minilm;duot5:keep=2", "top_k=, not keep="),
        ("duot5", "at least one pointwise"),
        ([{"model": "x"}], "'backend' name"),
    ],
)
def test_bad_specs_fail_before_loading(spec: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_spec(spec)
    with pytest.raises(ConfigError, match=match):
        Cascade.from_spec(spec)


def test_spec_checks_every_stage_before_loading_any(tmp_path: Path) -> None:
    missing = tmp_path / "no-model"
    # the second stage is bad: nothing is loaded (a load of the missing dir would fail
    # with a ModelLoadError instead)
    with pytest.raises(ConfigError, match="modle"):
        Cascade.from_spec(f"minilm:model={missing},keep=3;minilm:modle={missing}")


# ---------------------------------------------------------------------- real models


def test_two_real_models(minilm_path: Path) -> None:
    bundled = Path(__file__).resolve().parents[2] / "models" / "crossrank-minilm-l6"
    texts = [
        "The Eiffel Tower is in Paris, France.",
        "Bananas are a good source of potassium.",
        "Paris is the capital city of France and its largest city.",
        "The Louvre museum in Paris holds the Mona Lisa.",
        "Mount Everest is the highest mountain on Earth.",
    ]
    query = "what is the capital of France"
    with Cascade.from_spec(
        f"minilm:model={minilm_path},keep=3;minilm:model={bundled}", cache=None
    ) as c:
        ranked = c.rerank(query, texts)
        first, last = (s.reranker for s in c.stages)
        kept = [r.index for r in first.rerank(query, texts)][:3]
        final = last.rerank(query, [texts[i] for i in kept])
        assert [r.index for r in ranked[:3]] == [kept[r.index] for r in final]
        assert [r.score for r in ranked[:3]] == pytest.approx([r.score for r in final])
        assert ranked.dropped == 2 and not any(r.scored for r in ranked[3:])
        stats = c.last_stats
        assert stats is not None
        assert [s.pairs_scored for s in stats.stages] == [5, 3]
        assert c.describe()["stages"][1]["model_id"].endswith("crossrank-minilm-l6")
