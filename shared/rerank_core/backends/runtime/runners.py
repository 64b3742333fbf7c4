"""The two ways a local model scores pairs, behind one interface (:class:`Runner`).

* :class:`TorchRunner` runs a torch module through a forward function the backend gives
  (its pair encoding), under torch's inference mode, in the planned dtype. On the CPU a
  reduced-precision run scores each pair as its own sequence, so a score never depends on
  the other pairs of its batch.
* :class:`OnnxRunner` runs an exported model on ONNX Runtime. Each (query, window) pair is
  its own sequence: no padding, and a pair's score never depends on what it was batched
  with (dynamic int8 quantizes with a per-tensor scale, so batching would make scores
  depend on the neighbours). Sequences run in parallel on a small pool of threads, each a
  single-threaded ONNX Runtime run, longest first. The session's own thread pool is off,
  so nothing here spins or touches torch's thread settings.

Neither turns ``KeyboardInterrupt`` or ``SystemExit`` into another error.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from ... import deps
from ...errors import BackendError
from ...types import Pair
from .hf import torch_threads
from .onnx_export import INPUTS, RECIPE, OnnxExportError, onnx_session
from .plan import Precision, Runtime

__all__ = ["OnnxRunner", "PairEncoding", "Runner", "TorchRunner", "hf_forward"]

Truncation = Literal["longest_first", "only_second"]


@dataclass(frozen=True, slots=True)
class PairEncoding:
    """How a backend family turns a (query, text) pair into one model input.

    ``max_length``: tokens per pair, special tokens included. ``truncation``:
    ``"longest_first"`` (sentence-transformers) or ``"only_second"`` (FlagEmbedding).
    ``query_max_tokens``: queries are first cut to this many tokens (FlagReranker cuts
    them to 3/4 of ``max_length``); ``None``: not cut. ``label``: the logit column that
    is the score (the last by default). ``added_tokens``: every token the family adds
    around a (query, text) pair (special tokens, prompt or chat template, instruction),
    measured from its tokenizer (:func:`~.overhead.measure_added_tokens`); the engine's
    window budget is ``max_length`` − query tokens − this. ``None``: the tokenizer's
    ``num_special_tokens_to_add(pair=True)``.
    """

    max_length: int
    truncation: Truncation = "longest_first"
    query_max_tokens: int | None = None
    label: int = -1
    added_tokens: int | None = None


class Runner(Protocol):
    """Scores pairs with one runtime at one precision."""

    @property
    def runtime(self) -> Runtime: ...

    @property
    def precision(self) -> Precision: ...

    @property
    def onnx_path(self) -> Path | None:
        """The ONNX model file scored with (``None`` on torch)."""
        ...

    @property
    def recipe(self) -> str | None:
        """The export recipe (``None`` on torch); part of the fingerprint."""
        ...

    def score(self, pairs: Sequence[Pair]) -> list[float]: ...

    def close(self) -> None: ...


def _torch() -> Any:
    torch = sys.modules.get("torch")
    if torch is None:  # pragma: no cover - a torch module implies torch
        raise BackendError("the torch runtime needs torch")
    return torch


def hf_forward(
    module: Any, hf_tokenizer: Any, encoding: PairEncoding, device: str
) -> Callable[[Sequence[Pair]], list[float]]:
    """The forward of a transformers sequence-classification model: the pairs encoded
    with a private copy of ``hf_tokenizer`` (``encoding.truncation`` at
    ``encoding.max_length``, padded), one logit column per pair."""
    import copy

    tokenizer = copy.deepcopy(hf_tokenizer)  # never shares the caller's (busy) tokenizer

    def forward(pairs: Sequence[Pair]) -> list[float]:
        batch = tokenizer(
            [q for q, _ in pairs],
            [t for _, t in pairs],
            truncation=encoding.truncation,
            max_length=encoding.max_length,
            padding=True,
            return_tensors="pt",
        ).to(device)
        logits = module(**batch, return_dict=True).logits
        column = logits.float().reshape(len(pairs), -1)[:, encoding.label]
        return [float(s) for s in column.cpu().tolist()]

    return forward


class TorchRunner:
    """Scores with ``forward`` (built by the backend on ``module``) under inference mode.

    ``threads``: torch's global thread count while scoring (restored after), only when
    the caller gave ``num_threads``. The module's dtype and device are remembered: a
    caller's model converted elsewhere after the backend was built is refused, never
    scored with a fingerprint that no longer describes it.
    """

    runtime: Runtime = "torch"
    onnx_path: Path | None = None
    recipe: str | None = None

    def __init__(
        self,
        module: Any,
        forward: Callable[[Sequence[Pair]], list[float]],
        *,
        precision: Precision,
        device: str,
        threads: int | None,
        model_name: str,
    ) -> None:
        self._torch = _torch()
        self.precision: Precision = precision
        self._module = module
        self._forward = forward
        self._threads = threads
        self._device = device
        self._name = model_name
        self._per_pair = device == "cpu" and precision != "fp32"
        first = next(module.parameters())
        self._dtype, self._at = first.dtype, first.device

    def score(self, pairs: Sequence[Pair]) -> list[float]:
        torch = self._torch
        with torch_threads(torch, self._threads), torch.inference_mode():
            self._check_module()
            if self._per_pair:
                return [self._forward([p])[0] for p in pairs]
            return self._forward(pairs)

    def _check_module(self) -> None:
        first = next(self._module.parameters())
        if first.dtype != self._dtype or first.device != self._at:
            raise BackendError(
                f"the model of {self._name!r} was changed to {first.dtype} on {first.device} "
                f"after this backend was built for {self._dtype} on {self._device} "
                "(a model passed in is used as it is; FlagReranker.compute_score, for one, "
                "converts its model); build a new backend"
            )

    def close(self) -> None:
        """Nothing to stop: torch runs in the caller's thread."""


