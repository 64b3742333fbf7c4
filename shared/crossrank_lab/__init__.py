"""crossrank's tooling: ranking-quality evaluation, fine-tuning and speed benchmarks.

It ships in the ``crossrank`` distribution next to the run-time engine ``rerank_core`` and
uses only rerank_core's public API. The ``crossrank`` command finds its subcommands through
the ``crossrank.commands`` entry-point group:

- ``crossrank eval``     :mod:`crossrank_lab.commands.eval`      (extra ``eval``)
- ``crossrank finetune`` :mod:`crossrank_lab.commands.finetune`  (extra ``train``)
- ``crossrank bench``    :mod:`crossrank_lab.commands.bench`     (extra ``minilm``; peers optional)

Packages: :mod:`.quality` (BEIR data, BM25 first stage, metrics, depth sweeps, reports,
training lists, the trainer, long-document studies) and :mod:`.bench` (the speed benchmark
and the helpers the repository's ``benchmarks/`` scripts share: seeded test models, peak
RSS, TREC DL loading). ``import crossrank_lab`` imports nothing heavy.
"""

from __future__ import annotations

__all__: list[str] = []
