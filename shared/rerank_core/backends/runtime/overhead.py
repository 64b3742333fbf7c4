"""How many tokens a backend adds around a (query, text) pair, measured from its tokenizer.

The engine cuts a long text into windows of ``max_length`` − query tokens − *added*
tokens, counting query and text tokens the way the backend's span tokenizer counts them
(each alone, no special tokens). What a backend adds (special tokens, a prompt or chat
template, an instruction) is not always a constant of the tokenizer: a template's text
can merge with the caller's text at a junction (``": "`` + ``"word"`` → ``":"``,
``" word"``), a window that starts with a space may cost one more token, and so on. So
the overhead is measured: the backend encodes a set of probe pairs exactly as it encodes
real ones, and the largest ``encoded length − query tokens − text tokens`` is the
overhead it states. The probes cover the junctions that change counts: leading and
trailing spaces, punctuation before a newline, digits, non-ASCII text, empty texts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ...types import Pair
from .hf import HFTokenizer

__all__ = ["PROBES", "measure_added_tokens", "pair_added_tokens"]

_QUERIES = (
    "what causes scurvy in sailors",
    "What causes scurvy?",
    "vitamin C deficiency.",
    "covid-19 2020 mortality rate",
    "Überblick: café naïve résumé",
    "q",
    " leading and trailing spaces ",
    "line one\nline two\n",
)
_TEXTS = (
    "Scurvy is caused by a lack of vitamin C in the diet.",
    " The window starts with a space",
    "ends with a space ",
    "ends with punctuation?",
    "ends with a newline\n",
    "\nstarts with a newline",
    "1234 numbers 5.6 first",
    "(parenthesis) and 'quotes' first",
    "Ärzte und Krankenhäuser — ein Überblick",
    "x",
    " ",
    "",
)

PROBES: tuple[Pair, ...] = tuple((q, t) for q in _QUERIES for t in _TEXTS)


def measure_added_tokens(
    encoded_length: Callable[[Sequence[Pair]], list[int]],
    count_tokens: Callable[[Sequence[str]], list[int]],
    probes: Sequence[Pair] = PROBES,
) -> int:
    """The most tokens the backend adds to a pair, over ``probes``.

    ``encoded_length(pairs)``: each pair's length as the backend encodes it (everything
    included, nothing truncated). ``count_tokens(strings)``: each string's token count as
    the engine counts it (the backend's span tokenizer, no special tokens).
    """
    pairs = list(probes)
    lengths = encoded_length(pairs)
    counts = count_tokens([s for pair in pairs for s in pair])
    added = [n - counts[2 * i] - counts[2 * i + 1] for i, n in enumerate(lengths)]
    return max(0, *added)


def pair_added_tokens(hf_tokenizer: Any) -> int:
    """What a transformers tokenizer adds to a (query, text) pair it encodes as a pair
    (``tokenizer(query, text)``), measured over :data:`PROBES`."""
    spans = HFTokenizer(hf_tokenizer, pair_tokens=0)

    def encoded(pairs: Sequence[Pair]) -> list[int]:
        ids = hf_tokenizer(
            [q for q, _ in pairs], [t for _, t in pairs], truncation=False, padding=False
        )["input_ids"]
        return [len(x) for x in ids]

    return measure_added_tokens(encoded, lambda xs: [len(s) for s in spans.token_spans(xs)])
