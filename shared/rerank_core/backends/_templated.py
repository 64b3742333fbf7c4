"""What the prompt-template families (LLM yes/no rerankers, T5 rerankers) share: a pair
encoder that puts query and text into the model's own template, never cuts a window the
engine planned (a pair too long for ``max_length`` — only possible when ``score_pairs`` is
called directly — has its text cut, with a warning), states the tokens it adds (measured,
:mod:`.runtime.overhead`), and pads batches sorted by length.

These families run on torch only: their SpeedPolicy offers no ONNX choice (the shared ONNX
exporter handles sequence-classification encoders; causal LMs of 0.6–9B parameters and
encoder-decoders score through a language-model head, and dynamic int8 of such models moves
scores far more than it does for a small cross-encoder).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Literal

from .._validate import one_of
from ..types import Pair
from .runtime import SpeedPolicy, SpeedRequest
from .runtime.overhead import measure_added_tokens

__all__ = ["TemplateEncoder", "pad_batch", "sub_batches", "torch_request"]

logger = logging.getLogger("crossrank")

Ids = list[int]


def torch_request(
    policy: SpeedPolicy, precision: object, runtime: object, num_threads: object
) -> SpeedRequest:
    """The checked request of a torch-only family (``runtime``: ``"auto"`` or ``"torch"``)."""
    one_of("runtime", runtime, ("auto", "torch"))
    return SpeedRequest.checked(policy, precision, "torch", num_threads)


class TemplateEncoder:
    """Encodes (query, text) pairs with ``build(query, text) -> token ids``.

    ``count(strings)``: each string's tokens as the engine's span tokenizer counts them.
    ``max_length``: the most tokens of one encoded pair. :attr:`added_tokens`: the most
    tokens ``build`` adds beyond query and text, measured over the probe pairs.
    """

    def __init__(
        self,
        build: Callable[[str, str], Ids],
        count: Callable[[Sequence[str]], list[int]],
        spans: Callable[[Sequence[str]], list[list[tuple[int, int]]]],
        max_length: int,
        name: str,
    ) -> None:
        self._build = build
        self._spans = spans
        self.max_length = max_length
        self._name = name
        self._warned = False
        self.added_tokens = measure_added_tokens(
            lambda pairs: [len(build(q, t)) for q, t in pairs], count
        )

    def encode(self, query: str, text: str) -> Ids:
        """The pair's token ids; a text too long for ``max_length`` is cut (at a token
        boundary) until the pair fits, and a warning says so once."""
        ids = self._build(query, text)
        if len(ids) <= self.max_length:
            return ids
        spans = self._spans([text])[0]
        keep = len(spans)
        while len(ids) > self.max_length and keep > 0:
            keep = max(0, keep - (len(ids) - self.max_length))
            ids = self._build(query, text[: spans[keep - 1][1]] if keep else "")
        if not self._warned:
            self._warned = True
            logger.warning(
                "%s: a pair longer than max_length=%d was cut to fit (score_pairs called "
                "with a text the engine did not window)",
                self._name,
                self.max_length,
            )
        return ids[: self.max_length]


def sub_batches(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Indices grouped longest first, each group's padded size at most ``max_tokens``
    (a single longer item is a group of its own)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and (len(groups[-1]) + 1) * lengths[groups[-1][0]] <= max_tokens:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def pad_batch(
    torch: Any, seqs: Sequence[Ids], pad_id: int, side: Literal["left", "right"], device: str
) -> tuple[Any, Any]:
    """``input_ids`` and ``attention_mask`` tensors of ``seqs`` padded on ``side``."""
    width = max(len(s) for s in seqs)
    ids, mask = [], []
    for s in seqs:
        pad = [pad_id] * (width - len(s))
        ones, zeros = [1] * len(s), [0] * (width - len(s))
        ids.append(pad + list(s) if side == "left" else list(s) + pad)
        mask.append(zeros + ones if side == "left" else ones + zeros)
    return (
        torch.tensor(ids, dtype=torch.long, device=device),
        torch.tensor(mask, dtype=torch.long, device=device),
    )


def pairs_in_order(
    pairs: Sequence[Pair],
    encoder: TemplateEncoder,
    max_batch_tokens: int,
    run: Callable[[list[Ids]], list[float]],
) -> list[float]:
    """Encode ``pairs``, run them in length-sorted sub-batches, scores in the given order."""
    seqs = [encoder.encode(q, t) for q, t in pairs]
    out = [0.0] * len(seqs)
    for group in sub_batches([len(s) for s in seqs], max_batch_tokens):
        for i, score in zip(group, run([seqs[i] for i in group]), strict=True):
            out[i] = score
    return out
