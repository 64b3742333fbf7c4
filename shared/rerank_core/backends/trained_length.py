"""The pair length a local model was trained on, when ``crossrank finetune`` recorded it.

``crossrank finetune`` writes ``crossrank_training.json`` next to the weights, with the
training ``max_length`` (tokens per (query, passage) pair) as ``trained_max_length`` (and,
in records written before that key existed, as ``config.max_length``). The local backends
(``minilm``/``cross-encoder``, ``bge``) use it as their default ``max_length`` — the
window length the engine cuts long texts to — because a model scores best on pairs as
long as those it learnt from (measured in ``docs/long-documents-defaults.md``). An explicit
``max_length=`` always wins; a hub id, a ready model object, or a folder without the
record keep the model's own limit. Never longer than the model takes.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

__all__ = ["TRAINING_RECORD", "trained_max_length"]

logger = logging.getLogger("crossrank")

TRAINING_RECORD = "crossrank_training.json"
_MIN = 8


def trained_max_length(model: object) -> int | None:
    """The recorded training ``max_length`` of the model folder ``model`` (``None``: not a
    local folder, no record, or no usable value; an unreadable record is warned about)."""
    if not isinstance(model, (str, os.PathLike)):
        return None
    path = Path(model) / TRAINING_RECORD
    try:
        if not path.is_file():
            return None
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        logger.warning("ignoring %s: %s", path, exc)
        return None
    if not isinstance(record, dict):
        return None
    value = record.get("trained_max_length")
    if value is None and isinstance(record.get("config"), dict):
        value = record["config"].get("max_length")
    if isinstance(value, bool) or not isinstance(value, int) or value < _MIN:
        return None
    return value