class OnnxRunner:
    """Scores (query, text) pairs with an exported model on ONNX Runtime.

    ``tokenizer_json``: the model's fast tokenizer, serialized; a private copy is
    configured once (``encoding.truncation`` at ``encoding.max_length``, no padding) and
    never mutated, so any number of threads can encode at once. ``threads``: sequences
    run at once.
    """

    runtime: Runtime = "onnx"

    def __init__(
        self,
        model_path: Path,
        tokenizer_json: str,
        *,
        precision: Precision,
        encoding: PairEncoding,
        threads: int,
        extra: str,
    ) -> None:
        tokenizers = deps.require("tokenizers", extra=extra, purpose="a local model's tokenizer")
        self._np = deps.require("numpy", extra="fast", purpose="the ONNX Runtime path")
        self.precision: Precision = precision
        self.onnx_path: Path | None = model_path
        self.recipe: str | None = RECIPE
        self.threads = max(1, int(threads))
        self._session = onnx_session(model_path, 1)
        self._inputs = [i.name for i in self._session.get_inputs()]
        unknown = set(self._inputs) - set(INPUTS)
        if unknown:
            raise OnnxExportError(f"unexpected ONNX inputs {sorted(unknown)} in {model_path}")
        tok = tokenizers.Tokenizer.from_str(tokenizer_json)
        tok.no_padding()
        tok.enable_truncation(encoding.max_length, strategy=encoding.truncation)
        self._tok = tok
        self._label = encoding.label
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
        except BaseException as exc:  # Ctrl-C included: kept until the helpers stop
            error = exc
            for _ in range(n):  # drain the counter so the helpers finish soon
                next(counter)
        for h in helpers:
            try:
                h.result()
            except BaseException as exc:
                error = error or exc
        if error is None:
            return out
        if not isinstance(error, Exception):  # KeyboardInterrupt, SystemExit: unchanged
            raise error
        raise BackendError(f"ONNX Runtime failed: {type(error).__name__}: {error}") from error

    def close(self) -> None:
        """Stop the worker threads (they also stop with the process)."""
        with self._pool_lock:
            if self._pool is not None and self._pool_pid == os.getpid():
                self._pool.shutdown(wait=False)
            self._pool = None
