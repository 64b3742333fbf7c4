"""Pure planning: (query, texts) jobs → windows → unique (query, window) pairs.

Nothing here scores, caches or ranks. :func:`check_jobs` validates what the caller
passed; :class:`Planner` cuts every text into windows with the backend's own
tokenizer (the window budget is what is left beside the query: ``max_length`` −
query tokens − special tokens) and numbers the distinct pairs, so identical windows
within a call are scored once.

A window is counted in place, as tokens of its whole text, but the model encodes it on
its own, and a tokenizer may encode a piece cut out of a text differently: byte-level
BPE (RoBERTa, GPT-2 style) gives the first word of a window that starts after a space
no leading-space token, often one or two tokens more; WordPiece does the same to a
window that starts inside a word. So every window of a text cut in several is encoded
again on its own, and a text with a window over budget is cut again with a budget that
much smaller, until every window fits: no window is ever longer than the model takes
(the tokenizer would cut it silently). A text whose windows all fit as counted is cut
exactly as before. The settings come from
:meth:`EngineOptions.resolve <rerank_core.config.EngineOptions.resolve>`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .config import EngineConfig
from .errors import EmptyQueryError, InputError, InvalidTextError
from .types import Pair, Tokenizer
from .windows import Window, make_windows, window_budget

__all__ = ["Job", "Plan", "Planner", "TextPlan", "check_jobs"]

Job = tuple[str, list[str]]

_SURROGATES = re.compile("[\ud800-\udfff]")


def check_jobs(jobs: Iterable[tuple[str, Sequence[str]]]) -> list[Job]:
    """The jobs as (query, copy of texts), or a typed error naming the bad item."""
    out: list[Job] = []
    for qi, job in enumerate(jobs):
        try:
            query, texts = job
        except (TypeError, ValueError):
            raise InputError(f"job {qi} must be a (query, texts) pair") from None
        where = "" if qi == 0 else f" (job {qi})"
        if not isinstance(query, str) or not query.strip():
            raise EmptyQueryError(f"query{where} must be a non-blank string, got {query!r:.80}")
        if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
            raise InputError(f"texts{where} must be a list of strings, got {type(texts).__name__}")
        items = list(texts)  # a copy: the caller's list is never touched
        for i, t in enumerate(items):
            if not isinstance(t, str):
                raise InvalidTextError(
                    f"texts[{i}]{where} must be a string, got {type(t).__name__}",
                    index=i,
                    query_index=qi,
                )
        out.append((query, items))
    return out


@dataclass(frozen=True, slots=True)
class TextPlan:
    """One text's windows, whether a cap dropped some, and the pair id of each window."""

    windows: tuple[Window, ...]
    truncated: bool
    uids: tuple[int, ...]


@dataclass(slots=True)
class Plan:
    """What one call must score: the caller's texts and their windows per job, the
    distinct pairs with their token lengths, and the queries cut to fit
    (``cut_queries``: the original token count of each)."""

    texts: list[list[str]]
    plans: list[list[TextPlan]] = field(default_factory=list)
    pairs: list[Pair] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    cut_queries: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Planner:
    """Cuts jobs into windows for one backend's tokenizer and ``max_length``."""

    tokenizer: Tokenizer
    max_length: int
    overlap: int | None  # None: half of each window budget
    max_query_tokens: int
    max_windows: int | None = None

    @classmethod
    def for_config(cls, tokenizer: Tokenizer, max_length: int, config: EngineConfig) -> Planner:
        return cls(
            tokenizer,
            max_length,
            config.overlap,
            config.max_query_tokens,
            config.window.max_windows,
        )

    def model_query(self, query: str) -> tuple[str, int, int]:
        """The query as the model sees it (cut to ``max_query_tokens``), its token count
        (the cut query encoded on its own), and its token count before the cut."""
        clean = _SURROGATES.sub("\ufffd", query)
        spans = self.tokenizer.token_spans([clean])[0]
        if len(spans) <= self.max_query_tokens:
            return clean, len(spans), len(spans)
        cut = clean[: spans[self.max_query_tokens - 1][1]]
        return cut, len(self.tokenizer.token_spans([cut])[0]), len(spans)

    def fitted_windows(
        self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]], budget: int
    ) -> list[tuple[list[Window], bool]]:
        """Each text's windows (and whether a cap dropped some) such that every window,
        encoded on its own, has at most ``budget`` tokens; ``n_tokens`` is that count."""
        cut = [self._cut(sp, len(t), budget) for t, sp in zip(texts, spans, strict=True)]
        tight = dict.fromkeys(range(len(texts)), budget)  # the budget each text is cut at
        todo = [i for i, (windows, _) in enumerate(cut) if len(windows) > 1]
        while todo:
            pieces = [texts[i][w.start : w.end] for i in todo for w in cut[i][0]]
            counts = iter([len(x) for x in self.tokenizer.token_spans(pieces)])
            again = []
            for i in todo:
                windows, truncated = cut[i]
                n = [next(counts) for _ in windows]
                over = max(n) - budget
                if over <= 0 or tight[i] - over < 1:  # fits (or cannot be cut finer)
                    cut[i] = (
                        [Window(w.start, w.end, c) for w, c in zip(windows, n, strict=True)],
                        truncated,
                    )
                    continue
                tight[i] -= over
                cut[i] = self._cut(spans[i], len(texts[i]), tight[i])
                again.append(i)
            todo = again
        return cut

    def _cut(
        self, spans: Sequence[tuple[int, int]], length: int, budget: int
    ) -> tuple[list[Window], bool]:
        return make_windows(
            spans,
            length,
            budget=budget,
            overlap=budget // 2 if self.overlap is None else min(self.overlap, budget - 1),
            max_windows=self.max_windows,
        )

    def plan(self, jobs: Sequence[Job]) -> Plan:
        special = int(self.tokenizer.pair_special_tokens)
        plan = Plan(texts=[texts for _, texts in jobs])
        uid_of: dict[Pair, int] = {}
        clean = [[_SURROGATES.sub("\ufffd", t) for t in texts] for _, texts in jobs]
        flat = [t for texts in clean for t in texts]
        all_spans = iter(self.tokenizer.token_spans(flat) if flat else [])
        for (query, _), texts in zip(jobs, clean, strict=True):
            spans = [next(all_spans) for _ in texts]
            mq, qn, full = self.model_query(query)
            if full > self.max_query_tokens:
                plan.cut_queries.append(full)
            budget = window_budget(self.max_length, qn, special)
            text_plans: list[TextPlan] = []
            fitted = self.fitted_windows(texts, spans, budget)
            for text, (windows, truncated) in zip(texts, fitted, strict=True):
                uids = []
                for w in windows:
                    pair = (mq, text[w.start : w.end])
                    uid = uid_of.get(pair)
                    if uid is None:
                        uid = uid_of[pair] = len(plan.pairs)
                        plan.pairs.append(pair)
                        plan.lengths.append(qn + w.n_tokens + special)
                    uids.append(uid)
                text_plans.append(TextPlan(tuple(windows), truncated, tuple(uids)))
            plan.plans.append(text_plans)
        return plan
