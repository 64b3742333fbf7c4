"""A cross-encoder's score head brought to one logit per pair, as sentence-transformers reads it.

``CrossEncoder.predict`` (sentence-transformers 5–6) returns, per pair, the model's
``num_labels`` logits passed through the model's activation: the one named in its config
(``sentence_transformers.activation_fn``, or the pre-v4 ``sbert_ce_default_activation_function``),
else ``Sigmoid`` for one label and ``Identity`` for more; ``apply_softmax=True`` adds a
softmax over the labels. A reranker needs one score, so:

* one logit: the score is that logit; ``predict()`` is the model's activation of it (with
  the default ``Sigmoid``, the engine's ``normalize="sigmoid"`` gives ``predict()``);
* two logits (not relevant, relevant): the head is rewritten as one logit,
  ``logit[1] - logit[0]`` (the difference of the two rows of its last linear layer), whose
  sigmoid is ``predict(..., apply_softmax=True)[:, 1]`` exactly: the same ranking, and the
  same 0–1 score under ``normalize="sigmoid"``. The rewritten model is an ordinary
  one-label model, so the ONNX path exports and scores it like any other;
* more labels (NLI-style heads): refused, there is no relevance score to read.
"""

from __future__ import annotations

import copy
from typing import Any

from ..errors import ModelLoadError

__all__ = ["activation_name", "one_score_head"]


def activation_name(ce: Any) -> str:
    """The activation ``ce.predict()`` applies (``"Sigmoid"``, ``"Identity"``, ...)."""
    fn = getattr(ce, "activation_fn", None)
    return "Identity" if fn is None else type(fn).__name__


def one_score_head(ce: Any, owned: bool, model_id: str) -> tuple[Any, bool, str]:
    """``(ce, owned, head)``: ``ce`` with a one-logit head (a caller's model is copied
    first, never changed) and a description of the head for ``describe()``."""
    labels = int(ce.num_labels)
    if labels == 1:
        return ce, owned, "1 logit"
    if labels != 2:
        raise ModelLoadError(
            f"model {model_id!r} has {labels} output labels; a reranker reads one relevance "
            "score from one logit, or from two (not relevant, relevant)"
        )
    hf_model = ce.model if len(ce) == 1 else None
    if hf_model is None:
        raise ModelLoadError(
            f"model {model_id!r} has two output labels and is not one transformers model: "
            "its head cannot be read as one relevance score"
        )
    if not owned:
        ce, owned = copy.deepcopy(ce), True
        hf_model = ce.model
    _collapse(hf_model, model_id)
    return ce, owned, "2 logits as 1: logit[1] - logit[0] (sigmoid = softmax[1])"


def _collapse(hf_model: Any, model_id: str) -> None:
    """Replace the last two-output linear layer by one output: row 1 minus row 0."""
    import torch

    found = [
        name
        for name, m in hf_model.named_modules()
        if isinstance(m, torch.nn.Linear) and m.out_features == 2
    ]
    if not found:
        raise ModelLoadError(f"model {model_id!r}: no two-output linear score layer found")
    name = found[-1]
    old = hf_model.get_submodule(name)
    new = torch.nn.Linear(
        old.in_features,
        1,
        bias=old.bias is not None,
        device=old.weight.device,
        dtype=old.weight.dtype,
    )
    with torch.no_grad():
        new.weight.copy_(old.weight[1:2] - old.weight[0:1])
        if old.bias is not None:
            new.bias.copy_(old.bias[1:2] - old.bias[0:1])
    parent_name, _, attr = name.rpartition(".")
    parent = hf_model.get_submodule(parent_name) if parent_name else hf_model
    setattr(parent, attr, new)
    hf_model.config.num_labels = 1
    hf_model.num_labels = 1
