"""The fidelity guard: which int8 variant, if any, a model runs with by default.

Whether int8 costs ranking quality depends on the model (its weight and activation ranges)
and on the CPU (without VNNI, int8 products saturate at 16 bits). So the first time a
model is exported for ``precision="auto"`` on a kind of CPU, each int8 variant of
:data:`~rerank_core.backends.runtime.onnx_export.VARIANTS` in turn scores the fixed probe
(:mod:`~rerank_core.backends.runtime.probe`), and the first whose ranking agrees with fp32
by the :data:`~rerank_core.backends.runtime.fidelity.DEFAULT_BAR` becomes the model's
default; when none does, fp32 ONNX is. The verdict, with every variant's figures, is kept
beside the export as ``guard.<cpu key>.json`` and reused: the same model on the same CPU
features always gets the same choice, and the probe runs once. Variants that fail are
deleted from the cache. ``precision="int8"`` skips the guard (the caller asked).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...types import Pair
from .cpu import BF16_FLAGS, INT8_DOT_FLAGS, CpuInfo, cpu_info
from .fidelity import DEFAULT_BAR, Bar, compare
from .onnx_export import VARIANTS, QuantVariant, remove_export
from .probe import load_probe

__all__ = ["GUARD_VERSION", "Verdict", "choose_variant", "cpu_key"]

logger = logging.getLogger("crossrank")

GUARD_VERSION = 1  # bump when the probe, the figures or the bar change
# CPU features that change int8 numerics (VNNI vs 16-bit products) or kernels
_NUMERIC_FLAGS = INT8_DOT_FLAGS | BF16_FLAGS | {"avx2", "avx512f", "avx512bw", "fma", "f16c"}

Scorer = Callable[[Sequence[Pair]], list[float]]
_logged: set[str] = set()


def cpu_key(info: CpuInfo | None = None) -> str:
    """A short key for the CPU features that decide int8 numerics (not the model name:
    two CPUs with the same features compute the same int8 results)."""
    info = info or cpu_info()
    flags = ",".join(sorted(info.flags & _NUMERIC_FLAGS))
    return hashlib.sha256(f"{platform.machine()}|{flags}".encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The guard's choice: ``variant`` (an int8 variant's name, or ``None`` for fp32),
    ``reason`` (one line), ``tried`` (each variant's figures and failures) and the ``bar``."""

    variant: str | None
    reason: str
    tried: tuple[dict[str, Any], ...] = ()
    bar: dict[str, float] = field(default_factory=dict)
    cpu: str = ""
    version: int = GUARD_VERSION

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "variant": self.variant,
            "reason": self.reason,
            "cpu": self.cpu,
            "bar": dict(self.bar),
            "tried": [dict(t) for t in self.tried],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Verdict:
        return cls(
            variant=d["variant"],
            reason=str(d["reason"]),
            tried=tuple(d.get("tried", ())),
            bar=dict(d.get("bar", {})),
            cpu=str(d.get("cpu", "")),
            version=int(d["version"]),
        )


def _read(path: Path, bar: Bar) -> Verdict | None:
    try:
        v = Verdict.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if v.version != GUARD_VERSION or v.bar != bar.as_dict():
        return None
    if v.variant is not None and v.variant not in {x.name for x in VARIANTS}:
        return None
    return v


def _write(path: Path, verdict: Verdict) -> None:
    with contextlib.suppress(OSError):  # an unwritable cache only costs a re-run next time
        fd, tmp = tempfile.mkstemp(prefix=".guard.", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(verdict.as_dict(), f, indent=1)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)


def choose_variant(
    folder: Path,
    *,
    reference: Scorer,
    quantize: Callable[[QuantVariant], Path],
    scorer_for: Callable[[Path], Scorer],
    bar: Bar = DEFAULT_BAR,
    variants: Sequence[QuantVariant] = VARIANTS,
    info: CpuInfo | None = None,
) -> Verdict:
    """The verdict for the export in ``folder`` (read from ``guard.<cpu key>.json`` there,
    else measured and written). ``reference``: fp32 scoring; ``quantize(variant)``: the path
    of that variant's model (made if needed); ``scorer_for(path)``: scoring with it."""
    key = cpu_key(info)
    path = folder / f"guard.{key}.json"
    verdict = _read(path, bar)
    if verdict is None:
        verdict = _measure(key, reference, quantize, scorer_for, bar, variants)
        _write(path, verdict)
    if str(path) not in _logged:
        _logged.add(str(path))
        logger.info("precision='auto' for the export in %s: %s", folder, verdict.reason)
    return verdict


def _measure(
    key: str,
    reference: Scorer,
    quantize: Callable[[QuantVariant], Path],
    scorer_for: Callable[[Path], Scorer],
    bar: Bar,
    variants: Sequence[QuantVariant],
) -> Verdict:
    probe = load_probe()
    pairs = probe.pairs()
    groups = probe.group_slices()
    long = slice(groups[-1].stop if groups else 0, len(pairs))
    ref = reference(pairs)
    # a quarter of the groups first: a variant far off the bar there is not scored further
    head = groups[: max(1, len(groups) // 4)]
    tried: list[dict[str, Any]] = []
    for v in variants:
        model: Path | None = None
        try:
            model = quantize(v)
            score = scorer_for(model)
            first = score(pairs[: head[-1].stop])
            figures = compare(ref[: head[-1].stop], first, head)
            if figures.rel_err_p95 > 2 * bar.max_rel_err_p95:
                failures = [f"on the first {len(head)} groups: " + "; ".join(bar.failures(figures))]
            else:
                rest = score(pairs[head[-1].stop :])
                figures = compare(ref, first + rest, groups, long)
                failures = bar.failures(figures)
        except Exception as exc:  # a variant this ONNX Runtime cannot build or run: next one
            logger.warning("int8 variant %s could not be measured: %s", v.name, exc)
            tried.append({"variant": v.name, "figures": None, "failures": [f"error: {exc}"]})
            if model is not None:
                remove_export(model)
            continue
        tried.append({"variant": v.name, "figures": figures.as_dict(), "failures": failures})
        if not failures:
            reason = (
                f"int8 variant {v.name!r} ({v.describe()}) ranks like fp32 on the "
                f"{len(pairs)}-pair probe: {figures.summary()}"
            )
            return Verdict(v.name, reason, tuple(tried), bar.as_dict(), key)
        remove_export(model)  # never kept: the next load reads the verdict instead
    names = ", ".join(f"{t['variant']} ({'; '.join(t['failures'])})" for t in tried)
    reason = f"no int8 variant ranks like fp32 on the probe: {names}; fp32 on ONNX Runtime"
    return Verdict(None, reason, tuple(tried), bar.as_dict(), key)
