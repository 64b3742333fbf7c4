"""Evidence windows: the part of a long text that earned its score, with some context.

The engine scores a long text window by window and reports the best window's character
span (``RankedText.window``) and the number of windows (``RankedText.n_windows``).
:func:`evidence_span` widens that span by ``context_chars`` on each side, then to the
nearest word boundary (at most :data:`SNAP_CHARS` further), so the text handed to an LLM
never starts or ends mid-word.
"""

from __future__ import annotations

from ._validate import int_at_least

__all__ = ["SNAP_CHARS", "check_context_chars", "evidence_span"]

SNAP_CHARS = 40


def check_context_chars(value: object) -> int:
    return int_at_least("window_context_chars", value, 0)


def evidence_span(text: str, window: tuple[int, int], context_chars: int = 0) -> tuple[int, int]:
    """``window`` widened by ``context_chars`` characters on each side and to word
    boundaries, within ``text``."""
    check_context_chars(context_chars)
    n = len(text)
    start = max(0, min(window[0], n) - context_chars)
    end = min(n, max(window[1], start) + context_chars)
    if context_chars:
        floor = max(0, start - SNAP_CHARS)
        while start > floor and not text[start - 1].isspace():
            start -= 1
        ceil = min(n, end + SNAP_CHARS)
        while end < ceil and not text[end].isspace():
            end += 1
    return start, end
