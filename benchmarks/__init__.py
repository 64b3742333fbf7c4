"""Repository-only benchmarks (not in the wheel); run them from the repository root as
modules, e.g. ``python -m benchmarks.load``.

- :mod:`.speed`      ``crossrank bench`` with results in ``benchmarks/results``
- :mod:`.bge_speed`  the BGE backend against FlagEmbedding (a bge-reranker-base-shaped model)
- :mod:`.fidelity`   nDCG@10 of the fast precision modes against exact scoring (TREC DL)
- :mod:`.load`       sustained load from threads and asyncio tasks, optional Redis outage
- :mod:`.quality`    long-document and teacher studies behind the README's quality tables

The shared helpers (seeded test models, peak RSS, TREC DL loading, machine facts) live in
the wheel-shipped :mod:`crossrank_lab.bench.common`, so ``crossrank bench`` has them too.
"""
