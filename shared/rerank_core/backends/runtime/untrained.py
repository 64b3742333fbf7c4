"""Score heads that a load initialised afresh: detected, refused unless asked for, and
never cached.

A checkpoint without score-head weights (a bi-encoder or a base encoder loaded as a
reranker) loads without an error: transformers draws a new random head, so the same pair
scores differently in every process, and a cached ONNX export of such a model is a new
copy per process. :func:`missing_head_weights` reads the weight *names* of the checkpoint
the model came from (a safetensors header, a shard index or a ``.bin`` opened lazily) and
lists the head parameters (those outside the model's base model, e.g. ``classifier.*``)
that it does not hold. Names, not transformers' loading info: sentence-transformers'
``CrossEncoder`` does not return that info, a ready model passed in by the caller has none,
and one check for every family keeps the rule the same everywhere.

An untrained model is refused (:class:`~rerank_core.errors.UntrainedModelError`) unless the
caller passes ``allow_untrained=True``; then a warning is logged once per model and its
ONNX exports go to a :class:`ScratchDir`, never to the export cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import struct
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any

from ...errors import ConfigError, UntrainedModelError

__all__ = [
    "ScratchDir",
    "check_allow_untrained",
    "checkpoint_weight_names",
    "head_digest",
    "missing_head_weights",
    "refuse_untrained",
]

logger = logging.getLogger("crossrank")

# in the order transformers prefers them
_SINGLE = ("model.safetensors", "pytorch_model.bin")
_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def check_allow_untrained(value: object) -> bool:
    """``allow_untrained`` checked (before anything loads): True or False."""
    if not isinstance(value, bool):
        raise ConfigError(f"allow_untrained must be True or False, got {value!r}")
    return value


def checkpoint_weight_names(model_dir: str | Path | None) -> tuple[Path, set[str]] | None:
    """The weights file (or shard index) of a local model directory and the weight names
    it holds; ``None`` when there is no directory or no weights file this can read."""
    if model_dir is None or not Path(model_dir).is_dir():
        return None
    folder = Path(model_dir)
    try:
        for name in _INDEXES:
            if (folder / name).is_file():
                index = json.loads((folder / name).read_text(encoding="utf-8"))
                return folder / name, set(index["weight_map"])
        for name in _SINGLE:
            path = folder / name
            if path.is_file():
                return path, _safetensors_names(path) if path.suffix == ".safetensors" else (
                    _bin_names(path)
                )
    except Exception:  # an unreadable checkpoint: not this check's to report
        return None
    return None


def _safetensors_names(path: Path) -> set[str]:
    """The tensor names in a safetensors header (8-byte length, then JSON): no tensor read."""
    with path.open("rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    return {k for k in header if k != "__metadata__"}


def _bin_names(path: Path) -> set[str]:
    import torch  # a .bin checkpoint is only loaded by a backend that has torch

    state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    return set(state)


def missing_head_weights(hf_model: Any, model_dir: str | Path | None) -> list[str] | None:
    """The score-head parameters of ``hf_model`` that its checkpoint in ``model_dir`` does
    not hold (so the load initialised them at random); ``[]`` for a trained head; ``None``
    when this cannot be told (no local checkpoint, no base model to tell the head from).

    The head is every parameter outside ``hf_model.base_model_prefix`` (``bert.``,
    ``roberta.``, ...). A head module (``classifier``, ``score``, ...) counts as present when
    the checkpoint has any weight under it, so renames inside it (old ``gamma``/``beta``
    names) never raise a false alarm."""
    prefix = str(getattr(hf_model, "base_model_prefix", "") or "")
    if not prefix or not hasattr(hf_model, prefix):
        return None
    found = checkpoint_weight_names(model_dir)
    if found is None:
        return None
    _, names = found
    tied = getattr(hf_model, "all_tied_weights_keys", None)
    tied_keys = set(tied) if isinstance(tied, dict) else set()
    head = [
        n
        for n, _ in hf_model.named_parameters()
        if not n.startswith(prefix + ".") and n not in tied_keys
    ]
    if not head:
        return None

    def held(module: str) -> bool:
        return any(k == module or k.startswith(module + ".") or f".{module}." in k for k in names)

    present = {m for m in {n.split(".", 1)[0] for n in head} if held(m)}
    return sorted(n for n in head if n.split(".", 1)[0] not in present)


_warned: set[str] = set()
_warned_lock = threading.Lock()


def refuse_untrained(
    model_id: str,
    missing: list[str] | None,
    *,
    allow_untrained: bool,
    checkpoint: str | Path | None = None,
) -> bool:
    """Whether the model is untrained (``missing`` non-empty). Untrained and not allowed:
    :class:`UntrainedModelError` naming the model, the missing weights and the fix.
    Untrained and allowed: one warning per model id and process."""
    if not missing:
        return False
    shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
    where = f" ({checkpoint})" if checkpoint is not None else ""
    if not allow_untrained:
        raise UntrainedModelError(
            f"model {model_id!r} has no trained score head: its checkpoint{where} holds no "
            f"weights for {shown}, so they were initialised at random on this load and every "
            "process would score differently (a bi-encoder or base encoder loaded as a "
            "reranker?). Use a trained reranker (a cross-encoder such as "
            "cross-encoder/ms-marco-MiniLM-L-6-v2, a BGE reranker, or models/crossrank-minilm-l6 "
            "in a crossrank checkout), or pass allow_untrained=True for plumbing tests only "
            "(random scores, never cached as an ONNX export).",
            model=model_id,
            missing=missing,
        )
    with _warned_lock:
        first = model_id not in _warned
        _warned.add(model_id)
    if first:
        logger.warning(
            "model %r has an untrained score head (no weights for %s in its checkpoint): its "
            "scores are random and differ in every process; allowed by allow_untrained=True, "
            "its ONNX export is not cached",
            model_id,
            shown,
        )
    return True


def head_digest(module: Any, names: list[str] | None = None) -> str:
    """Digest of the score head's weights as loaded (``names``: which parameters; default
    the last two). A random head differs on every load: the fingerprint must say so."""
    h = hashlib.sha256()
    params = list(module.named_parameters())
    chosen = [(n, p) for n, p in params if n in set(names)] if names else params[-2:]
    for name, param in chosen:
        h.update(name.encode())
        h.update(param.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class ScratchDir:
    """A private temporary directory for the ONNX export of an untrained model: created
    on first use, removed by :meth:`remove` (the backend's ``close()``), when the owner is
    garbage-collected, or at interpreter exit, whichever comes first."""

    def __init__(self, owner: object) -> None:
        self._path: Path | None = None
        self._owner = weakref.ref(owner)
        self._finalizer: weakref.finalize[Any, Any] | None = None

    @property
    def path(self) -> Path:
        if self._path is None:
            self._path = Path(tempfile.mkdtemp(prefix="crossrank-untrained-"))
            owner = self._owner()
            target = owner if owner is not None else self
            self._finalizer = weakref.finalize(
                target, shutil.rmtree, str(self._path), ignore_errors=True
            )
        return self._path

    def remove(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
