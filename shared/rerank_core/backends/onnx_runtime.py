"""Cross-encoder inference on ONNX Runtime: export, int8 quantization, on-disk cache, scoring.

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
* **Scoring** runs each (query, window) pair as its own sequence: no padding, and a
  pair's score never depends on what it was batched with (dynamic int8 quantizes
  with a per-tensor scale, so batching would make scores depend on the neighbours).
  Sequences run in parallel on a small pool of threads, each a single-threaded ONNX
  Runtime run, longest first. The session's own thread pool is off, so nothing here
  spins or touches torch's thread settings.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import itertools
import json
import logging
import os
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from ..errors import BackendError, ModelLoadError
from ..types import Pair
from ._hf import missing

__all__ = [
    "RECIPE",
    "OnnxExportError",
    "OnnxScorer",
    "cache_root",
    "ensure_onnx_model",
    "model_digest",
    "start_scorer",
]

logger = logging.getLogger("crossrank.onnx")

# Bump when the export or quantization steps change: old cached files are then ignored.
RECIPE = "crossrank-onnx-v2:opset17:eager:dynamic-int8-matmul-per-channel-constB"
OnnxPrecision = Literal["fp32", "int8"]
Truncation = Literal["longest_first", "only_second"]
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
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
    import onnxruntime
    import torch

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
        import torch

        class LogitsOnly(torch.nn.Module):
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
    import onnx

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
    import torch

    model = copy.deepcopy(hf_model).to("cpu").float().eval()
    with contextlib.suppress(Exception):  # older/other models: keep their attention
        model.set_attn_implementation("eager")
    names = list(_INPUTS if with_token_types else _INPUTS[:2])
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
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

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


def _remove(path: Path) -> None:
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
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise missing("onnxruntime", "fast", exc) from exc
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
                "inputs": list(_INPUTS if with_token_types else _INPUTS[:2]),
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
    import numpy as np
    import torch

    names = list(_INPUTS if with_token_types else _INPUTS[:2])
    enc = hf_tokenizer(
        [q for q, _ in _PROBE], [t for _, t in _PROBE], padding=True,
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
    sess = _session(path, 1)
    got = sess.run(None, {n: enc[n].numpy().astype(np.int64) for n in names})[0]
    err = float(np.max(np.abs(got - ref)))
    if not np.isfinite(err) or err > 1e-3 * (1.0 + float(np.max(np.abs(ref)))):
        _remove(path)
        raise OnnxExportError(
            f"the ONNX export of {type(hf_model).__name__} differs from torch by {err:.3g}"
        )


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class OnnxScorer:
    """Scores (query, text) pairs with an exported cross-encoder on ONNX Runtime.

    ``tokenizer_json``: the model's fast tokenizer, serialized; a private copy is
    configured once (``truncation`` at ``max_length``, no padding) and never mutated,
    so any number of threads can encode at once. ``threads``: sequences run at once.
    ``truncation``: ``"longest_first"`` (sentence-transformers) or ``"only_second"``
    (FlagEmbedding, which cuts the query to its own limit first).
    """

    def __init__(
        self,
        model_path: Path,
        tokenizer_json: str,
        *,
        max_length: int,
        threads: int,
        label_column: int = -1,
        truncation: Truncation = "longest_first",
    ) -> None:
        try:
            import numpy as np
            from tokenizers import Tokenizer
        except ImportError as exc:  # pragma: no cover - both ship with the minilm extra
            raise missing("tokenizers", "minilm", exc) from exc
        self._np = np
        self.path = model_path
        self.recipe = RECIPE
        self.threads = max(1, int(threads))
        self._session = _session(model_path, 1)
        self._inputs = [i.name for i in self._session.get_inputs()]
        unknown = set(self._inputs) - set(_INPUTS)
        if unknown:
            raise OnnxExportError(f"unexpected ONNX inputs {sorted(unknown)} in {model_path}")
        tok = Tokenizer.from_str(tokenizer_json)
        tok.no_padding()
        tok.enable_truncation(max_length, strategy=truncation)
        self._tok = tok
        self._label = label_column
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0
        self._pool_lock = threading.Lock()

    def _run_one(self, ids: list[int], type_ids: list[int]) -> float:
        np = self._np
        arr = np.asarray(ids, dtype=np.int64)[None, :]
        feed = {"input_ids": arr, "attention_mask": np.ones_like(arr)}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.asarray(type_ids, dtype=np.int64)[None, :]
        out = self._session.run(None, feed)[0]
        return float(out.reshape(1, -1)[0, self._label])

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            # a forked child inherits the pool object but none of its threads: start anew
            if self._pool is None or self._pool_pid != os.getpid():
                self._pool = ThreadPoolExecutor(
                    max_workers=self.threads - 1, thread_name_prefix="crossrank-onnx"
                )
                self._pool_pid = os.getpid()
            return self._pool

    def score(self, pairs: Sequence[Pair]) -> list[float]:
        """One logit per pair, in order; each pair is its own sequence (no padding)."""
        if not pairs:
            return []
        encs = self._tok.encode_batch([(q, t) for q, t in pairs])
        n = len(encs)
        out = [0.0] * n
        order = sorted(range(n), key=lambda i: -len(encs[i].ids))
        workers = min(self.threads, n)
        if workers == 1:
            for i in order:
                out[i] = self._run_one(encs[i].ids, encs[i].type_ids)
            return out
        counter = itertools.count()

        def work() -> None:
            while (k := next(counter)) < n:
                i = order[k]
                out[i] = self._run_one(encs[i].ids, encs[i].type_ids)

        pool = self._executor()
        helpers: list[Future[None]] = [pool.submit(work) for _ in range(workers - 1)]
        error: BaseException | None = None
        try:
            work()
        except BaseException as exc:  # keep it until the helpers stop
            error = exc
            for _ in range(n):  # drain the counter so the helpers finish soon
                next(counter)
        for h in helpers:
            try:
                h.result()
            except BaseException as exc:
                error = error or exc
        if error is not None:
            raise BackendError(f"ONNX Runtime failed: {type(error).__name__}: {error}") from error
        return out

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None and self._pool_pid == os.getpid():
                self._pool.shutdown(wait=False)
            self._pool = None


def start_scorer(
    hf_model: Any,
    hf_tokenizer: Any,
    precision: OnnxPrecision,
    *,
    max_length: int,
    threads: int,
    cache_dir: str | os.PathLike[str] | None = None,
    truncation: Truncation = "longest_first",
    before_session: Callable[[], object] | None = None,
) -> OnnxScorer:
    """Export (or reuse) ``hf_model`` at ``precision`` and return a scorer for it.

    ``before_session`` runs once the export is on disk and before ONNX Runtime loads it
    (a backend frees the torch weights it owns there, so that the two copies are never
    in memory at once). Raises :class:`~rerank_core.MissingDependencyError` without the
    ``fast`` extra and :class:`OnnxExportError` when the model cannot be exported, fails
    its check, or its file cannot be loaded (a damaged file is removed from the cache,
    so the next load exports again).
    """
    if not hasattr(hf_model, "config") or not hasattr(hf_tokenizer, "backend_tokenizer"):
        raise OnnxExportError(
            "only a transformers model with a fast tokenizer can be exported to ONNX"
        )
    path = ensure_onnx_model(hf_model, hf_tokenizer, precision, cache_dir=cache_dir)
    tokenizer_json = hf_tokenizer.backend_tokenizer.to_str()
    if before_session is not None:
        before_session()
    try:
        return OnnxScorer(
            path, tokenizer_json, max_length=max_length, threads=threads, truncation=truncation
        )
    except OnnxExportError:
        raise
    except Exception as exc:
        _remove(path)
        raise OnnxExportError(
            f"could not load the exported model {path}: {type(exc).__name__}: {exc}"
        ) from exc
