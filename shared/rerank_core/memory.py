"""GPU out-of-memory recovery: halve a batch's token budget until it fits.

:class:`MemoryGuard` sits between the batch planners and one model call. A batch that
raises an out-of-memory error is split under half its padded-token size and retried, down
to one pair; the smaller budget is kept for every later batch of the engine (and logged
once per change), so the next calls do not run into the same wall. No caller's request is
lost: every pair of the failed batch is retried. Only a single pair that does not fit
fails, with a :class:`~rerank_core.errors.BackendError` that says so.

Out-of-memory errors are recognised without importing torch: by type name
(``torch.OutOfMemoryError``, ``torch.cuda.OutOfMemoryError``), by ``isinstance`` when torch
is already loaded, and by the "CUDA/MPS ... out of memory" message older torch versions
put on a plain ``RuntimeError`` — on the error itself or anything it was raised from.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
from collections.abc import Callable, Sequence

from ._validate import positive_int
from .batching import plan_batches
from .errors import BackendError
from .types import Pair

__all__ = ["MemoryGuard", "free_accelerator_cache", "is_out_of_memory"]

logger = logging.getLogger("crossrank")

_MESSAGES = ("cuda out of memory", "mps backend out of memory", "hip out of memory")


def _is_oom_one(exc: BaseException) -> bool:
    if any(t.__name__ == "OutOfMemoryError" for t in type(exc).__mro__):
        return True
    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    if isinstance(oom, type) and isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in _MESSAGES)


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error it was raised from) is an accelerator out-of-memory
    error. Never imports torch."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        if _is_oom_one(e):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


def free_accelerator_cache() -> None:
    """Release torch's cached CUDA blocks, when torch is loaded and CUDA is in use."""
    torch = sys.modules.get("torch")
    if torch is None:
        return
    try:
        if torch.cuda.is_initialized():
            torch.cuda.empty_cache()
    except Exception:  # best effort: never turn recovery into a new failure
        logger.debug("torch.cuda.empty_cache() failed", exc_info=True)


RunBatch = Callable[[list[Pair]], list[float]]


class MemoryGuard:
    """Runs batches through ``run`` within a padded-token budget that shrinks on
    out-of-memory errors.

    ``budget``: padded tokens (pairs x longest pair) per model call, the engine's
    ``max_batch_tokens`` at first. :meth:`run` re-cuts a batch that exceeds the current
    budget, and on an out-of-memory error halves the failing batch's padded size, keeps it
    as the new budget and retries the same pairs in smaller batches. Thread-safe.
    """

    def __init__(self, run: RunBatch, budget: int) -> None:
        self._run = run
        self._budget = positive_int("max_batch_tokens", budget)
        self._lock = threading.Lock()
        self.halvings = 0

    @property
    def budget(self) -> int:
        """The padded-token budget per model call that is known to work (so far)."""
        return self._budget

    def run(self, pairs: Sequence[Pair], lengths: Sequence[int]) -> list[float]:
        """Scores of ``pairs`` (token lengths ``lengths``), in order."""
        out = [math.nan] * len(pairs)
        batches = plan_batches(lengths, batch_size=max(1, len(pairs)), max_tokens=self._budget)
        for batch in batches:
            sub_pairs = [pairs[i] for i in batch]
            sub_lengths = [lengths[i] for i in batch]
            for i, s in zip(batch, self._attempt(sub_pairs, sub_lengths), strict=True):
                out[i] = s
        return out

    def _attempt(self, pairs: list[Pair], lengths: list[int]) -> list[float]:
        try:
            return self._run(pairs)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            padded = len(pairs) * max(max(lengths), 1)
            free_accelerator_cache()
            if len(pairs) == 1:
                raise BackendError(
                    f"out of accelerator memory on a single pair of {padded} tokens: "
                    "use a smaller max_length, a lower precision or another device"
                ) from exc
            self._shrink(max(1, padded // 2), len(pairs), padded)
        return self.run(pairs, lengths)

    def _shrink(self, budget: int, n_pairs: int, padded: int) -> None:
        with self._lock:
            if budget >= self._budget:
                return
            self._budget = budget
            self.halvings += 1
        logger.warning(
            "out of accelerator memory on a batch of %d pairs (%d padded tokens): retrying "
            "it in smaller batches; max_batch_tokens is now %d for this engine",
            n_pairs,
            padded,
            budget,
        )
