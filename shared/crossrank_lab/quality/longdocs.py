"""Long documents whose relevant text lies deep inside: each candidate passage buried
among unrelated passages of the same corpus.

For every (query, candidate) of a first-stage run, a document is built from filler
passages until at least ``min_offset`` tokens precede the candidate (plus a random
extra of up to ``jitter`` tokens), then the candidate, then up to ``tail`` tokens of
more filler. Fillers are drawn from the corpus, never from the query's judged documents
or its candidates, so the candidate stays the only text that bears on the query and the
qrels keep their meaning. A reranker that truncates at 512 tokens sees only filler.

:func:`multi_abstract_documents` builds the second set, a real long-document collection
from an abstract corpus such as SciFact: each candidate becomes a document of ``k`` whole
abstracts, the candidate at a random position among them, so the document reads like a
multi-paper digest and the relevant abstract is as likely first as last.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rerank_core.errors import ConfigError

from .data import Dataset, DatasetError, Run

__all__ = ["LongDoc", "bury", "long_documents", "multi_abstract_documents"]


@dataclass(frozen=True, slots=True)
class LongDoc:
    text: str
    start: int  # character offset of the buried candidate
    tokens_before: int  # tokens of filler in front of it
    position: int = -1  # multi-abstract documents: the candidate's slot (0 = first)


def bury(
    passage: str,
    fillers: Sequence[str],
    *,
    count_tokens: Callable[[str], int],
    min_offset: int,
    tail: int,
    rng: random.Random,
) -> LongDoc:
    """Put ``passage`` after at least ``min_offset`` tokens of ``fillers`` (drawn in
    random order), followed by up to ``tail`` tokens of further fillers."""
    order = list(fillers)
    rng.shuffle(order)
    before: list[str] = []
    n_before = 0
    while n_before < min_offset:
        if not order:
            raise ValueError("not enough filler text to bury the passage")
        f = order.pop()
        before.append(f)
        n_before += count_tokens(f)
    after: list[str] = []
    n_after = 0
    while order and n_after < tail:
        f = order.pop()
        after.append(f)
        n_after += count_tokens(f)
    head = " ".join(before) + " "
    return LongDoc(text=head + " ".join([passage, *after]), start=len(head), tokens_before=n_before)


def long_documents(
    dataset: Dataset,
    run: Run,
    depth: int,
    *,
    count_tokens: Callable[[str], int],
    min_offset: int = 512,
    jitter: int = 256,
    tail: int = 128,
    seed: int = 0,
    fillers_per_doc: int = 40,
) -> dict[str, dict[str, LongDoc]]:
    """query id → {doc id: the candidate buried in a long document} for the top ``depth``."""
    rng = random.Random(seed)
    all_ids = sorted(dataset.corpus)
    out: dict[str, dict[str, LongDoc]] = {}
    for qid in dataset.queries:
        cands = [d for d, _ in run.get(qid, [])[:depth]]
        banned = set(dataset.qrels.get(qid, {})) | {d for d, _ in run.get(qid, [])}
        docs: dict[str, LongDoc] = {}
        for doc in cands:
            fillers: list[str] = []
            while len(fillers) < fillers_per_doc:
                f = rng.choice(all_ids)
                if f not in banned:
                    fillers.append(dataset.body(f))
            docs[doc] = bury(
                dataset.body(doc),
                fillers,
                count_tokens=count_tokens,
                min_offset=min_offset + rng.randint(0, jitter),
                tail=rng.randint(0, tail),
                rng=rng,
            )
        out[qid] = docs
    return out


def multi_abstract_documents(
    dataset: Dataset,
    run: Run,
    depth: int,
    *,
    k: int = 4,
    count_tokens: Callable[[str], int],
    seed: int = 0,
    separator: str = "\n\n",
) -> dict[str, dict[str, LongDoc]]:
    """query id → {doc id: a document of ``k`` abstracts, the candidate's among them} for
    each query's first-stage top ``depth``.

    The candidate sits at a random slot (uniform over ``0..k-1``); the other ``k - 1``
    abstracts are distinct documents of the corpus drawn at random, never one the query's
    qrels judge or one of its first-stage candidates, so the qrels carry over unchanged
    (the document keeps the candidate's id). Each query draws from its own generator,
    seeded by ``seed`` and the query id: a query's documents do not depend on which other
    queries are built (``--max-queries`` keeps the same documents).
    """
    if k < 1:
        raise ConfigError(f"k (abstracts per document) must be >= 1, got {k}")
    if depth < 1:
        raise ConfigError(f"depth must be >= 1, got {depth}")
    all_ids = sorted(dataset.corpus)
    out: dict[str, dict[str, LongDoc]] = {}
    for qid in dataset.queries:
        rng = random.Random(f"{seed}:{qid}")
        ranked = [d for d, _ in run.get(qid, [])]
        banned = set(dataset.qrels.get(qid, {})) | set(ranked)
        pool = [d for d in all_ids if d not in banned]
        if len(pool) < k - 1:
            raise DatasetError(
                f"query {qid!r}: only {len(pool)} unjudged non-candidate documents in "
                f"{dataset.name}, {k - 1} needed per document"
            )
        docs: dict[str, LongDoc] = {}
        for doc in ranked[:depth]:
            others = [dataset.body(f) for f in rng.sample(pool, k - 1)]
            slot = rng.randrange(k)
            parts = [*others[:slot], dataset.body(doc), *others[slot:]]
            head = "".join(p + separator for p in parts[:slot])
            docs[doc] = LongDoc(
                text=separator.join(parts),
                start=len(head),
                tokens_before=sum(count_tokens(p) for p in parts[:slot]),
                position=slot,
            )
        out[qid] = docs
    return out
