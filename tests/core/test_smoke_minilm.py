from __future__ import annotations

from rerank_core import Reranker


def test_loads_and_scores(minilm_reranker_backend) -> None:  # type: ignore[no-untyped-def]
    rr = Reranker(minilm_reranker_backend)
    out = rr.rerank("what is a cat", ["a cat is an animal", "Paris is in France"])
    assert sorted(r.index for r in out) == [0, 1]
