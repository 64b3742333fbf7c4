"""Latency deadlines: a point in time after which no new model batch starts.

:class:`Deadline` is made when a call begins (``deadline_ms`` after it). Scorers check it
before each batch, so a call returns at most one batch after its deadline; what was not
scored by then comes back unscored (``RankedText.scored`` is false), after the scored texts
and in first-stage order. :func:`priority_batches` makes that order worth having: under a
deadline, batches follow the caller's order (the first-stage ranking), ``batch_size`` pairs
at a time, each length-sorted inside, so the candidates the first stage liked best are
scored first.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from ._validate import number
from .batching import plan_batches

__all__ = ["Deadline", "check_deadline_ms", "priority_batches"]


def check_deadline_ms(value: object) -> float | None:
    """``deadline_ms`` as a float > 0, or ``None`` (no deadline); else a ConfigError."""
    return number("deadline_ms", value, above=0.0, allow_none=True)


@dataclass(frozen=True, slots=True)
class Deadline:
    """A monotonic point in time (``at``, seconds of ``time.monotonic``) and the budget it
    was made from (``ms``)."""

    at: float
    ms: float

    @classmethod
    def after(cls, ms: float | None) -> Deadline | None:
        """A deadline ``ms`` milliseconds from now, or ``None`` for no deadline."""
        if ms is None:
            return None
        return cls(time.monotonic() + ms / 1000.0, ms)

    def left(self) -> float:
        """Seconds until the deadline (0 when it has passed)."""
        return max(0.0, self.at - time.monotonic())

    def passed(self) -> bool:
        return time.monotonic() >= self.at


def priority_batches(
    lengths: Sequence[int],
    *,
    batch_size: int,
    max_tokens: int | None = None,
    priorities: Sequence[int] | None = None,
) -> list[list[int]]:
    """Batches in priority order: items grouped ``batch_size`` at a time by priority
    (default: their position, i.e. the caller's order), each group cut into length-sorted
    batches under ``max_tokens`` by :func:`~rerank_core.batching.plan_batches`."""
    n = len(lengths)
    prio = list(range(n)) if priorities is None else list(priorities)
    order = sorted(range(n), key=lambda i: (prio[i], i))
    out: list[list[int]] = []
    for g in range(0, n, batch_size):
        group = order[g : g + batch_size]
        sub = plan_batches(
            [lengths[i] for i in group], batch_size=batch_size, max_tokens=max_tokens
        )
        out.extend([group[j] for j in batch] for batch in sub)
    return out
