"""``crossrank eval``'s confidence_threshold suggestion (crossrank_lab.quality.confidence)."""

from __future__ import annotations

import pytest
from crossrank_lab.quality.confidence import roc_auc, suggest_threshold, top1_outcomes


def test_top1_outcomes_take_the_best_scored_document() -> None:
    run = {"q1": [("a", 0.1), ("b", 2.0)], "q2": [("c", -1.0)], "q3": []}
    qrels = {"q1": {"b": 2, "a": 0}, "q2": {"c": 1}}
    assert top1_outcomes(run, qrels, rel_level=2) == [(2.0, True), (-1.0, False)]
    assert top1_outcomes(run, qrels, rel_level=1) == [(2.0, True), (-1.0, True)]


def test_suggestion_is_the_highest_threshold_under_the_relevant_share() -> None:
    # scores ascending with relevance: 4 low non-relevant, a mixed middle, relevant highs
    outcomes = [(-3.0, False), (-2.0, False), (-1.5, False), (-1.0, True), (-0.5, False)]
    outcomes += [(0.0, True), (0.5, False), (1.0, True), (2.0, True), (3.0, True)]
    s = suggest_threshold(outcomes, max_relevant=0.3)
    # flag the 7 lowest (below 1.0): 2 relevant of 7 = 29% < 30%; below 2.0: 3 of 8 = 38%
    assert s.threshold == 1.0 and s.flagged == 7 and s.relevant_below == pytest.approx(2 / 7)
    assert s.precision == pytest.approx(5 / 7) and s.recall == 1.0
    assert s.queries == 10 and s.relevant_top1 == 5
    assert s.auc == pytest.approx(roc_auc(outcomes))
    assert "confidence_threshold=1.0000" in s.line()
    strict = suggest_threshold(outcomes, max_relevant=0.01)
    assert strict.threshold == -1.0 and strict.flagged == 3  # needs at least 3 flagged
    none = suggest_threshold([(1.0, True)] * 5, max_relevant=0.5)
    assert none.threshold is None and "no threshold" in none.line()


def test_ties_are_never_split_and_auc_counts_ties_half() -> None:
    outcomes = [(0.0, False), (0.0, True), (0.0, False), (1.0, True)]
    s = suggest_threshold(outcomes, max_relevant=0.5, min_flagged=1)
    assert s.threshold is None or s.flagged in (3, 4)
    assert roc_auc([(0.0, True), (0.0, False)]) == 0.5
    assert roc_auc([(1.0, True)]) is None
    with pytest.raises(ValueError):
        suggest_threshold(outcomes, max_relevant=0.0)
