"""First stages: BM25 over a corpus with ``bm25s``, or a TREC run file.

BM25 follows the Pyserini/Anserini defaults used for the BEIR and TREC DL baselines:
Lucene's BM25 variant with ``k1=0.9, b=0.4``, English stop words and the Snowball
English stemmer (PyStemmer) when it is installed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from .._support import installed, require
from .data import Dataset, Run, sort_run

__all__ = ["BM25Index", "bm25_run"]

logger = logging.getLogger("crossrank.quality")


def _stemmer() -> Any:
    if not installed("Stemmer"):
        logger.warning(
            "PyStemmer is not installed: BM25 runs without stemming and scores lower; "
            'install it with: pip install "crossrank[eval]"'
        )
        return None
    return require("Stemmer", extra="eval", purpose="BM25 stemming").Stemmer("english")


class BM25Index:
    """A BM25 index over ``doc_ids``/``texts`` that answers batches of queries."""

    def __init__(
        self,
        doc_ids: Sequence[str],
        texts: Sequence[str],
        *,
        k1: float = 0.9,
        b: float = 0.4,
        show_progress: bool = False,
    ) -> None:
        bm25s = require("bm25s", extra="eval", purpose="BM25")
        if len(doc_ids) != len(texts):
            raise ValueError("doc_ids and texts must have the same length")
        self._bm25s = bm25s
        self._stem = _stemmer()
        self.doc_ids = list(doc_ids)
        self._show = show_progress
        tokens = bm25s.tokenize(
            list(texts), stopwords="en", stemmer=self._stem, show_progress=show_progress
        )
        self._retriever = bm25s.BM25(k1=k1, b=b, method="lucene")
        self._retriever.index(tokens, show_progress=show_progress)
        self._row = {d: i for i, d in enumerate(self.doc_ids)}

    def scores(self, query: str, doc_ids: Sequence[str]) -> list[float]:
        """BM25 score of each of ``doc_ids`` for ``query`` (0 for a document not indexed)."""
        words = self._bm25s.tokenize(
            [query], stopwords="en", stemmer=self._stem, show_progress=False, return_ids=False
        )[0]
        ids = self._retriever.get_tokens_ids(words)
        if not ids:
            return [0.0] * len(doc_ids)
        all_scores = self._retriever.get_scores_from_ids(ids)
        return [float(all_scores[self._row[d]]) if d in self._row else 0.0 for d in doc_ids]

    def search(self, queries: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
        """Top ``k`` (doc id, score) per query, best first; documents scoring 0 are left out."""
        if not queries:
            return []
        k = min(k, len(self.doc_ids))
        tokens = self._bm25s.tokenize(
            list(queries), stopwords="en", stemmer=self._stem, show_progress=False
        )
        docs, scores = self._retriever.retrieve(tokens, k=k, show_progress=self._show, n_threads=1)
        out: list[list[tuple[str, float]]] = []
        for row_d, row_s in zip(docs, scores, strict=True):
            hits = [(self.doc_ids[int(d)], float(s)) for d, s in zip(row_d, row_s, strict=True)]
            out.append([h for h in hits if h[1] > 0.0])
        return out


def bm25_run(
    dataset: Dataset,
    k: int = 100,
    *,
    k1: float = 0.9,
    b: float = 0.4,
    show_progress: bool = False,
) -> Run:
    """BM25 top-``k`` over the dataset's corpus for each of its queries."""
    ids = list(dataset.corpus)
    index = BM25Index(ids, [dataset.body(d) for d in ids], k1=k1, b=b, show_progress=show_progress)
    qids = list(dataset.queries)
    hits = index.search([dataset.queries[q] for q in qids], k)
    return sort_run(dict(zip(qids, hits, strict=True)))
