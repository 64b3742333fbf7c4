"""What this CPU can do fast, found at run time, and how the MiniLM backend uses it.

The fast paths are int8 matrix products (ONNX Runtime dynamic quantization, fast
where the CPU has int8 dot-product instructions: AVX-VNNI, AVX512-VNNI, AMX or
Arm's dot product) and bf16 ones (AVX512-BF16 or AMX). Feature flags come from
``/proc/cpuinfo`` on Linux; elsewhere from a probe through torch when torch is
already loaded. Nothing here imports torch or onnxruntime at module import.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import platform
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "BF16_FLAGS",
    "INT8_DOT_FLAGS",
    "CpuInfo",
    "SpeedPlan",
    "check_speed_options",
    "cpu_info",
    "default_threads",
    "onnxruntime_available",
    "plan_speed",
]

Runtime = Literal["torch", "onnx"]
RUNTIMES = ("auto", "torch", "onnx")  # what a backend's ``runtime`` option takes
Precision = Literal["fp32", "bf16", "fp16", "int8"]

# x86 flags as Linux names them in /proc/cpuinfo; "asimddp" is Arm's int8 dot product.
INT8_DOT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8", "asimddp"})
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@dataclass(frozen=True, slots=True)
class CpuInfo:
    """The CPU's model name, feature flags and the cores this process may use."""

    model: str
    flags: frozenset[str]
    cores: int

    @property
    def int8_dot(self) -> bool:
        """Int8 dot-product instructions (what makes dynamic int8 fast)."""
        return bool(self.flags & INT8_DOT_FLAGS)

    @property
    def bf16(self) -> bool:
        """Native bf16 matrix instructions (what makes bf16 faster than fp32)."""
        return bool(self.flags & BF16_FLAGS)


def _read_cpuinfo(path: str = "/proc/cpuinfo") -> tuple[str, frozenset[str]]:
    model, flags = "", frozenset[str]()
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "cpu model") and not model:
                    model = value.strip()
                elif key in ("flags", "features") and not flags:
                    flags = frozenset(value.split())
                if model and flags:
                    break
    except OSError:
        pass
    return model, flags


def _torch_probe() -> frozenset[str]:
    """Flags inferred through torch, only when torch is already imported."""
    torch = sys.modules.get("torch")
    if torch is None:
        return frozenset()
    found: set[str] = set()
    try:
        if torch.ops.mkldnn._is_mkldnn_bf16_supported():
            found.add("avx512_bf16")
    except Exception:  # the probe is best-effort
        pass
    return frozenset(found)


def _usable_cores() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, n)


@functools.lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """This machine's CPU (cached for the process)."""
    model, flags = _read_cpuinfo()
    if not flags:
        flags = _torch_probe()
    return CpuInfo(
        model=model or platform.processor() or "unknown", flags=flags, cores=_usable_cores()
    )


def default_threads(info: CpuInfo | None = None) -> int:
    """Worker threads for CPU inference: the cores this process may use, at most 16."""
    info = info or cpu_info()
    env = os.environ.get("CROSSRANK_NUM_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, min(info.cores, 16))


def check_speed_options(
    precision: str, runtime: str, num_threads: object, precisions: tuple[str, ...]
) -> None:
    """A backend's ``precision`` (one of ``precisions``), ``runtime`` and ``num_threads``
    options, checked at construction: a ConfigError naming the bad one."""
    from ..errors import ConfigError

    if precision not in precisions:
        raise ConfigError(f"precision must be one of {', '.join(precisions)}; got {precision!r}")
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}; got {runtime!r}")
    if num_threads is not None and (
        isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1
    ):
        raise ConfigError(f"num_threads must be a positive int, got {num_threads!r}")


def onnxruntime_available() -> bool:
    """Whether the ``fast`` extra (onnxruntime and onnx) is installed."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


@dataclass(frozen=True, slots=True)
class SpeedPlan:
    """How the backend will score: the runtime, the precision and why."""

    runtime: Runtime
    precision: Precision
    reason: str


def plan_speed(
    *,
    device: str,
    precision: str,
    runtime: str,
    info: CpuInfo | None = None,
    have_onnx: bool | None = None,
) -> SpeedPlan:
    """Resolve ``precision``/``runtime`` (either may be ``"auto"``) for ``device``.

    ``precision="exact"`` means fp32. On CPU, ``"auto"`` picks ONNX Runtime int8 where
    the CPU has int8 dot products, else torch bf16 where it has bf16 instructions, else
    fp32 (ONNX Runtime when installed). Off the CPU only torch runs: fp16 on CUDA,
    fp32 elsewhere. Raises ``ValueError`` for a combination that cannot run.
    """
    info = info or cpu_info()
    onnx_ok = onnxruntime_available() if have_onnx is None else have_onnx
    prec = "fp32" if precision == "exact" else precision
    on_cpu = device == "cpu"
    if not on_cpu:
        if runtime == "onnx" or prec == "int8":
            raise ValueError(
                f"runtime='onnx' and precision='int8' run on the CPU only, not on {device!r}"
            )
        if prec == "auto":
            prec = "fp16" if device.startswith("cuda") else "fp32"
        return SpeedPlan("torch", _precision(prec), f"{device}: torch {prec}")
    if prec == "auto":
        if runtime in ("auto", "onnx") and onnx_ok and info.int8_dot:
            return SpeedPlan("onnx", "int8", "CPU has int8 dot products: ONNX Runtime int8")
        if runtime == "onnx":
            if not onnx_ok:
                return SpeedPlan("onnx", "fp32", "runtime='onnx' asked for: fp32")
            return SpeedPlan("onnx", "fp32", "no int8 dot products on this CPU: ONNX fp32")
        if info.bf16:
            return SpeedPlan("torch", "bf16", "CPU has bf16 instructions: torch bf16")
        if runtime == "auto" and onnx_ok:
            return SpeedPlan("onnx", "fp32", "no int8/bf16 instructions: ONNX Runtime fp32")
        return SpeedPlan("torch", "fp32", "torch fp32")
    if prec == "int8":
        if runtime == "torch":
            raise ValueError("precision='int8' runs on ONNX Runtime; use runtime='onnx' or 'auto'")
        return SpeedPlan("onnx", "int8", "int8 asked for: ONNX Runtime")
    if prec == "fp32":
        if runtime == "onnx" or (runtime == "auto" and onnx_ok):
            return SpeedPlan("onnx", "fp32", "fp32 on ONNX Runtime (same scores, faster)")
        return SpeedPlan("torch", "fp32", "fp32 on torch")
    if runtime == "onnx":
        raise ValueError(f"precision={precision!r} runs on torch only; use runtime='torch'")
    return SpeedPlan("torch", _precision(prec), f"{prec} asked for: torch")


def _precision(value: str) -> Precision:
    if value in ("fp32", "bf16", "fp16", "int8"):
        return value  # type: ignore[return-value]
    raise ValueError(f"unknown precision {value!r}")


def describe(flags: Iterable[str]) -> str:
    """The speed-relevant flags among ``flags``, for messages and benchmark tables."""
    wanted = INT8_DOT_FLAGS | BF16_FLAGS | {"avx512f", "avx2", "amx_tile"}
    return " ".join(sorted(set(flags) & wanted)) or "none of avx2/avx512/vnni/bf16"
