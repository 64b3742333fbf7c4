"""The multi-abstract long-document builder (crossrank_lab.quality.longdocs) on a tiny
synthetic abstract corpus: fast, no model."""

from __future__ import annotations

from pathlib import Path

import pytest
from crossrank_lab.quality.data import Dataset, DatasetError, Doc
from crossrank_lab.quality.longdocs import multi_abstract_documents
from rerank_core.errors import ConfigError


def _words(text: str) -> int:
    return len(text.split())


def _dataset(n_docs: int = 30) -> Dataset:
    corpus = {f"d{i:02d}": Doc(f"Title {i}", f"abstract number {i} " * 3) for i in range(n_docs)}
    queries = {"q1": "first claim", "q2": "second claim"}
    qrels = {"q1": {"d00": 1, "d05": 1}, "q2": {"d01": 1}}
    return Dataset("tiny", Path("."), "test", corpus, queries, qrels)


def _run() -> dict[str, list[tuple[str, float]]]:
    return {
        "q1": [("d00", 9.0), ("d02", 8.0), ("d03", 7.0), ("d04", 6.0)],
        "q2": [("d01", 5.0), ("d06", 4.0), ("d07", 3.0)],
    }


def test_each_candidate_is_one_of_k_whole_abstracts_at_its_recorded_slot() -> None:
    ds = _dataset()
    docs = multi_abstract_documents(ds, _run(), 3, k=4, count_tokens=_words, seed=1)
    assert set(docs) == {"q1", "q2"}
    assert list(docs["q1"]) == ["d00", "d02", "d03"]  # the top `depth`, ids (so qrels) kept
    bodies = {ds.body(d): d for d in ds.corpus}
    for qid, built in docs.items():
        for doc_id, long in built.items():
            parts = long.text.split("\n\n")
            assert len(parts) == 4 and all(p in bodies for p in parts)
            assert len(set(parts)) == 4  # distinct abstracts
            assert parts[long.position] == ds.body(doc_id)
            assert long.text[long.start :].startswith(ds.body(doc_id))
            assert long.tokens_before == sum(_words(p) for p in parts[: long.position])
            fillers = {bodies[p] for i, p in enumerate(parts) if i != long.position}
            # never a judged document of the query, never one of its candidates
            assert not fillers & set(ds.qrels[qid])
            assert not fillers & {d for d, _ in _run()[qid]}


def test_deterministic_per_query_and_seeded() -> None:
    ds = _dataset()
    a = multi_abstract_documents(ds, _run(), 3, k=3, count_tokens=_words, seed=7)
    b = multi_abstract_documents(ds, _run(), 3, k=3, count_tokens=_words, seed=7)
    assert a == b
    c = multi_abstract_documents(ds, _run(), 3, k=3, count_tokens=_words, seed=8)
    assert a != c
    # a query's documents do not depend on the other queries built
    only_q2 = Dataset("tiny", Path("."), "test", ds.corpus, {"q2": "second claim"}, ds.qrels)
    assert multi_abstract_documents(only_q2, _run(), 3, k=3, count_tokens=_words, seed=7) == {
        "q2": a["q2"]
    }


def test_positions_cover_every_slot_and_input_is_not_mutated() -> None:
    ds = _dataset(200)
    run = {"q1": [(f"d{i:02d}", float(-i)) for i in range(10, 90)]}
    before = dict(run["q1"])
    docs = multi_abstract_documents(ds, run, 80, k=4, count_tokens=_words, seed=0)
    assert {d.position for d in docs["q1"].values()} == {0, 1, 2, 3}
    assert dict(run["q1"]) == before and len(run["q1"]) == 80
    # k=1: the abstract alone
    one = multi_abstract_documents(ds, run, 2, k=1, count_tokens=_words, seed=0)
    assert [d.text for d in one["q1"].values()] == [ds.body("d10"), ds.body("d11")]


def test_bad_arguments_raise_typed_errors() -> None:
    ds = _dataset(8)
    with pytest.raises(ConfigError, match="k"):
        multi_abstract_documents(ds, _run(), 3, k=0, count_tokens=_words)
    with pytest.raises(ConfigError, match="depth"):
        multi_abstract_documents(ds, _run(), 0, count_tokens=_words)
    # q1 bans d00, d02-d05 (judged or candidates): 3 of 8 left, 5 fillers needed
    with pytest.raises(DatasetError, match="q1"):
        multi_abstract_documents(ds, _run(), 3, k=6, count_tokens=_words)
