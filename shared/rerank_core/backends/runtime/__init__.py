"""One runtime layer for every locally run Hugging Face model.

* :mod:`.plan` — the speed plan, decided once from the device, the request
  (``precision``, ``runtime``, ``num_threads``), the family's :class:`SpeedPolicy` (data)
  and the CPU's facts (:mod:`.cpu`).
* :mod:`.runners` — :class:`TorchRunner` and :class:`OnnxRunner` behind one
  :class:`Runner` interface; :class:`PairEncoding` is how a family encodes a pair.
* :mod:`.onnx_export` — export, int8 quantization, the on-disk export cache and its
  fidelity check.
* :mod:`.local` — :class:`LocalBackend`: plan, export, fallback, weight release,
  fingerprint, ``describe()``, ``close()``; a family subclass only loads its model.

Public helpers for tools (benchmarks, evaluation): :func:`cpu_info`,
:func:`cpu_flags_summary`, :func:`default_threads`, :func:`cache_root` (where exports and
tool caches live), :func:`resolve_device`, :func:`weights_digest`. A backend's speed facts
(runtime, precision, reason, threads, ONNX file) come from its ``describe()``. Importing
this package imports neither torch nor onnxruntime.
"""

from __future__ import annotations

from .cpu import BF16_FLAGS, INT8_DOT_FLAGS, CpuInfo, cpu_flags_summary, cpu_info, default_threads
from .hf import (
    HFTokenizer,
    SpanMemo,
    fingerprint_of,
    load_error,
    local_weights_dir,
    model_max_length,
    resolve_device,
    weights_digest,
)
from .local import Family, LoadedModel, LocalBackend
from .onnx_export import RECIPE, OnnxExportError, cache_root, data_file, model_digest
from .plan import (
    RUNTIMES,
    Choice,
    Precision,
    SpeedPlan,
    SpeedPolicy,
    SpeedRequest,
    onnx_installed,
    plan_speed,
)
from .runners import OnnxRunner, PairEncoding, Runner, TorchRunner, hf_forward

__all__ = [
    "BF16_FLAGS",
    "INT8_DOT_FLAGS",
    "RECIPE",
    "RUNTIMES",
    "Choice",
    "CpuInfo",
    "Family",
    "HFTokenizer",
    "LoadedModel",
    "LocalBackend",
    "OnnxExportError",
    "OnnxRunner",
    "PairEncoding",
    "Precision",
    "Runner",
    "SpanMemo",
    "SpeedPlan",
    "SpeedPolicy",
    "SpeedRequest",
    "TorchRunner",
    "cache_root",
    "cpu_flags_summary",
    "cpu_info",
    "data_file",
    "default_threads",
    "fingerprint_of",
    "hf_forward",
    "load_error",
    "local_weights_dir",
    "model_digest",
    "model_max_length",
    "onnx_installed",
    "plan_speed",
    "resolve_device",
    "weights_digest",
]
