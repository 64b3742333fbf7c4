"""The ONNX peers of ``crossrank bench``: fastembed ``TextCrossEncoder`` and FlashRank
``Ranker``, on the very weights every other row scores.

Both libraries load a local model folder; neither can read a Hugging Face checkpoint.
:func:`export_peer_models` exports the bench's cross-encoder once with ``torch.onnx``
(fp32, eager attention, dynamic batch and sequence axes, opset 17, one file) and lays
it out the way each library looks for it:

- fastembed: ``<root>/fastembed/onnx/model.onnx`` beside ``tokenizer.json``,
  ``tokenizer_config.json``, ``config.json`` and ``special_tokens_map.json``; loaded as a
  custom model (:meth:`TextCrossEncoder.add_custom_model`, ``model_file="onnx/model.onnx"``)
  through ``specific_model_path`` with ``local_files_only=True``.
- FlashRank: ``<root>/flashrank/<name>/flashrank-<name>_Q.onnx`` (its hub models'
  naming: ``_Q`` marks a quantized graph) beside the same tokenizer files, where
  ``<root>/flashrank`` is the ``cache_dir`` and ``<name>`` is registered in
  ``flashrank.Config.model_file_map``. FlashRank's hub MiniLMs are int8 graphs made with
  ONNX Runtime's stock ``quantize_dynamic`` (per-tensor scales); its row reproduces that
  from the fp32 export: ``quantize_dynamic(fp32, int8)`` with the defaults
  (``QuantType.QInt8`` weights, ``per_channel=False``, every op type it supports).

The tokenizer files are written so that both libraries cut pairs where
``CrossEncoder.predict`` does (the model's ``model_max_length``, longest-first) and pad
to the longest pair of a batch: a checkpoint's ``tokenizer.json`` may carry a shorter
fixed truncation and padding that fastembed would otherwise honour.

``<root>`` is ``<bench cache>/peers/<key>``, where the key covers :data:`RECIPE`, the
torch, onnx and onnxruntime versions and the model: for a local directory its config
files and its weight files' names, sizes and modification times (nothing is loaded to
find an existing export, so a peer row's peak memory is the peer's own), for a hub id
the loaded weights and config. A folder is written once (in a private folder moved into
place, with ``peers.json`` naming its parts) and reused by every later run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rerank_core.errors import MissingDependencyError

from .._support import installed, model_digest, require
from .common import cache_dir

__all__ = [
    "FASTEMBED_FILE",
    "RECIPE",
    "PeerModels",
    "export_peer_models",
    "fastembed_scorer",
    "flashrank_scorer",
]

MANIFEST = "peers.json"
RECIPE = "crossrank-peers-v1:opset17:eager:fp32|int8-quantize_dynamic-defaults-per-tensor"
FASTEMBED_FILE = "onnx/model.onnx"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")

Scorer = Callable[[str, Sequence[str]], list[float]]


@dataclass(frozen=True, slots=True)
class PeerModels:
    """Where the peers' folders are and what they need to be loaded."""

    root: Path
    fastembed_dir: Path  # fastembed's specific_model_path
    flashrank_cache: Path  # FlashRank's cache_dir
    flashrank_name: str  # FlashRank's model_name (a folder of flashrank_cache)
    flashrank_file: str  # the ONNX file inside it
    max_length: int  # where every peer cuts a pair (CrossEncoder.predict's limit)

    @property
    def flashrank_path(self) -> Path:
        return self.flashrank_cache / self.flashrank_name / self.flashrank_file


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's and quantizer's advice (warnings, root-logger lines)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for dist in ("torch", "onnx", "onnxruntime"):
        try:
            out.append(f"{dist}={version(dist)}")
        except PackageNotFoundError:
            out.append(f"{dist}=absent")
    return ",".join(out)


def _local_key(model: str) -> str | None:
    """The cache key of a local model directory without loading it; None for a hub id."""
    if not Path(model).is_dir():
        return None
    h = hashlib.sha256(f"{RECIPE}\0{_versions()}\0{model_digest(model)}".encode())
    return h.hexdigest()[:20]


