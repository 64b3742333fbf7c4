"""Ranking alone: window scores → text scores → best first, min_score, then top_n."""

from __future__ import annotations

import math

import pytest
from helpers import WordTokenizer
from rerank_core import ConfigError, RankedText, WindowConfig
from rerank_core.planning import Planner
from rerank_core.ranking import Cut, rank, results, score_texts, sigmoid, unscored


def item(index: int, score: float, scored: bool = True) -> RankedText:
    return RankedText(
        index=index, score=score, text=f"t{index}", window=(0, 2), n_windows=1, scored=scored
    )


def test_rank_sorts_best_first_ties_by_input_order_then_cuts() -> None:
    items = [item(0, 1.0), item(1, 3.0), item(2, 1.0), item(3, -2.0)]
    assert [r.index for r in rank(items, Cut())] == [1, 0, 2, 3]
    assert [r.index for r in rank(items, Cut(top_n=2))] == [1, 0]
    assert [r.index for r in rank(items, Cut(min_score=0.5))] == [1, 0, 2]
    assert [r.index for r in rank(items, Cut(top_n=2, min_score=1.5))] == [1]  # min_score first
    assert rank([], Cut(top_n=3)) == []
    assert [r.index for r in items] == [0, 1, 2, 3]  # the input is not reordered


def test_unscored_items_keep_input_order_and_only_top_n_cuts() -> None:
    items = [item(i, math.nan, scored=False) for i in range(5)]
    assert [r.index for r in rank(items, Cut(top_n=3, min_score=10.0))] == [0, 1, 2]


@pytest.mark.parametrize(
    "kwargs", [{"top_n": 0}, {"top_n": True}, {"min_score": math.nan}, {"min_score": "1"}]
)
def test_bad_cuts_are_config_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        Cut(**kwargs)  # type: ignore[arg-type]


def test_sigmoid_is_stable_at_the_extremes() -> None:
    assert sigmoid(0.0) == 0.5
    assert sigmoid(1000.0) == 1.0 and sigmoid(-1000.0) == 0.0
    assert sigmoid(2.0) == pytest.approx(1 / (1 + math.exp(-2.0)))


def _plan() -> tuple[Planner, list[tuple[str, list[str]]]]:
    p = Planner(WordTokenizer(), max_length=12, overlap=0, max_query_tokens=2)
    long_text = " ".join(f"w{i}" for i in range(20))  # 7 tokens per window: 3 windows
    return p, [("q", ["short", long_text]), ("q", ["short"])]


def test_score_texts_aggregates_windows_and_reports_the_best_one() -> None:
    p, jobs = _plan()
    plan = p.plan(jobs)
    window_scores = {0: 0.5, 1: 1.0, 2: 4.0, 3: 2.0}  # pair 0 = "short", pairs 1-3 = windows
    scores = [window_scores[i] for i in range(len(plan.pairs))]
    ranked = score_texts(plan, scores)
    long_ranked = ranked[0][1]
    assert long_ranked.score == 4.0 and long_ranked.n_windows == 3
    assert long_ranked.window_text == plan.pairs[2][1]
    assert ranked[1][0].score == 0.5  # the same pair in another job
    mean = score_texts(plan, scores, how="mean")[0][1]
    assert mean.score == pytest.approx(7.0 / 3) and mean.window_text == plan.pairs[2][1]
    assert score_texts(plan, scores, how="first")[0][1].score == 1.0
    assert score_texts(plan, scores, how="topk_mean", topk=2)[0][1].score == 3.0
    squashed = score_texts(plan, scores, apply_sigmoid=True)[0][1]
    assert squashed.score == pytest.approx(sigmoid(4.0))


def test_results_rank_when_cut_else_input_order_and_unscored_on_failure() -> None:
    p, jobs = _plan()
    plan = p.plan(jobs)
    scores = [0.5, 1.0, 4.0, 2.0]
    window = WindowConfig()
    assert [r.index for r in results(plan, scores, None, window=window)[0]] == [0, 1]
    assert [r.index for r in results(plan, scores, Cut(), window=window)[0]] == [1, 0]
    failed = results(plan, None, Cut(top_n=1), window=window)
    assert [[r.index for r in job] for job in failed] == [[0], [0]]
    every = unscored(plan)[0]
    assert all(not r.scored and math.isnan(r.score) for r in every)
    assert every[1].window == (0, len(every[1].text)) and every[1].n_windows == 3
