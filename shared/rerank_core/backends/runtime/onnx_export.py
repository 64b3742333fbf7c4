"""ONNX export of a local Hugging Face model: export, int8 quantization, on-disk cache.

* **Export** with ``torch.onnx.export`` (the TorchScript exporter, which needs no extra
  package) from the model's fp32 weights with eager attention, dynamic batch and
  sequence axes. The exported graph is checked against torch on probe pairs before use.
* **int8** with ONNX Runtime's ``quantize_dynamic``: the linear layers' weights in int8
  per output channel, their inputs quantized at run time (``MatMulConstBOnly``: the
  attention products stay fp32). The embedding tables stay fp32: int8 tables only save
  memory and add error at the very input. The graph is not fused first: on the CPU
  measured, ONNX Runtime runs the plain export's int8 graph faster than the fused one
  (whose fused attention keeps its projections in fp32), and per-channel scales halve
  the error of per-tensor ones at the same speed.
* **Cache**: ``<cache>/onnx/<digest>/model.<precision>.onnx`` with its weights in
  ``model.<precision>.onnx.data`` beside it (ONNX Runtime maps that file instead of
  copying the weights into memory), where the digest covers
  the weights, the config, the export recipe and the torch / onnxruntime versions;
  ``<cache>`` is ``$CROSSRANK_CACHE_DIR`` or ``~/.cache/crossrank``. Files are
  written in a private folder and moved into place, weights first, so concurrent
  processes never see a half-written model.

Scoring an export is :class:`~rerank_core.backends.runtime.runners.OnnxRunner`'s job.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from ... import deps
from ...errors import ModelLoadError

__all__ = [
    "INPUTS",
    "RECIPE",
    "OnnxExportError",
    "cache_root",
    "data_file",
    "ensure_onnx_model",
    "model_digest",
    "onnx_session",
    "remove_export",
    "require_fast",
]

logger = logging.getLogger("crossrank.onnx")

# Bump when the export or quantization steps change: old cached files are then ignored.
RECIPE = "crossrank-onnx-v2:opset17:eager:dynamic-int8-matmul-per-channel-constB"
OnnxPrecision = Literal["fp32", "int8"]
INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # what an export may take
_CONFIG_NOISE = frozenset(
    {
        "_name_or_path",
        "transformers_version",
        "_attn_implementation",
        "_attn_implementation_internal",
        "torch_dtype",
        "dtype",
        "_commit_hash",
    }
)
_PROBE_TOKENS = 64  # probe pairs are cut to this: small models take few positions
_PROBE = [
    ("what causes scurvy", "Scurvy is caused by a lack of vitamin C."),
    ("tallest mountain", "Mount Everest is Earth's highest mountain above sea level, " * 6),
    ("x", "y"),
]


class OnnxExportError(ModelLoadError):
    """The model could not be exported to ONNX or the export failed its check."""


def _fast(module: str) -> ModuleType:
    """A module of the ``fast`` extra (onnxruntime, onnx), or the error that says why not."""
    return deps.require(module, extra="fast", purpose="the ONNX Runtime path")


def require_fast() -> None:
    """onnxruntime and onnx imported, or MissingDependencyError (absent: install
    ``crossrank[fast]``) / BrokenDependencyError (installed but failing to import)."""
    _fast("onnxruntime")
    _fast("onnx")


def _torch() -> ModuleType:
    """torch, which the model being exported was made with (so it is loaded already)."""
    torch = sys.modules.get("torch")
    if torch is None:  # pragma: no cover - a torch model implies torch
        raise OnnxExportError("only a torch model can be exported to ONNX")
    return torch


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where exports live: ``cache_dir``, ``$CROSSRANK_CACHE_DIR`` or ``~/.cache/crossrank``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("CROSSRANK_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "crossrank"


def model_digest(hf_model: Any, extra: Sequence[str] = ()) -> str:
    """sha256 of the model's config and every weight, the recipe and library versions."""
    torch = _torch()
    onnxruntime = _fast("onnxruntime")
    h = hashlib.sha256()
    for part in (RECIPE, torch.__version__, onnxruntime.__version__, *extra):
        h.update(part.encode())
        h.update(b"\0")
    config = getattr(hf_model, "config", None)
    if config is not None:
        # where the model was loaded from, and run-time choices, do not change the graph
        d = {k: v for k, v in config.to_dict().items() if k not in _CONFIG_NOISE}
        h.update(json.dumps(d, sort_keys=True, default=str).encode())
    for name, tensor in sorted(hf_model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        if t.dtype in (torch.bfloat16, torch.float16):
            t = t.float()
        h.update(memoryview(t.numpy()).cast("B"))
    return h.hexdigest()[:24]


class _LogitsOnly:
    """A torch module that returns only the logits (built lazily: torch is optional)."""

    @staticmethod
    def wrap(hf_model: Any, with_token_types: bool) -> Any:
        module: Any = _torch().nn.Module

        class LogitsOnly(module):  # type: ignore[misc]
            def __init__(self) -> None:
                super().__init__()
                self.inner = hf_model

            def forward(self, input_ids: Any, attention_mask: Any, *rest: Any) -> Any:
                kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
                if with_token_types:
                    kwargs["token_type_ids"] = rest[0]
                return self.inner(**kwargs).logits

        return LogitsOnly()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's and quantizer's advice (warnings and root-logger lines)."""

    class _Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return record.levelno >= logging.ERROR

    root = logging.getLogger()
    f = _Drop()
    root.addFilter(f)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.removeFilter(f)


def data_file(path: Path) -> Path:
    """Where a model file's weights live: ``<name>.onnx.data`` beside it."""
    return path.with_name(path.name + ".data")


@contextlib.contextmanager
def _staging(path: Path) -> Iterator[Path]:
    """A private folder beside ``path`` to write the model (and its weights file) into;
    on success both are moved into place, weights first, so a reader that sees the model
    file always finds its weights. Concurrent writers write identical files."""
    stage = Path(tempfile.mkdtemp(prefix=f".{path.stem}.", dir=path.parent))
    staged = stage / path.name
    try:
        yield staged
        for f in (data_file(staged), staged):
            os.chmod(f, 0o644)  # the cache may be shared by users of a host
        os.replace(data_file(staged), data_file(path))
        os.replace(staged, path)
    finally:
        for f in stage.iterdir():
            f.unlink(missing_ok=True)
        stage.rmdir()


def _to_external_data(path: Path) -> None:
    """Rewrite a model so that its weights sit in ``<name>.data`` beside it: ONNX Runtime
    then maps them from the file instead of copying them into memory (a fraction of the
    peak and resident memory, the same speed, pages shared by processes)."""
    onnx = _fast("onnx")
    model = onnx.load(str(path))
    path.unlink()
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=data_file(path).name,
        size_threshold=0,
    )


