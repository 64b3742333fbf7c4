from __future__ import annotations

import pytest
from rerank_core.batching import plan_batches


def test_sorted_longest_first_and_cut_by_count() -> None:
    lengths = [5, 50, 10, 40, 20]
    batches = plan_batches(lengths, batch_size=2)
    assert batches == [[1, 3], [4, 2], [0]]


def test_cut_by_padded_token_budget() -> None:
    lengths = [100, 90, 80, 10, 10, 10]
    batches = plan_batches(lengths, batch_size=32, max_tokens=250)
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 250
    assert sorted(i for b in batches for i in b) == list(range(6))


def test_oversized_item_is_its_own_batch() -> None:
    assert plan_batches([1000, 5], batch_size=8, max_tokens=100) == [[0], [1]]


def test_empty_and_invalid() -> None:
    assert plan_batches([], batch_size=4) == []
    with pytest.raises(ValueError):
        plan_batches([1], batch_size=0)
