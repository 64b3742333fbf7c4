"""Score scales and the cutoffs compared with them.

A backend declares the scale of what it returns (``Backend.score_scale``): raw ``"logit"``
(the local cross-encoders: MiniLM, BGE) or ``"probability"`` (0–1; Cohere's
``relevance_score``). With ``normalize="sigmoid"`` the engine maps logits to 0–1, so the
scale of the *results* is :func:`results_scale`.

A cutoff (``min_score``, ``confidence_threshold``) is a number on some scale. By default it
is read on the results' scale; ``cutoff_scale="probability"`` or ``"logit"`` says which
scale it was written for and :func:`to_results_scale` converts it exactly (the sigmoid is
monotonic: the same texts pass). A cutoff strictly between 0 and 1 read on logits is
probably a probability copied from a 0–1 scorer (LlamaIndex's ``SentenceTransformerRerank``
on a plain model directory): :class:`CutoffChecks` warns once per option.
"""

from __future__ import annotations

import logging
import math
import threading
from typing import Literal

from ._validate import number, one_of
from .errors import ConfigError
from .types import ScoreScale

__all__ = [
    "CUTOFF_SCALES",
    "CutoffChecks",
    "CutoffScale",
    "check_cutoff_scale",
    "logit",
    "results_scale",
    "to_results_scale",
]

logger = logging.getLogger("crossrank")

CutoffScale = Literal["logit", "probability"] | None
CUTOFF_SCALES: tuple[CutoffScale, ...] = (None, "logit", "probability")


def check_cutoff_scale(value: object) -> CutoffScale:
    one_of("cutoff_scale", value, CUTOFF_SCALES)
    return value  # type: ignore[return-value]


def results_scale(backend_scale: ScoreScale, normalize: str | None) -> ScoreScale:
    """The scale of the scores an engine returns."""
    return "probability" if normalize == "sigmoid" or backend_scale == "probability" else "logit"


def logit(p: float) -> float:
    """The inverse of the sigmoid (±inf at 0 and 1)."""
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    return math.log(p / (1.0 - p))


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def to_results_scale(
    name: str, value: float | None, cutoff_scale: CutoffScale, scale: ScoreScale
) -> float | None:
    """``value`` (written on ``cutoff_scale``; ``None``: on the results' scale) on the
    results' ``scale``. A probability must lie in [0, 1] (ConfigError otherwise)."""
    value = number(name, value, allow_none=True)
    if value is None or cutoff_scale is None or cutoff_scale == scale:
        if value is not None and cutoff_scale == "probability" and not 0.0 <= value <= 1.0:
            raise ConfigError(f"{name}={value:g} on cutoff_scale='probability' must be in [0, 1]")
        return value
    if cutoff_scale == "probability":
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{name}={value:g} on cutoff_scale='probability' must be in [0, 1]")
        return logit(value)
    return _sigmoid(value)  # a logit cutoff against 0–1 results


class CutoffChecks:
    """Warn-once bookkeeping for one engine: a 0–1 cutoff read on raw logits."""

    def __init__(self, backend_name: str) -> None:
        self._backend_name = backend_name
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def check(
        self, name: str, value: float | None, cutoff_scale: CutoffScale, scale: ScoreScale
    ) -> float | None:
        """:func:`to_results_scale`, warning once per option name when a value strictly
        between 0 and 1 is read, with no declared scale, on raw logits."""
        out = to_results_scale(name, value, cutoff_scale, scale)
        if value is None or cutoff_scale is not None or scale != "logit" or not 0 < value < 1:
            return out
        with self._lock:
            if name in self._warned:
                return out
            self._warned.add(name)
        logger.warning(
            "%s=%g is compared with raw logits from %s (unbounded, same order as a sigmoid); "
            "if it was written for 0–1 scores (e.g. LlamaIndex's SentenceTransformerRerank), "
            "pass cutoff_scale='probability' (converted exactly) or normalize='sigmoid'",
            name,
            value,
            self._backend_name,
        )
        return out
