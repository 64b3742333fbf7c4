"""Speed benchmarks: ``crossrank bench`` (:mod:`.speed`) and the helpers that it and the
repository's ``benchmarks/`` scripts share (:mod:`.common`: seeded test models, peak RSS,
TREC DL and bundled-sample inputs, machine facts). Nothing heavy at import."""

from __future__ import annotations

__all__: list[str] = []
