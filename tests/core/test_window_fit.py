"""Windows that fit when encoded on their own (issue 14 item 1), on a deterministic
tokenizer that behaves like byte-level BPE at a string's start: a word after a space is
one token, a string's first word (no space before it) is two. Real tokenizers: the
RoBERTa/BERT/ELECTRA case in tests/backends/test_presets.py."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

from helpers import WordTokenizer
from rerank_core.planning import Planner
from rerank_core.windows import make_windows, window_budget

_WORD = re.compile(r"\S+")


class FirstWordTwice:
    """Whitespace words; a string's first word, when nothing precedes it, is two tokens."""

    pair_special_tokens = 3

    def token_spans(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        out = []
        for t in texts:
            spans = []
            for m in _WORD.finditer(t):
                a, b = m.span()
                if a == 0 and b - a >= 2:  # no space before it: split in two
                    spans += [(a, a + 1), (a + 1, b)]
                else:
                    spans.append((a, b))
            out.append(spans)
        return out


TEXT = " ".join(f"word{i}" for i in range(60))
QUERY = "a query"


def _alone(tok: FirstWordTwice | WordTokenizer, text: str) -> int:
    return len(tok.token_spans([text])[0])


def test_every_window_fits_on_its_own_and_the_text_is_covered() -> None:
    tok = FirstWordTwice()
    planner = Planner(tok, max_length=20, overlap=3, max_query_tokens=8)
    plan = planner.plan([(QUERY, [TEXT])])
    budget = window_budget(20, _alone(tok, QUERY), 3)
    windows = plan.plans[0][0].windows
    assert len(windows) > 3
    assert windows[0].start == 0 and windows[-1].end == len(TEXT)
    assert all(b.start <= a.end for a, b in itertools.pairwise(windows))
    for w in windows:
        assert w.n_tokens == _alone(tok, TEXT[w.start : w.end]) <= budget
    # counted in place, the windows after the first were one token over
    spans = tok.token_spans([TEXT])[0]
    in_place, _ = make_windows(spans, len(TEXT), budget=budget, overlap=3)
    assert max(_alone(tok, TEXT[w.start : w.end]) for w in in_place) == budget + 1
    # the pair lengths the batcher sees are what the model encodes
    assert plan.lengths == [_alone(tok, QUERY) + w.n_tokens + 3 for w in windows]


def test_a_tokenizer_that_encodes_pieces_as_in_place_is_cut_as_before() -> None:
    tok = WordTokenizer()
    planner = Planner(tok, max_length=20, overlap=3, max_query_tokens=8)
    windows = planner.plan([(QUERY, [TEXT])]).plans[0][0].windows
    budget = window_budget(20, _alone(tok, QUERY), 3)
    in_place, _ = make_windows(tok.token_spans([TEXT])[0], len(TEXT), budget=budget, overlap=3)
    assert windows == tuple(in_place)


def test_a_cut_query_is_counted_as_encoded() -> None:
    tok = FirstWordTwice()
    planner = Planner(tok, max_length=40, overlap=2, max_query_tokens=3)
    query = "alpha beta gamma delta"  # alpha is two tokens: cut after beta
    cut, n, full = planner.model_query(query)
    assert (cut, n, full) == ("alpha beta", 3, 5)
    plan = planner.plan([(query, ["x"])])
    assert plan.cut_queries == [5]
