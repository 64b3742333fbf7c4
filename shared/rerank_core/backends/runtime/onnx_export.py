"""ONNX export of a local Hugging Face model: export, int8 quantization, on-disk cache.

* **Export** with ``torch.onnx.export`` (the TorchScript exporter, which needs no extra
  package) from the model's fp32 weights with eager attention, dynamic batch and
  sequence axes. The exported graph is checked against torch on probe pairs before use.
* **int8** with ONNX Runtime's ``quantize_dynamic``, in one of the :data:`VARIANTS`: by
  default the linear layers' weights in int8 per output channel, their inputs quantized at
  run time (``MatMulConstBOnly``: the attention products stay fp32); the other variants
  keep the feed-forward output projections in fp32, use 7-bit weights (``reduce_range``,
  which avoids the 16-bit saturation of int8 products on CPUs without VNNI) or one scale
  per tensor. Which variant a model runs with by default is the fidelity guard's choice
  (:mod:`~rerank_core.backends.runtime.guard`). The embedding tables stay fp32: int8
  tables only save memory and add error at the very input. The graph is not fused first: on the CPU
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
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from ... import deps
from ...errors import ModelLoadError
from . import export_cache

__all__ = [
    "INPUTS",
    "RECIPE",
    "VARIANTS",
    "OnnxExportError",
    "QuantVariant",
    "cache_root",
    "data_file",
    "ensure_onnx_model",
    "model_digest",
    "onnx_session",
    "quantized",
    "remove_export",
    "require_fast",
    "variant_named",
]

logger = logging.getLogger("crossrank.onnx")

# Bump when the export or quantization steps change: old cached files are then ignored.
RECIPE = "crossrank-onnx-v3:opset17:eager:dynamic-int8-variants"
OnnxPrecision = Literal["fp32", "int8"]


@dataclass(frozen=True, slots=True)
class QuantVariant:
    """One way to quantize the fp32 export to dynamic int8.

    ``name``: in the file name (``model.<name>.onnx``) and in ``describe()``.
    ``per_channel``: one weight scale per output channel (else one per tensor).
    ``reduce_range``: 7-bit weights (no 16-bit saturation in int8 products on CPUs without
    VNNI). ``keep_ffn_out``: the feed-forward output projections (the linear layer after
    the activation, whose inputs carry the widest ranges) stay fp32. ``block_size``:
    instead of one activation scale per tensor, ONNX Runtime's ``MatMulNBits`` with 8-bit
    weights and int8 activations, both scaled per block of this many input features
    (``accuracy_level=4``): far closer to fp32, less faster.
    """

    name: str
    per_channel: bool = True
    reduce_range: bool = False
    keep_ffn_out: bool = False
    block_size: int = 0

    def describe(self) -> str:
        if self.block_size:
            return f"int8 in blocks of {self.block_size} (weights and activations)"
        parts = ["per-channel" if self.per_channel else "per-tensor"]
        if self.reduce_range:
            parts.append("7-bit weights")
        if self.keep_ffn_out:
            parts.append("FFN output layers in fp32")
        return f"dynamic int8 ({', '.join(parts)})"


# In the order the guard tries them: fastest first, each next one closer to fp32 (figures
# for each on several models: docs/fidelity.md).
VARIANTS: tuple[QuantVariant, ...] = (
    QuantVariant("int8"),
    QuantVariant("int8-ffn32", keep_ffn_out=True),
    QuantVariant("int8-b128", block_size=128),
    QuantVariant("int8-b32", block_size=32),
)
# measured by benchmarks.fidelity, never the guard's choice: no closer to fp32 than the above
_EXTRA_VARIANTS = (
    QuantVariant("int8-rr", reduce_range=True),
    QuantVariant("int8-ffn32-rr", reduce_range=True, keep_ffn_out=True),
    QuantVariant("int8-pt", per_channel=False),
)


def variant_named(name: str) -> QuantVariant:
    """The int8 variant called ``name`` (``int8``, ``int8-rr``, ...)."""
    for v in VARIANTS + _EXTRA_VARIANTS:
        if v.name == name:
            return v
    known = ", ".join(v.name for v in VARIANTS + _EXTRA_VARIANTS)
    raise ValueError(f"unknown int8 variant {name!r} (known: {known})")


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


def _ffn_out_nodes(src: Path) -> list[str]:
    """The MatMul nodes of the feed-forward output projections: the linear layer that
    reads the activation's output (BERT, RoBERTa, ELECTRA, XLM-R: ``.../output/dense``
    outside attention), found by what feeds them, not by name."""
    onnx = _fast("onnx")
    graph = onnx.load(str(src), load_external_data=False).graph
    producer = {out: node for node in graph.node for out in node.output}
    activations = {"Gelu", "Erf", "Relu", "FastGelu", "BiasGelu", "Tanh", "Sigmoid"}
    found = []
    for node in graph.node:
        if node.op_type != "MatMul" or not node.input:
            continue
        seen, frontier = 0, [node.input[0]]
        while frontier and seen < 6:  # a few ops back: Mul(0.5) <- Add <- Erf ...
            prev = producer.get(frontier.pop())
            seen += 1
            if prev is None:
                continue
            if prev.op_type in activations:
                found.append(node.name)
                break
            if prev.op_type in ("Mul", "Add", "Div", "Cast"):
                frontier.extend(prev.input)
    return found


def _quantize_blockwise(src: Path, path: Path, block: int) -> None:
    """Every linear layer with constant weights as ``MatMulNBits`` (8 bits, symmetric
    scales per ``block`` input features, zero point 128, int8 activations per block)."""
    onnx = _fast("onnx")
    np = _fast("numpy")
    numpy_helper, helper = onnx.numpy_helper, onnx.helper
    model = onnx.load(str(src))
    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    nodes = []
    for node in graph.node:
        w = weights.get(node.input[1]) if node.op_type == "MatMul" else None
        if w is None or len(w.dims) != 2:
            nodes.append(node)
            continue
        arr = numpy_helper.to_array(w).astype(np.float32)
        k, n = arr.shape
        blocks = -(-k // block)
        padded = np.zeros((n, blocks * block), np.float32)
        padded[:, :k] = arr.T
        shaped = padded.reshape(n, blocks, block)
        scale = np.abs(shaped).max(axis=-1) / 127.0
        scale[scale == 0] = 1.0
        q = np.clip(np.rint(shaped / scale[..., None]), -127, 127).astype(np.int16) + 128
        qt = numpy_helper.from_array(q.astype(np.uint8), f"{w.name}.q8")
        st = numpy_helper.from_array(scale.reshape(-1).astype(np.float32), f"{w.name}.q8.scales")
        graph.initializer.extend([qt, st])
        nodes.append(
            helper.make_node(
                "MatMulNBits",
                [node.input[0], qt.name, st.name],
                list(node.output),
                name=f"{node.name}.q8",
                domain="com.microsoft",
                K=k,
                N=n,
                bits=8,
                block_size=block,
                accuracy_level=4,
            )
        )
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for node in graph.node for i in node.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    with _staging(path) as staged:
        onnx.save_model(
            model,
            str(staged),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data_file(staged).name,
            size_threshold=0,
        )


def _quantize_int8(src: Path, path: Path, variant: QuantVariant) -> None:
    if variant.block_size:
        _quantize_blockwise(src, path, variant.block_size)
        return
    onnx = _fast("onnx")
    quantization = _fast("onnxruntime.quantization")
    QuantType, quantize_dynamic = quantization.QuantType, quantization.quantize_dynamic
    exclude = _ffn_out_nodes(src) if variant.keep_ffn_out else []
    with _staging(path) as staged, _quiet():
        quantize_dynamic(
            src,
            staged,
            weight_type=QuantType.QInt8,
            per_channel=variant.per_channel,
            reduce_range=variant.reduce_range,
            nodes_to_exclude=exclude,
            op_types_to_quantize=["MatMul"],
            use_external_data_format=True,  # weights in <name>.data (see _to_external_data)
            extra_options={
                "MatMulConstBOnly": True,
                "DefaultTensorType": onnx.TensorProto.FLOAT,
            },
        )


def quantized(fp32: Path, variant: QuantVariant) -> Path:
    """The ``variant`` int8 model made from the fp32 export ``fp32`` (beside it, made if
    absent): for benchmarks and tools that hold an export but not the torch model."""
    target = fp32.with_name(f"model.{variant.name}.onnx")
    with _export_lock:
        if not _complete(target):
            _quantize_int8(fp32, target, variant)
    return target


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
    variant: QuantVariant | None = None,
) -> Path:
    """The path of the exported (and, for int8, quantized: ``variant``, by default the
    first of :data:`VARIANTS`) model, exporting it if needed."""
    require_fast()
    with_token_types = "token_type_ids" in getattr(hf_tokenizer, "model_input_names", ())
    digest = digest or model_digest(hf_model)
    folder = cache_root(cache_dir) / "onnx" / digest
    fp32 = folder / "model.fp32.onnx"
    quant = variant or VARIANTS[0]
    target = folder / ("model.fp32.onnx" if precision == "fp32" else f"model.{quant.name}.onnx")
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
                _quantize_int8(fp32, target, quant)
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
    export_cache.touch(folder)


def _prune(onnx_dir: Path, keep: Path) -> None:
    """Keep the cache within its bounds (entries and megabytes, least recently used out;
    see :mod:`~rerank_core.backends.runtime.export_cache`): each export of a MiniLM costs
    ~115 MB."""
    for digest in export_cache.prune(onnx_dir.parent, keep=keep):
        logger.info("evicted the ONNX export %s from %s (cache bounds)", digest, onnx_dir)


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