def _read_manifest(root: Path) -> PeerModels | None:
    """A complete export in ``root`` (its ``peers.json`` and the files it names), or None."""
    try:
        facts = json.loads((root / MANIFEST).read_text())
        peers = PeerModels(
            root=root,
            fastembed_dir=root / "fastembed",
            flashrank_cache=root / "flashrank",
            flashrank_name=str(facts["flashrank_name"]),
            flashrank_file=str(facts["flashrank_file"]),
            max_length=int(facts["max_length"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    done = (peers.fastembed_dir / FASTEMBED_FILE).is_file() and peers.flashrank_path.is_file()
    return peers if done else None


def _digest(hf_model: Any) -> str:
    import onnxruntime
    import torch

    h = hashlib.sha256()
    for part in (RECIPE, torch.__version__, onnxruntime.__version__):
        h.update(part.encode() + b"\0")
    config = hf_model.config.to_dict()
    for noise in ("_name_or_path", "transformers_version", "torch_dtype", "dtype"):
        config.pop(noise, None)
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(hf_model.state_dict().items()):
        h.update(name.encode() + b"\0")
        h.update(tensor.detach().to("cpu").contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


def _max_length(hf_model: Any, hf_tokenizer: Any) -> int:
    """Where ``CrossEncoder.predict`` cuts a pair: the tokenizer's ``model_max_length``,
    at most the model's position table."""
    limit = int(getattr(hf_model.config, "max_position_embeddings", 512) or 512)
    wanted = getattr(hf_tokenizer, "model_max_length", None)
    return min(int(wanted), limit) if isinstance(wanted, int) and wanted > 0 else limit


def _write_tokenizer(hf_tokenizer: Any, hf_model: Any, folder: Path, max_length: int) -> None:
    """tokenizer.json (no fixed truncation or padding), tokenizer_config.json (the
    predict limit as ``model_max_length`` and ``max_length``), special_tokens_map.json and
    config.json, as both peers read them."""
    backend = hf_tokenizer.backend_tokenizer
    tok = type(backend).from_str(backend.to_str())  # a copy: the caller's stays as it is
    tok.no_truncation()
    tok.no_padding()
    tok.save(str(folder / "tokenizer.json"))
    specials = {
        k: v
        for k, v in {
            "cls_token": hf_tokenizer.cls_token,
            "sep_token": hf_tokenizer.sep_token,
            "pad_token": hf_tokenizer.pad_token,
            "unk_token": hf_tokenizer.unk_token,
            "mask_token": hf_tokenizer.mask_token,
            "bos_token": getattr(hf_tokenizer, "bos_token", None),
            "eos_token": getattr(hf_tokenizer, "eos_token", None),
        }.items()
        if isinstance(v, str)
    }
    config = {
        **specials,
        "model_max_length": max_length,
        "max_length": max_length,
        "padding_side": "right",
        "truncation_side": "right",
        "do_lower_case": bool(getattr(hf_tokenizer, "do_lower_case", False)),
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=1) + "\n")
    (folder / "special_tokens_map.json").write_text(json.dumps(specials, indent=1) + "\n")
    model_config = hf_model.config.to_dict()
    if model_config.get("pad_token_id") is None:
        model_config["pad_token_id"] = hf_tokenizer.pad_token_id
    (folder / "config.json").write_text(json.dumps(model_config, indent=1, default=str) + "\n")


def _export_fp32(hf_model: Any, hf_tokenizer: Any, path: Path) -> None:
    import copy

    import torch

    names = [n for n in ("input_ids", "attention_mask", "token_type_ids")]
    if "token_type_ids" not in getattr(hf_tokenizer, "model_input_names", ()):
        names = names[:2]
    model = copy.deepcopy(hf_model).to("cpu").float().eval()
    with contextlib.suppress(Exception):  # models without a switch keep their attention
        model.set_attn_implementation("eager")

    class LogitsOnly(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, *inputs: Any) -> Any:
            return self.inner(**dict(zip(names, inputs, strict=True))).logits

    enc = hf_tokenizer(
        ["what causes scurvy", "tallest mountain"],
        ["Scurvy is caused by a lack of vitamin C.", "Mount Everest is the highest."],
        padding=True,
        return_tensors="pt",
    )
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["logits"] = {0: "batch"}
    with _quiet(), torch.no_grad():
        torch.onnx.export(
            LogitsOnly(),
            tuple(enc[n] for n in names),
            str(path),
            input_names=names,
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
            do_constant_folding=True,
        )


def _quantize_stock(src: Path, dst: Path) -> None:
    """ONNX Runtime's ``quantize_dynamic`` with its defaults: int8 weights with one scale
    per tensor, activations quantized at run time, every op type it supports."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet():
        quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=False)


def export_peer_models(model: str, root: Path | None = None) -> PeerModels:
    """Export ``model`` (a cross-encoder directory or cached hub id) for fastembed and
    FlashRank once; the folders (reused when already there)."""
    key = _local_key(model)
    if key is not None:
        found = _read_manifest(root or cache_dir() / "peers" / key)
        if found is not None:
            return found
    require("transformers", extra="minilm", purpose="the ONNX peers' export")
    require("onnxruntime", extra="fast", purpose="the ONNX peers' export")
    require("onnx", extra="fast", purpose="the ONNX peers' export")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    hf_tokenizer = AutoTokenizer.from_pretrained(model)
    hf_model = AutoModelForSequenceClassification.from_pretrained(model).eval()
    key = key or _digest(hf_model)
    root = root or cache_dir() / "peers" / key
    found = _read_manifest(root)
    if found is not None:
        return found
    name = f"crossrank-bench-{key[:12]}"
    file = f"flashrank-{name}_Q.onnx"
    max_length = _max_length(hf_model, hf_tokenizer)
    peers = PeerModels(
        root=root,
        fastembed_dir=root / "fastembed",
        flashrank_cache=root / "flashrank",
        flashrank_name=name,
        flashrank_file=file,
        max_length=max_length,
    )
    root.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        fe = stage / "fastembed"
        fr = stage / "flashrank" / name
        (fe / "onnx").mkdir(parents=True)
        fr.mkdir(parents=True)
        _export_fp32(hf_model, hf_tokenizer, fe / FASTEMBED_FILE)
        _quantize_stock(fe / FASTEMBED_FILE, fr / file)
        for folder in (fe, fr):
            _write_tokenizer(hf_tokenizer, hf_model, folder, max_length)
        manifest = {"flashrank_name": name, "flashrank_file": file, "max_length": max_length}
        manifest["recipe"] = RECIPE
        manifest["model"] = model
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        if root.exists() and _read_manifest(root) is None:  # an old, incomplete export
            shutil.rmtree(root, ignore_errors=True)
        try:
            os.replace(stage, root)
        except OSError:  # a concurrent run finished first: its files are the same
            shutil.rmtree(stage, ignore_errors=True)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
    return peers


def _need_peer(module: str, dist: str, purpose: str) -> None:
    """A peer library (crossrank's dev group, not an extra) or a clear error."""
    if not installed(module):
        raise MissingDependencyError(
            f"{purpose} needs {dist!r}, which is not installed; install it with: "
            f"pip install {dist} (crossrank's dev dependency group pins it)",
            extra="dev",
            package=dist,
        )
    require(module, extra="dev", package=dist, purpose=purpose)


def fastembed_scorer(peers: PeerModels, threads: int | None = None) -> Scorer:
    """fastembed ``TextCrossEncoder`` on the fp32 export: (query, passages) -> logits."""
    _need_peer("fastembed", "fastembed", "the fastembed row")
    from fastembed.common.model_description import ModelSource
    from fastembed.rerank.cross_encoder import TextCrossEncoder

    name = f"crossrank-bench/{peers.root.name}"
    known = {m["model"].lower() for m in TextCrossEncoder.list_supported_models()}
    if name.lower() not in known:
        TextCrossEncoder.add_custom_model(
            model=name,
            sources=ModelSource(hf=name),  # never fetched: specific_model_path is local
            model_file=FASTEMBED_FILE,
            description="crossrank bench cross-encoder, fp32 ONNX export",
        )
    encoder = TextCrossEncoder(
        name,
        cache_dir=str(peers.root / "fastembed-cache"),
        threads=threads,
        specific_model_path=str(peers.fastembed_dir),
        local_files_only=True,
    )

    def score(query: str, passages: Sequence[str]) -> list[float]:
        return [float(s) for s in encoder.rerank(query, list(passages))]

    return score


def flashrank_scorer(peers: PeerModels, threads: int | None = None) -> Scorer:
    """FlashRank ``Ranker`` on the stock per-tensor int8 export: (query, passages) ->
    its scores (sigmoid of the logits), in the passages' order.

    FlashRank has no thread setting (its session takes ONNX Runtime's default: one
    thread per physical core); with ``threads`` its session is rebuilt with that many
    intra-op threads, the file and everything else as FlashRank set them."""
    _need_peer("flashrank", "flashrank", "the FlashRank row")
    import flashrank.Config
    import onnxruntime as ort
    from flashrank import Ranker, RerankRequest

    flashrank.Config.model_file_map.setdefault(peers.flashrank_name, peers.flashrank_file)
    ranker = Ranker(
        model_name=peers.flashrank_name,
        cache_dir=str(peers.flashrank_cache),
        max_length=peers.max_length,
        log_level="WARNING",
    )
    if threads is not None:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        ranker.session = ort.InferenceSession(
            str(peers.flashrank_path), so, providers=["CPUExecutionProvider"]
        )

    def score(query: str, passages: Sequence[str]) -> list[float]:
        request = RerankRequest(
            query=query, passages=[{"id": i, "text": t} for i, t in enumerate(passages)]
        )
        out = [0.0] * len(passages)
        for p in ranker.rerank(request):
            out[int(p["id"])] = float(p["score"])
        return out

    return score
