"""MkDocs hook: publish the repository files the pages link to under ``repo/``.

Results pages link to the measured files themselves (``benchmarks/results``) and the model
card of the bundled reranker (``models/crossrank-minilm-l6``) and the example fine-tuning
data files (``examples/finetune_data.*``). They live outside ``docs/``,
so this hook adds them to the site as ``repo/<path>``; a link to a file that does not exist
stays broken and fails ``mkdocs build --strict``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = [  # (folder, file patterns)
    ("benchmarks/results", ("*.md", "*.json", "*.png")),
    ("models/crossrank-minilm-l6", ("README.md", "*.json")),
    ("examples", ("finetune_data.*",)),
]


def on_files(files: Files, config: Any) -> Files:
    for folder, patterns in PUBLISHED:
        for pattern in patterns:
            for path in sorted((ROOT / folder).rglob(pattern)):
                rel = path.relative_to(ROOT).as_posix()
                files.append(File.generated(config, f"repo/{rel}", abs_src_path=str(path)))
    return files
