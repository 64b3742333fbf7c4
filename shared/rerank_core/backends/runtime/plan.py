"""The speed plan: which runtime and precision a local model scores with, decided once.

Inputs: the device, what the caller asked for (``precision``, ``runtime``), the backend's
:class:`SpeedPolicy` (data, one per backend family), the CPU's facts and whether the
``fast`` extra (onnxruntime, onnx) is installed. Output: a :class:`SpeedPlan`. Nothing here
loads a model or imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ... import deps
from ..._validate import one_of, positive_int
from ...errors import ConfigError
from .cpu import CpuInfo, cpu_info

__all__ = [
    "RUNTIMES",
    "Choice",
    "Precision",
    "Runtime",
    "SpeedPlan",
    "SpeedPolicy",
    "SpeedRequest",
    "onnx_installed",
    "plan_speed",
]

Runtime = Literal["torch", "onnx"]
Precision = Literal["fp32", "bf16", "fp16", "int8"]
RUNTIMES = ("auto", "torch", "onnx")  # what a backend's ``runtime`` option takes


@dataclass(frozen=True, slots=True)
class Choice:
    """One way to score: ``runtime`` at ``precision``, usable when the CPU has ``needs``
    (``"int8_dot"``, ``"bf16"`` or nothing). ``guarded``: only where the model ranks like
    fp32 with it (the fidelity guard, :mod:`~rerank_core.backends.runtime.guard`, decides at
    load; else fp32 on the same runtime)."""

    runtime: Runtime
    precision: Precision
    needs: Literal["", "int8_dot", "bf16"] = ""
    guarded: bool = False

    def why(self) -> str:
        lib = "ONNX Runtime" if self.runtime == "onnx" else "torch"
        if self.guarded:
            return f"{lib} {self.precision} where the fidelity guard finds it ranks like fp32"
        if self.needs == "int8_dot":
            return f"CPU has int8 dot products: {lib} {self.precision}"
        if self.needs == "bf16":
            return f"CPU has bf16 instructions: {lib} {self.precision}"
        return f"{lib} {self.precision}"


@dataclass(frozen=True, slots=True)
class SpeedPolicy:
    """A backend family's speed policy, as data.

    ``precisions``: the values its ``precision`` option takes. ``cpu_auto``: what
    ``precision="auto"`` picks on the CPU — the first choice the CPU and the installed
    packages allow (with ``runtime="torch"``/``"onnx"`` only that runtime's choices count).
    ``gpu_auto``: ``(device prefix, precision)`` pairs for ``"auto"`` off the CPU
    (``"fp32"`` where none matches).
    """

    precisions: tuple[str, ...]
    cpu_auto: tuple[Choice, ...]
    gpu_auto: tuple[tuple[str, Precision], ...] = ()

    def gpu_precision(self, device: str) -> Precision:
        for prefix, precision in self.gpu_auto:
            if device.startswith(prefix):
                return precision
        return "fp32"


@dataclass(frozen=True, slots=True)
class SpeedRequest:
    """What the caller asked for, checked: ``precision`` (one of the policy's),
    ``runtime`` (``auto``/``torch``/``onnx``) and ``num_threads`` (``None`` or >= 1)."""

    precision: str = "auto"
    runtime: str = "auto"
    num_threads: int | None = None

    @classmethod
    def checked(
        cls, policy: SpeedPolicy, precision: object, runtime: object, num_threads: object
    ) -> SpeedRequest:
        """The request, or a ConfigError naming the bad option."""
        return cls(
            precision=str(one_of("precision", precision, policy.precisions)),
            runtime=str(one_of("runtime", runtime, RUNTIMES)),
            num_threads=positive_int("num_threads", num_threads, allow_none=True),
        )

    @property
    def insists_on_onnx(self) -> bool:
        """ONNX Runtime asked for by name (``runtime="onnx"`` or ``precision="int8"``):
        then it is used or the backend fails, never a silent fallback."""
        return self.runtime == "onnx" or self.precision == "int8"


@dataclass(frozen=True, slots=True)
class SpeedPlan:
    """How the backend will score: the runtime, the precision and why. ``guarded``: the
    precision is a candidate that the fidelity guard confirms or replaces by fp32."""

    runtime: Runtime
    precision: Precision
    reason: str
    guarded: bool = False


def onnx_installed() -> bool:
    """Whether the ``fast`` extra (onnxruntime and onnx) is installed (not imported)."""
    return deps.installed("onnxruntime") and deps.installed("onnx")


def plan_speed(
    *,
    device: str,
    precision: str,
    runtime: str,
    policy: SpeedPolicy,
    info: CpuInfo | None = None,
    have_onnx: bool | None = None,
    keep: Precision | None = None,
) -> SpeedPlan:
    """Resolve ``precision``/``runtime`` (either may be ``"auto"``) for ``device``.

    ``precision="exact"`` means fp32. Off the CPU only torch runs (``"auto"``: the
    policy's ``gpu_auto``). On the CPU ``"auto"`` takes the policy's first possible
    ``cpu_auto`` choice; ``"int8"`` runs on ONNX Runtime, ``"bf16"``/``"fp16"`` on torch,
    ``"fp32"`` on ONNX Runtime when installed (same scores, faster) else torch. ``keep``:
    the dtype of a caller's model that is used as it is (never converted): torch runs it
    in that dtype unless ONNX Runtime is asked for by name. Raises :class:`ConfigError`
    for a combination that cannot run.
    """
    info = info or cpu_info()
    onnx_ok = onnx_installed() if have_onnx is None else have_onnx
    prec = "fp32" if precision == "exact" else precision
    if device != "cpu":
        if runtime == "onnx" or prec == "int8":
            raise ConfigError(
                f"runtime='onnx' and precision='int8' run on the CPU only, not on {device!r}"
            )
        if keep is not None:
            return SpeedPlan("torch", keep, f"{device}: torch {keep}, the model as given")
        chosen = policy.gpu_precision(device) if prec == "auto" else _precision(prec)
        return SpeedPlan("torch", chosen, f"{device}: torch {chosen}")
    if runtime == "torch" and prec == "int8":
        raise ConfigError("precision='int8' runs on ONNX Runtime; use runtime='onnx' or 'auto'")
    if keep is not None and keep != "fp32":
        if runtime == "torch":
            return SpeedPlan("torch", keep, "runtime='torch' asked for")
        if not (runtime == "onnx" or prec == "int8"):
            return SpeedPlan("torch", keep, f"the model is {keep}")
        prec = "int8" if prec == "int8" else "fp32"  # ONNX Runtime exports an fp32 copy
    if prec == "auto":
        passed_over = ""
        for choice in policy.cpu_auto:
            if runtime != "auto" and choice.runtime != runtime:
                continue
            if choice.needs and not getattr(info, choice.needs):
                continue
            if choice.runtime == "onnx" and runtime == "auto" and not onnx_ok:
                passed_over = " (onnxruntime is not installed)"
                continue
            asked = f"runtime={runtime!r} asked for: " if runtime != "auto" else ""
            return SpeedPlan(
                choice.runtime,
                choice.precision,
                asked + choice.why() + passed_over,
                guarded=choice.guarded,
            )
        return SpeedPlan("torch", "fp32", "torch fp32" + passed_over)
    if prec == "int8":
        return SpeedPlan("onnx", "int8", "int8 asked for: ONNX Runtime")
    if prec == "fp32":
        if runtime == "onnx" or (runtime == "auto" and onnx_ok):
            return SpeedPlan("onnx", "fp32", "fp32 on ONNX Runtime (same scores, faster)")
        return SpeedPlan("torch", "fp32", "fp32 on torch")
    if runtime == "onnx":
        raise ConfigError(f"precision={precision!r} runs on torch only; use runtime='torch'")
    return SpeedPlan("torch", _precision(prec), f"{prec} asked for: torch")


def _precision(value: str) -> Precision:
    if value in ("fp32", "bf16", "fp16", "int8"):
        return value  # type: ignore[return-value]
    raise ConfigError(f"unknown precision {value!r}")
