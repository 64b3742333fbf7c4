"""Planning alone: jobs → windows → unique pairs, and the window budget."""

from __future__ import annotations

import itertools

import pytest
from helpers import KeywordBackend, WordTokenizer
from rerank_core import ConfigError, EmptyQueryError, InputError, InvalidTextError, WindowConfig
from rerank_core.config import EngineOptions
from rerank_core.planning import Planner, check_jobs

TOK = WordTokenizer()  # whitespace tokens, 3 special tokens per pair


def words(n: int, word: str = "w") -> str:
    return " ".join(f"{word}{i}" for i in range(n))


def planner(
    max_length: int = 32, overlap: int = 4, max_query_tokens: int = 8, **kw: int
) -> Planner:
    return Planner(TOK, max_length, overlap, max_query_tokens, kw.get("max_windows"))


def test_check_jobs_copies_and_types() -> None:
    texts = ["a", "b"]
    jobs = check_jobs([("q", texts), ("r", ("c",))])
    assert jobs == [("q", ["a", "b"]), ("r", ["c"])]
    assert jobs[0][1] is not texts
    with pytest.raises(EmptyQueryError, match=r"query \(job 1\)"):
        check_jobs([("q", []), ("  ", [])])
    with pytest.raises(InvalidTextError) as info:
        check_jobs([("q", ["ok"]), ("r", ["ok", None])])  # type: ignore[list-item]
    assert info.value.index == 1 and info.value.query_index == 1
    with pytest.raises(InputError, match="must be a list of strings"):
        check_jobs([("q", "not a list")])
    with pytest.raises(InputError, match="job 0 must be a"):
        check_jobs([("q",)])  # type: ignore[list-item]
    assert check_jobs([]) == []


def test_short_texts_are_one_window_and_identical_pairs_are_numbered_once() -> None:
    plan = planner().plan(
        check_jobs([("cat dog", ["a cat", "a cat", "dog"]), ("cat dog", ["dog"])])
    )
    assert plan.pairs == [("cat dog", "a cat"), ("cat dog", "dog")]
    assert plan.lengths == [2 + 2 + 3, 2 + 1 + 3]  # query + window + special tokens
    assert [[tp.uids for tp in job] for job in plan.plans] == [[(0,), (0,), (1,)], [(1,)]]
    assert plan.texts == [["a cat", "a cat", "dog"], ["dog"]]
    assert all(len(tp.windows) == 1 and not tp.truncated for job in plan.plans for tp in job)
    assert plan.cut_queries == []


def test_long_texts_are_cut_into_overlapping_windows_within_the_budget() -> None:
    p = planner(max_length=32, overlap=4, max_query_tokens=8)
    text = words(100)
    plan = p.plan([("q", [text])])
    (tp,) = plan.plans[0]
    budget = 32 - 1 - 3  # max_length - query tokens - special tokens
    assert len(tp.windows) > 3
    assert all(w.n_tokens <= budget for w in tp.windows)
    assert tp.windows[0].start == 0 and tp.windows[-1].end == len(text)
    for a, b in zip(tp.windows, tp.windows[1:], strict=False):
        assert b.start < a.end  # they overlap
    assert [plan.pairs[u][1] for u in tp.uids] == [text[w.start : w.end] for w in tp.windows]


def test_max_windows_truncates_and_says_so() -> None:
    plan = planner(max_windows=1).plan([("q", [words(100), "short"])])
    long_plan, short_plan = plan.plans[0]
    assert len(long_plan.windows) == 1 and long_plan.truncated
    assert not short_plan.truncated


def test_long_query_is_cut_and_reported() -> None:
    plan = planner(max_query_tokens=3).plan([(words(10, "q"), ["text"])])
    assert plan.pairs == [("q0 q1 q2", "text")]
    assert plan.cut_queries == [10]


def test_lone_surrogates_are_replaced_and_empty_texts_are_one_empty_window() -> None:
    plan = planner().plan([("cat \ud800", ["x \udfff y", ""])])
    assert plan.pairs[0] == ("cat \ufffd", "x \ufffd y")
    assert plan.pairs[1] == ("cat \ufffd", "")
    assert plan.plans[0][1].windows[0].n_tokens == 0


def test_default_overlap_is_half_of_each_jobs_budget() -> None:
    """Without an explicit overlap, consecutive windows share half of the budget beside
    that query: a short query gets a larger budget and so a larger overlap, and any run of
    up to half a window's tokens lies whole inside one window."""
    default = Planner(TOK, 32, None, 8)
    text = words(100)
    for query, budget in (("q", 28), ("q1 q2 q3 q4 q5 q6", 23)):
        windows = default.plan([(query, [text])]).plans[0][0].windows
        assert max(w.n_tokens for w in windows) == budget
        starts = [len(text[: w.start].split()) for w in windows]
        ends = [len(text[: w.end].split()) for w in windows]
        strides = {b - a for a, b in itertools.pairwise(starts)}
        assert max(strides) == budget - budget // 2  # overlap = budget // 2
        # every run of half a window's tokens lies whole inside one window
        half = budget // 2
        assert all(
            any(s <= k and k + half <= e for s, e in zip(starts, ends, strict=True))
            for k in range(100 - half + 1)
        )
    # an explicit overlap wins
    fixed = Planner(TOK, 32, 4, 8).plan([("q", [text])]).plans[0][0].windows
    assert len(fixed) < len(default.plan([("q", [text])]).plans[0][0].windows)


def test_window_budget_resolution() -> None:
    cfg = EngineOptions().resolve(max_length=1024, special_tokens=3)
    # no overlap given: the planner takes half of each job's budget
    assert (cfg.max_query_tokens, cfg.overlap) == (512, None)
    assert cfg.batch_size == 32 and cfg.max_batch_tokens == 32 * 1024
    given = EngineOptions(batch_size=4, window=WindowConfig(overlap=10, max_query_tokens=20))
    cfg = given.resolve(max_length=64, special_tokens=3, preferred_batch_size=100)
    assert (cfg.batch_size, cfg.overlap, cfg.max_query_tokens) == (4, 10, 20)
    assert (
        EngineOptions()
        .resolve(max_length=64, special_tokens=3, preferred_batch_size=100)
        .batch_size
        == 100
    )
    with pytest.raises(ConfigError, match="smaller than the window budget"):
        EngineOptions(window=WindowConfig(overlap=29)).resolve(max_length=64, special_tokens=3)
    with pytest.raises(ConfigError, match="leaves no room"):
        EngineOptions(window=WindowConfig(max_query_tokens=61)).resolve(
            max_length=64, special_tokens=3
        )
    with pytest.raises(ConfigError, match="preferred_batch_size"):
        EngineOptions().resolve(max_length=64, special_tokens=3, preferred_batch_size=-1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"batch_size": 0},
        {"max_batch_tokens": True},
        {"top_n": -1},
        {"normalize": "softmax"},
        {"on_error": "ignore"},
        {"window": {"overlap": 3}},
    ],
)
def test_bad_engine_options_are_config_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        EngineOptions(**kwargs)  # type: ignore[arg-type]


def test_planner_from_an_engine_config() -> None:
    cfg = EngineOptions(window=WindowConfig(max_windows=2)).resolve(max_length=64, special_tokens=3)
    p = Planner.for_config(KeywordBackend().tokenizer, 64, cfg)
    assert (p.overlap, p.max_query_tokens, p.max_windows) == (cfg.overlap, 32, 2)
