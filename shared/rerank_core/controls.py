"""One engine's production controls per call: cutoffs on the right scale, the deadline,
and what is recorded about each ranking.

:class:`CallControls` is built once by the :class:`~rerank_core.engine.Reranker` from its
frozen settings. :meth:`~CallControls.cut` fills a call's ``top_n``, ``min_score`` and
``confidence_threshold`` from the engine's defaults and converts them to the results'
scale (:mod:`~rerank_core.scales`, warning once about a 0–1 cutoff read on logits);
:meth:`~CallControls.deadline` starts the call's :class:`~rerank_core.deadline.Deadline`;
:meth:`~CallControls.finish` ranks, records the rank-1 score of each job in the
``crossrank`` logger (:mod:`~rerank_core.confidence`) and warns once when ``top_n`` is too
close to the number of candidates for reranking to matter (``top_n * 3 > candidates``).
"""

from __future__ import annotations

import logging
import threading

from .confidence import log_ranking
from .config import EngineConfig
from .deadline import Deadline, check_deadline_ms
from .planning import Plan
from .ranking import Cut, results
from .scales import CutoffChecks, CutoffScale, check_cutoff_scale
from .types import Ranking, ScoreScale

__all__ = ["CallControls"]

logger = logging.getLogger("crossrank")


class CallControls:
    """Per-call settings and records for one engine (``config``; ``scale``: the scale of
    its results; ``apply_sigmoid``: whether the engine maps logits to 0–1)."""

    def __init__(
        self, config: EngineConfig, *, scale: ScoreScale, apply_sigmoid: bool, backend_name: str
    ) -> None:
        self._config = config
        self._scale = scale
        self._sigmoid = apply_sigmoid
        self._checks = CutoffChecks(backend_name)
        self._warned_shallow = False
        self._lock = threading.Lock()
        self.cut(None, None, None, None)  # the defaults are checked (and warned about) now

    def cut(
        self,
        top_n: int | None,
        min_score: float | None,
        threshold: float | None,
        scale: CutoffScale,
    ) -> Cut:
        """The call's cut, ``None`` options taking the engine's defaults, the cutoffs on
        the results' scale."""
        c = self._config
        scale = check_cutoff_scale(scale) or c.cutoff_scale
        threshold = threshold if threshold is not None else c.confidence_threshold
        check = self._checks.check
        return Cut(
            top_n if top_n is not None else c.top_n,
            check("min_score", min_score, scale, self._scale),
            check("confidence_threshold", threshold, scale, self._scale),
        )

    def deadline(self, ms: float | None) -> Deadline | None:
        """The call's deadline (``ms``, else the engine's ``deadline_ms``), started now."""
        return Deadline.after(check_deadline_ms(ms) or self._config.deadline_ms)

    def finish(self, plan: Plan, scores: list[float] | None, cut: Cut | None) -> list[Ranking]:
        """Per job, the :class:`Ranking` (input order when ``cut`` is ``None``: a score call,
        which records nothing)."""
        out = results(
            plan,
            scores,
            cut,
            window=self._config.window,
            apply_sigmoid=self._sigmoid,
            scale=self._scale,
        )
        if cut is not None:
            for ranked, texts in zip(out, plan.texts, strict=True):
                self._warn_shallow(cut.top_n, len(texts))
                log_ranking(ranked, len(texts))
        return out

    def _warn_shallow(self, top_n: int | None, n_texts: int) -> None:
        if top_n is None or n_texts == 0 or top_n * 3 <= n_texts:
            return
        with self._lock:
            if self._warned_shallow:
                return
            self._warned_shallow = True
        logger.warning(
            "top_n=%d of only %d candidates: the reranker can barely change which texts are "
            "kept; retrieve at least 3 x top_n (%d) candidates in the first stage",
            top_n,
            n_texts,
            top_n * 3,
        )