def _export_fp32(hf_model: Any, hf_tokenizer: Any, path: Path, with_token_types: bool) -> None:
    torch = _torch()
    model = copy.deepcopy(hf_model).to("cpu").float().eval()
    with contextlib.suppress(Exception):  # older/other models: keep their attention
        model.set_attn_implementation("eager")
    names = list(INPUTS if with_token_types else INPUTS[:2])
    enc = hf_tokenizer(
        [q for q, _ in _PROBE[:2]],
        [t for _, t in _PROBE[:2]],
        padding=True,
        truncation=True,
        max_length=_PROBE_TOKENS,
        return_tensors="pt",
    )
    args = tuple(enc[n] for n in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["logits"] = {0: "batch"}
    with _staging(path) as staged:
        with _quiet(), torch.no_grad():
            torch.onnx.export(
                _LogitsOnly.wrap(model, with_token_types),
                args,
                str(staged),
                input_names=names,
                output_names=["logits"],
                dynamic_axes=axes,
                opset_version=17,
                dynamo=False,
                do_constant_folding=True,
            )
        del model
        _to_external_data(staged)


def _quantize_int8(src: Path, path: Path) -> None:
    onnx = _fast("onnx")
    quantization = _fast("onnxruntime.quantization")
    QuantType, quantize_dynamic = quantization.QuantType, quantization.quantize_dynamic
    with _staging(path) as staged, _quiet():
        quantize_dynamic(
            src,
            staged,
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
            use_external_data_format=True,  # weights in <name>.data (see _to_external_data)
            extra_options={
                "MatMulConstBOnly": True,
                "DefaultTensorType": onnx.TensorProto.FLOAT,
            },
        )


def remove_export(path: Path) -> None:
    """Drop a cached model and its weights file (the next load exports it again)."""
    for f in (data_file(path), path):
        f.unlink(missing_ok=True)


def _complete(path: Path) -> bool:
    """A cached model in the current layout: the model file and its weights file."""
    return path.is_file() and data_file(path).is_file()


_export_lock = threading.Lock()


def ensure_onnx_model(
    hf_model: Any,
    hf_tokenizer: Any,
    precision: OnnxPrecision,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    digest: str | None = None,
) -> Path:
    """The path of the exported (and, for int8, quantized) model, exporting it if needed."""
    require_fast()
    with_token_types = "token_type_ids" in getattr(hf_tokenizer, "model_input_names", ())
    digest = digest or model_digest(hf_model)
    folder = cache_root(cache_dir) / "onnx" / digest
    fp32 = folder / "model.fp32.onnx"
    target = folder / f"model.{precision}.onnx"
    with _export_lock:
        if _complete(target):
            _touch(folder)
            return target
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if not _complete(fp32):  # absent, or written before weights files were used
                logger.info("exporting %s to ONNX in %s", type(hf_model).__name__, folder)
                _export_fp32(hf_model, hf_tokenizer, fp32, with_token_types)
                _check_export(hf_model, hf_tokenizer, fp32, with_token_types)
            if precision == "int8" and not _complete(target):
                _quantize_int8(fp32, target)
            meta = {
                "recipe": RECIPE,
                "model_class": type(hf_model).__name__,
                "name_or_path": str(getattr(hf_model.config, "_name_or_path", "")),
                "inputs": list(INPUTS if with_token_types else INPUTS[:2]),
            }
            (folder / "meta.json").write_text(json.dumps(meta, indent=1))
            _prune(folder.parent, keep=folder)
        except OnnxExportError:
            raise
        except Exception as exc:
            raise OnnxExportError(
                f"could not export {type(hf_model).__name__} to ONNX in {folder}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    return target


def _touch(folder: Path) -> None:
    with contextlib.suppress(OSError):
        os.utime(folder)


def _max_entries() -> int:
    env = os.environ.get("CROSSRANK_ONNX_CACHE_ENTRIES", "")
    return int(env) if env.isdigit() and int(env) > 0 else 8


def _prune(root: Path, keep: Path) -> None:
    """Keep the most recently used exports (``$CROSSRANK_ONNX_CACHE_ENTRIES``, default 8):
    each costs ~115 MB for a MiniLM, and a model with freshly initialized weights makes a
    new one on every load."""
    try:
        folders = sorted(
            (p for p in root.iterdir() if p.is_dir() and p != keep),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
    except OSError:
        return
    for old in folders[max(0, _max_entries() - 1) :]:
        for f in old.iterdir():
            with contextlib.suppress(OSError):
                f.unlink()
        with contextlib.suppress(OSError):
            old.rmdir()


def _check_export(hf_model: Any, hf_tokenizer: Any, path: Path, with_token_types: bool) -> None:
    """The exported fp32 graph must give torch's logits on the probe pairs."""
    np = _fast("numpy")
    torch = _torch()
    names = list(INPUTS if with_token_types else INPUTS[:2])
    enc = hf_tokenizer(
        [q for q, _ in _PROBE],
        [t for _, t in _PROBE],
        padding=True,
        truncation=True,
        max_length=_PROBE_TOKENS,
        return_tensors="pt",
    )
    model = hf_model if next(hf_model.parameters()).dtype == torch.float32 else None
    if model is None:
        model = copy.deepcopy(hf_model).float()
    with torch.no_grad():
        kwargs = {n: enc[n].to(model.device) for n in names}
        ref = model(**kwargs).logits.float().cpu().numpy()
    sess = onnx_session(path, 1)
    got = sess.run(None, {n: enc[n].numpy().astype(np.int64) for n in names})[0]
    err = float(np.max(np.abs(got - ref)))
    if not np.isfinite(err) or err > 1e-3 * (1.0 + float(np.max(np.abs(ref)))):
        remove_export(path)
        raise OnnxExportError(
            f"the ONNX export of {type(hf_model).__name__} differs from torch by {err:.3g}"
        )


def onnx_session(path: Path, threads: int) -> Any:
    """An ONNX Runtime CPU session for ``path``: ``threads`` intra-op threads that never
    spin, one inter-op thread, all graph optimizations, quiet logs."""
    ort = _fast("onnxruntime")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
