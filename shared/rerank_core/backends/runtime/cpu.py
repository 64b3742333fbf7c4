"""What this CPU can do fast, found at run time.

The fast paths are int8 matrix products (ONNX Runtime dynamic quantization, fast where the
CPU has int8 dot-product instructions: AVX-VNNI, AVX512-VNNI, AMX or Arm's dot product)
and bf16 ones (AVX512-BF16 or AMX). Feature flags come from ``/proc/cpuinfo`` on Linux;
elsewhere from a probe through torch when torch is already loaded. Nothing here imports
torch or onnxruntime.
"""

from __future__ import annotations

import functools
import os
import platform
import sys
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "BF16_FLAGS",
    "INT8_DOT_FLAGS",
    "CpuInfo",
    "cpu_flags_summary",
    "cpu_info",
    "default_threads",
]

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


def read_cpuinfo(path: str = "/proc/cpuinfo") -> tuple[str, frozenset[str]]:
    """The model name and feature flags in a ``/proc/cpuinfo``-style file (empty if absent)."""
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
    model, flags = read_cpuinfo()
    if not flags:
        flags = _torch_probe()
    return CpuInfo(
        model=model or platform.processor() or "unknown", flags=flags, cores=_usable_cores()
    )


def default_threads(info: CpuInfo | None = None) -> int:
    """Worker threads for CPU inference: ``$CROSSRANK_NUM_THREADS`` if set, else the cores
    this process may use, at most 16."""
    info = info or cpu_info()
    env = os.environ.get("CROSSRANK_NUM_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, min(info.cores, 16))


def cpu_flags_summary(flags: Iterable[str]) -> str:
    """The speed-relevant flags among ``flags``, for messages and benchmark tables."""
    wanted = INT8_DOT_FLAGS | BF16_FLAGS | {"avx512f", "avx2", "amx_tile"}
    return " ".join(sorted(set(flags) & wanted)) or "none of avx2/avx512/vnni/bf16"
