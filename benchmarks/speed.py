"""Speed benchmark: ``python -m benchmarks.speed [options]`` is ``crossrank bench [options]``
with the results written to ``benchmarks/results`` (unless ``--out`` says otherwise).

One process, the same model and inputs for every configuration: sentence-transformers
``CrossEncoder.predict`` defaults, LlamaIndex ``SentenceTransformerRerank``, LangChain
``CrossEncoderReranker`` (each peer only when its package is installed), crossrank exact /
default / warm cache, 16 concurrent callers and long documents. See ``crossrank bench
--help`` for the options.
"""

from __future__ import annotations

import sys

from rerank_core.cli import main

RESULTS = "benchmarks/results"

if __name__ == "__main__":
    argv = sys.argv[1:]
    if not any(a == "--out" or a.startswith("--out=") for a in argv):
        argv += ["--out", RESULTS]
    raise SystemExit(main(["bench", *argv]))
