"""Speed benchmark: ``python benchmarks/speed.py [options]`` is ``crossrank bench [options]``.

One process, the same model and inputs for every configuration: sentence-transformers
``CrossEncoder.predict`` defaults, LlamaIndex ``SentenceTransformerRerank``, LangChain
``CrossEncoderReranker``, crossrank exact / default / warm cache, 16 concurrent callers
and long documents. Writes ``benchmarks/results/speed.{md,json,png}``.
See ``crossrank bench --help`` for the options.
"""

from __future__ import annotations

import sys

from rerank_core.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", *sys.argv[1:]]))
