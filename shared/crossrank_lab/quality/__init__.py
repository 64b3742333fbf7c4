"""Ranking-quality tooling behind ``crossrank eval`` and ``crossrank finetune``.

One module per job:

- :mod:`.data`       BEIR-layout folders (corpus, queries, qrels) and TREC run files
- :mod:`.first_stage` BM25 over a corpus with ``bm25s``, or a given TREC run
- :mod:`.metrics`    trec_eval-exact metrics through ``ir-measures`` (pytrec_eval)
- :mod:`.sweep`      rerank the top-N of a first stage for several N, with latency
- :mod:`.report`     markdown tables and the knee plot (nDCG@10 and latency against N)
- :mod:`.training`   training lists: hard negatives from BM25, teacher scores
- :mod:`.trainer`    the sentence-transformers cross-encoder trainer, bf16 where the CPU has it
- :mod:`.longdocs`   long documents built by burying passages among others

Nothing here is imported by ``import rerank_core`` or ``import crossrank_lab``; the heavy
dependencies (numpy, bm25s, ir-measures, matplotlib, torch, datasets) load inside the
functions that need them, through rerank_core's ``require`` (extras ``eval`` and ``train``).
"""

from __future__ import annotations

__all__: list[str] = []
