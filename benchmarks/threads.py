"""Thread scaling: ``python -m benchmarks.threads [--threads 1,2] [options]`` reports pairs/s
of crossrank default, crossrank exact and sentence-transformers ``CrossEncoder.predict`` at
each thread count on the same inputs, and the speedup from the fewest threads to the most
(:mod:`crossrank_lab.bench.threads`); writes ``threads.md`` and ``threads.json`` to
``benchmarks/results`` unless ``--out`` says otherwise.
"""

from __future__ import annotations

import sys
from pathlib import Path

from crossrank_lab.bench.threads import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:], default_out=Path("benchmarks/results")))
