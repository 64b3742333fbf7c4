"""Where a training list's hard negatives come from: BM25, the bi-encoder, or both.

``bm25`` takes each query's BM25 top ``depth``; ``dense`` the top ``depth`` by the
bi-encoder's cosine (documents the bi-encoder ranks high, embeddings from the same
``encode`` the dense teacher uses); ``mixed`` interleaves the two lists (BM25's first,
then the bi-encoder's first, ...) without repeats, so the pool holds both kinds.
Judged-relevant documents are skipped later, when the lists are built.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from rerank_core.errors import ConfigError

__all__ = ["NEGATIVES", "Negatives", "dense_search", "interleave", "parse_negatives"]

Negatives = Literal["bm25", "dense", "mixed"]
NEGATIVES: tuple[Negatives, ...] = ("bm25", "dense", "mixed")

Hits = list[tuple[str, float]]


def parse_negatives(value: str) -> Negatives:
    name = value.strip().lower()
    if name not in NEGATIVES:
        msg = f"negatives must be one of {', '.join(NEGATIVES)}, got {value!r}"
        raise ConfigError(msg)
    return name


def dense_search(
    encode: Callable[[list[str]], Any],
    doc_ids: Sequence[str],
    doc_texts: Sequence[str],
    queries: Sequence[str],
    k: int,
    *,
    chunk: int = 256,
) -> list[Hits]:
    """Per query, the ``k`` documents of highest cosine, best first, with the cosine.

    ``encode(texts)`` returns L2-normalised embeddings (one row per text).
    """
    import numpy as np

    if len(doc_ids) != len(doc_texts):
        raise ConfigError("dense_search needs one text per document id")
    if not queries:
        return []
    docs = np.asarray(encode(list(doc_texts)), dtype=np.float32)
    qs = np.asarray(encode(list(queries)), dtype=np.float32)
    k = min(k, len(doc_ids))
    out: list[Hits] = []
    for at in range(0, len(qs), chunk):
        sims = qs[at : at + chunk] @ docs.T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < sims.shape[1] else None
        for row in range(sims.shape[0]):
            cand = top[row] if top is not None else np.arange(sims.shape[1])
            order = cand[np.argsort(-sims[row, cand], kind="stable")]
            out.append([(doc_ids[i], float(sims[row, i])) for i in order])
    return out


def interleave(first: Hits, second: Hits, depth: int) -> list[str]:
    """Ids of ``first`` and ``second`` taken in turn, no repeats, at most ``depth``."""
    out: list[str] = []
    seen: set[str] = set()
    for pair in zip(first, second, strict=False):
        for doc, _ in pair:
            if doc not in seen and len(out) < depth:
                seen.add(doc)
                out.append(doc)
    longer = first if len(first) > len(second) else second
    for doc, _ in longer[min(len(first), len(second)) :]:
        if doc not in seen and len(out) < depth:
            seen.add(doc)
            out.append(doc)
    return out
