"""Length-sorted batching under a pair count and a padded-token budget."""

from __future__ import annotations

from collections.abc import Sequence

from ._validate import positive_int

__all__ = ["plan_batches"]


def plan_batches(
    lengths: Sequence[int], *, batch_size: int, max_tokens: int | None = None
) -> list[list[int]]:
    """Group item indices into batches, longest first.

    Items are sorted by token length so each batch pads little; a batch closes
    when it holds ``batch_size`` items or when one more item would make its
    padded size (items x longest item) exceed ``max_tokens``. A single item is
    always a batch of its own even if it alone exceeds ``max_tokens``.
    """
    positive_int("batch_size", batch_size)
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        if current:
            too_many = len(current) >= batch_size
            too_big = max_tokens is not None and (len(current) + 1) * longest > max_tokens
            if too_many or too_big:
                batches.append(current)
                current = []
        if not current:
            longest = max(lengths[i], 1)
        current.append(i)
    if current:
        batches.append(current)
    return batches
