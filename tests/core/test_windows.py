from __future__ import annotations

import itertools

import pytest
from helpers import WordTokenizer
from rerank_core.windows import aggregate, make_windows, window_budget


def spans(text: str) -> list[tuple[int, int]]:
    return WordTokenizer().token_spans([text])[0]


def test_text_that_fits_is_one_window() -> None:
    text = "one two three"
    windows, truncated = make_windows(spans(text), len(text), budget=10, overlap=2)
    assert [(w.start, w.end, w.n_tokens) for w in windows] == [(0, len(text), 3)]
    assert truncated is False


def test_empty_and_blank_texts_are_one_window() -> None:
    for text in ("", "   \n\t "):
        windows, truncated = make_windows(spans(text), len(text), budget=5, overlap=1)
        assert [(w.start, w.end, w.n_tokens) for w in windows] == [(0, len(text), 0)]
        assert not truncated


def test_windows_overlap_cover_everything_and_respect_budget() -> None:
    words = [f"w{i}" for i in range(103)]
    text = " ".join(words)
    sp = spans(text)
    windows, truncated = make_windows(sp, len(text), budget=10, overlap=3)
    assert not truncated
    assert windows[0].start == 0 and windows[-1].end == len(text)
    for a, b in itertools.pairwise(windows):
        assert b.start <= a.end  # contiguous coverage
        shared = [s for s in sp if s[0] >= b.start and s[1] <= a.end]
        assert len(shared) == 3  # exactly `overlap` tokens shared (word tokens: no snapping)
    for w in windows:
        inside = [s for s in sp if s[0] >= w.start and s[1] <= w.end]
        assert len(inside) == w.n_tokens <= 10
    covered = set()
    for w in windows:
        covered.update(range(w.start, w.end))
    assert covered == set(range(len(text)))


def test_window_starts_snap_back_to_word_starts() -> None:
    # tokens 'ab' 'cd' 'ef' are one word (adjacent spans); a window should not start mid-word
    sp = [(0, 1), (2, 4), (4, 6), (6, 8), (9, 10), (11, 12), (13, 14)]
    windows, _ = make_windows(sp, 14, budget=4, overlap=1)
    for w in windows[1:]:
        assert w.start in {0, 2, 9, 11, 13}


def test_max_windows_caps_and_reports_truncation() -> None:
    text = " ".join(["x"] * 50)
    windows, truncated = make_windows(spans(text), len(text), budget=10, overlap=0, max_windows=2)
    assert len(windows) == 2 and truncated
    assert windows[-1].end < len(text)


def test_bad_budget_or_overlap_raise() -> None:
    with pytest.raises(ValueError):
        make_windows([(0, 1)], 1, budget=0, overlap=0)
    with pytest.raises(ValueError):
        make_windows([(0, 1)], 1, budget=4, overlap=4)


def test_window_budget() -> None:
    assert window_budget(512, 10, 3) == 499


@pytest.mark.parametrize(
    ("how", "expected"),
    [("max", (3.0, 1)), ("first", (1.0, 0)), ("mean", (2.0, 1)), ("topk_mean", (2.5, 1))],
)
def test_aggregate(how: str, expected: tuple[float, int]) -> None:
    assert aggregate([1.0, 3.0, 2.0], how, topk=2) == expected
