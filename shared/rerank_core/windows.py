"""Pure functions that cut a tokenized text into overlapping windows.

A window is a run of at most ``budget`` consecutive tokens, reported as a
character span of the original text. Consecutive windows share ``overlap``
tokens, window starts are pulled back to a word start where one is near, and
the spans are contiguous: together they cover every character of the text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Window", "aggregate", "make_windows", "window_budget"]

# How far (in tokens) a window start may move back to land on a word start.
_MAX_SNAP = 8


@dataclass(frozen=True, slots=True)
class Window:
    """``start``/``end``: character span in the text; ``n_tokens``: tokens inside it."""

    start: int
    end: int
    n_tokens: int


def window_budget(max_length: int, query_tokens: int, special_tokens: int) -> int:
    """Tokens of text that fit next to the query in one model input."""
    return max_length - query_tokens - special_tokens


def _word_start(spans: Sequence[tuple[int, int]], s: int, floor: int) -> int:
    """Move token index ``s`` back to the first token of its word, staying above ``floor``."""
    for cand in range(s, max(floor, s - _MAX_SNAP), -1):
        if spans[cand][0] > spans[cand - 1][1]:  # whitespace before it: a word start
            return cand
    return s


def _cuttable(spans: Sequence[tuple[int, int]], i: int) -> bool:
    """Whether a window boundary may fall before token ``i``: not inside a character
    that the tokenizer split into several tokens (Hangul jamo, byte-level pieces)."""
    return i <= 0 or i >= len(spans) or spans[i][0] >= spans[i - 1][1]


def _cut_near(spans: Sequence[tuple[int, int]], i: int, low: int, high: int) -> int:
    """The cuttable token index nearest below ``i`` and above ``low``; failing that, the
    first one above ``i`` (at most ``high``, which the caller knows to be cuttable)."""
    for cand in range(i, low, -1):
        if _cuttable(spans, cand):
            return cand
    for cand in range(i + 1, high):
        if _cuttable(spans, cand):
            return cand
    return high


def make_windows(
    spans: Sequence[tuple[int, int]],
    text_length: int,
    *,
    budget: int,
    overlap: int,
    max_windows: int | None = None,
) -> tuple[list[Window], bool]:
    """Cut a text whose tokens have character ``spans`` into windows.

    Returns the windows and whether a ``max_windows`` cap dropped some of them.
    A text with no tokens (empty, whitespace) is a single window of the whole text.
    """
    if budget < 1:
        raise ValueError(f"window budget must be >= 1 token, got {budget}")
    if not 0 <= overlap < budget:
        raise ValueError(f"overlap must be in [0, budget={budget}), got {overlap}")
    n = len(spans)
    if n == 0:
        return [Window(0, text_length, 0)], False
    stride = budget - overlap
    token_ranges: list[tuple[int, int]] = []
    start = 0
    while True:
        end = min(start + budget, n)
        if not _cuttable(spans, end):  # never end a window inside a character
            end = _cut_near(spans, end, start, n)
        token_ranges.append((start, end))
        if end >= n:
            break
        nxt = max(start + 1, min(start + stride, end - overlap))
        # Prefer to begin the next window at a word start (never at or before
        # the current start, so the loop always advances; never after this end).
        nxt = _word_start(spans, nxt, floor=start)
        start = nxt if _cuttable(spans, nxt) else _cut_near(spans, nxt, start, end)
    truncated = False
    if max_windows is not None and len(token_ranges) > max_windows:
        token_ranges = token_ranges[:max_windows]
        truncated = True
    windows: list[Window] = []
    for i, (s, e) in enumerate(token_ranges):
        c0 = 0 if i == 0 else spans[s][0]
        c1 = text_length if e >= n else spans[e][0]
        windows.append(Window(c0, c1, e - s))
    return windows, truncated


def aggregate(scores: Sequence[float], how: str, topk: int = 2) -> tuple[float, int]:
    """Combine window scores into one text score; also return the best window's index."""
    if not scores:
        raise ValueError("no window scores to aggregate")
    best = max(range(len(scores)), key=scores.__getitem__)
    if how == "max":
        return scores[best], best
    if how == "first":
        return scores[0], 0
    if how == "mean":
        return sum(scores) / len(scores), best
    if how == "topk_mean":
        top = sorted(scores, reverse=True)[:topk]
        return sum(top) / len(top), best
    raise ValueError(f"unknown aggregate {how!r}")
