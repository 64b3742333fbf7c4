"""The T5 rerankers on transformers' ``T5ForConditionalGeneration``: monoT5 and RankT5
(presets ``"monot5"``, ``"rankt5"``: pair backends for the engine) and duoT5 (a pairwise
re-ranking stage over the top-k of a previous ranking, :class:`DuoT5Stage`).

* monoT5 (default ``castorini/monot5-base-msmarco``): input ``"Query: {q} Document: {d}
  Relevant:"`` (``</s>`` appended), one decoder step from the decoder start token, the
  logits of ``"▁true"``/``"▁false"``. ``score="logit"`` (default): ``true − false`` (its
  sigmoid is P(true); same order as pygaggle's score); ``"probability"``: P(true);
  ``"log_prob"``: ``log_softmax([false, true])[true]``, pygaggle's and pyterrier-t5's number.
* RankT5, encoder-decoder variant (default ``Soyoung97/RankT5-base``): input
  ``"Query: {q} Document: {d}"``, score = the first decoder step's logit of a designated
  token (``token=``, default ``<extra_id_10>`` as in the RankT5 paper).
* duoT5 (default ``castorini/duot5-base-msmarco``): ``"Query: {q} Document0: {a} Document1:
  {b} Relevant:"`` → p(a > b) = softmax([false, true])[true] for every ordered pair of the
  top-k; a text's score is the sym-sum ``Σ_j p(i > j) + (1 − p(j > i))``, as in pygaggle.

Precision: fp32 by default; bf16 with ``precision="auto"`` on a CPU with bf16
instructions and on CUDA (T5 overflows in fp16, so fp16 is not offered). Torch only (see
:mod:`._templated`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal

from .. import deps
from .._validate import int_at_least, one_of, positive_int
from ..errors import ConfigError, EmptyQueryError, InputError, ModelLoadError
from ..types import Pair, RankedText, ScoreScale
from ._templated import TemplateEncoder, pad_batch, pairs_in_order, torch_request
from .runtime import (
    Choice,
    Family,
    HFTokenizer,
    LoadedModel,
    LocalBackend,
    PairEncoding,
    SpeedPolicy,
    load_error,
    local_weights_dir,
    model_max_length,
    plan_speed,
    resolve_device,
    weights_digest,
)
from .runtime.overhead import PROBES

__all__ = [
    "FAMILY",
    "MONO_TEMPLATE",
    "RANK_TEMPLATE",
    "DuoT5Stage",
    "MonoT5Backend",
    "RankT5Backend",
]

MONO_TEMPLATE = "Query: {query} Document: {text} Relevant:"
RANK_TEMPLATE = "Query: {query} Document: {text}"
DUO_TEMPLATE = "Query: {query} Document0: {a} Document1: {b} Relevant:"

Precision = Literal["auto", "exact", "fp32", "bf16"]

FAMILY = Family(
    name="t5",
    label="T5 reranker",
    extra="bge",
    policy=SpeedPolicy(
        precisions=("auto", "exact", "fp32", "bf16"),
        cpu_auto=(Choice("torch", "bf16", needs="bf16"), Choice("torch", "fp32")),
        gpu_auto=(("cuda", "bf16"),),
    ),
)
_DTYPES = {"fp32": "float32", "bf16": "bfloat16"}


class _Loaded:
    """A T5 model and tokenizer loaded in the planned dtype."""

    def __init__(
        self,
        model: str | os.PathLike[str] | None,
        default_model: str,
        *,
        device: str | None,
        precision: object,
        runtime: object,
        num_threads: object,
        revision: str | None,
        cache_dir: str | None,
        local_files_only: bool | None,
    ) -> None:
        self.request = torch_request(FAMILY.policy, precision, runtime, num_threads)
        self.torch = deps.require("torch", extra="bge", purpose="the T5 rerankers")
        transformers = deps.require("transformers", extra="bge", purpose="the T5 rerankers")
        self.model_id = str(model) if model is not None else default_model
        self.device = resolve_device(device, extra="bge")
        self.plan = plan_speed(
            device=self.device,
            precision=self.request.precision,
            runtime="torch",
            policy=FAMILY.policy,
        )
        kwargs: dict[str, Any] = {}
        for key, value in (
            ("revision", revision),
            ("cache_dir", cache_dir),
            ("local_files_only", local_files_only),
        ):
            if value is not None:
                kwargs[key] = value
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.model_id, **kwargs)
            self.model = transformers.T5ForConditionalGeneration.from_pretrained(
                self.model_id, dtype=getattr(self.torch, _DTYPES[self.plan.precision]), **kwargs
            )
            self.model.to(self.device)
        except Exception as exc:
            raise load_error(self.model_id + (f"@{revision}" if revision else ""), exc) from exc
        self.model.eval()
        self.spans = HFTokenizer(self.tokenizer, extra="bge", pair_tokens=0)
        self.weights = weights_digest(
            local_weights_dir(
                self.model_id,
                revision,
                cache_dir,
                getattr(self.model, "name_or_path", None),
                extra="bge",
            )
        )
        start = self.model.config.decoder_start_token_id
        self.start = int(start if start is not None else self.tokenizer.pad_token_id or 0)
        self.pad = int(self.tokenizer.pad_token_id or 0)

    def token_id(self, token: str) -> int:
        tid = self.tokenizer.convert_tokens_to_ids(token)
        if tid is None or tid == self.tokenizer.unk_token_id:
            raise ModelLoadError(f"tokenizer of {self.model_id!r} has no token {token!r}")
        return int(tid)

    def count(self, texts: Sequence[str]) -> list[int]:
        return [len(s) for s in self.spans.token_spans(texts)]

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text)["input_ids"])  # with the model's </s>

    def first_step_logits(self, module: Any, seqs: list[list[int]]) -> Any:
        """The first decoder step's logits (batch × vocabulary, fp32)."""
        torch = self.torch
        ids, mask = pad_batch(torch, seqs, self.pad, "right", self.device)
        start = torch.full((len(seqs), 1), self.start, dtype=torch.long, device=self.device)
        out = module(input_ids=ids, attention_mask=mask, decoder_input_ids=start)
        return out.logits[:, 0, :].float()


class _T5PairBackend(LocalBackend):
    """A pointwise T5 reranker on the local runtime layer."""

    family = FAMILY
    score_scale: ScoreScale = "logit"
    _template: str
    _default_model: str

    def _load(
        self,
        t5: _Loaded,
        max_length: int | None,
        max_batch_tokens: int,
        extra_fingerprint: dict[str, Any],
    ) -> None:
        template = self._template
        limit = min(max_length or 512, model_max_length(t5.tokenizer, t5.model.config, default=512))

        def build(query: str, text: str) -> list[int]:
            return t5.encode(template.format(query=query, text=text))

        encoder = TemplateEncoder(
            build, t5.count, t5.spans.token_spans, limit, f"T5 reranker {t5.model_id!r}"
        )
        if encoder.added_tokens + 2 > limit:
            raise ConfigError(f"max_length={limit} leaves no room beside the template")
        self._encoder = encoder

        def forward(module: Any) -> Any:
            def run(seqs: list[list[int]]) -> list[float]:
                return self._scores(t5.torch, t5.first_step_logits(module, seqs))

            def score(pairs: Sequence[Pair]) -> list[float]:
                return pairs_in_order(pairs, encoder, max_batch_tokens, run)

            return score

        self._start(
            LoadedModel(
                model_id=t5.model_id,
                module=t5.model,
                hf_model=None,
                hf_tokenizer=t5.tokenizer,
                device=t5.device,
                owned=True,
                not_exportable="T5 rerankers run on torch only",
            ),
            t5.request,
            PairEncoding(max_length=limit, added_tokens=encoder.added_tokens),
            forward=forward,
            onnx_cache_dir=None,
            fingerprint={"model": t5.model_id, "weights": t5.weights, "template": template}
            | extra_fingerprint,
        )

    def _scores(self, torch: Any, logits: Any) -> list[float]:
        raise NotImplementedError

    def encode_pair(self, query: str, text: str) -> list[int]:
        """The token ids the model reads for ``(query, text)``."""
        return self._encoder.encode(query, text)


class MonoT5Backend(_T5PairBackend):
    """monoT5 (preset ``"monot5"``); see the module docstring. ``score``: ``"logit"``,
    ``"probability"`` or ``"log_prob"``; ``max_length`` default 512 (pygaggle's)."""

    _template = MONO_TEMPLATE

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        score: Literal["logit", "probability", "log_prob"] = "logit",
        true_token: str = "▁true",
        false_token: str = "▁false",
        device: str | None = None,
        precision: Precision = "auto",
        runtime: Literal["auto", "torch"] = "auto",
        max_length: int | None = None,
        max_batch_tokens: int = 16384,
        num_threads: int | None = None,
        revision: str | None = None,
        cache_dir: str | None = None,
        local_files_only: bool | None = None,
    ) -> None:
        one_of("score", score, ("logit", "probability", "log_prob"))
        max_length = int_at_least("max_length", max_length, 16, allow_none=True)
        max_batch_tokens = positive_int("max_batch_tokens", max_batch_tokens)
        t5 = _Loaded(
            model,
            "castorini/monot5-base-msmarco",
            device=device,
            precision=precision,
            runtime=runtime,
            num_threads=num_threads,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
        )
        self._true, self._false = t5.token_id(true_token), t5.token_id(false_token)
        self._score_kind = score
        # a log-probability or a probability is not a logit: normalize="sigmoid" leaves it
        self.score_scale = "logit" if score == "logit" else "probability"
        self._load(
            t5, max_length, max_batch_tokens, {"score": score, "tokens": [true_token, false_token]}
        )

    def _scores(self, torch: Any, logits: Any) -> list[float]:
        two = torch.stack([logits[:, self._false], logits[:, self._true]], dim=1)
        if self._score_kind == "logit":
            col = two[:, 1] - two[:, 0]
        elif self._score_kind == "log_prob":
            col = torch.log_softmax(two, dim=1)[:, 1]
        else:
            col = torch.softmax(two, dim=1)[:, 1]
        return [float(x) for x in col.tolist()]


class RankT5Backend(_T5PairBackend):
    """RankT5, encoder-decoder (preset ``"rankt5"``): the first decoder step's logit of
    ``token`` (default ``<extra_id_10>``)."""

    _template = RANK_TEMPLATE

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        token: str = "<extra_id_10>",
        device: str | None = None,
        precision: Precision = "auto",
        runtime: Literal["auto", "torch"] = "auto",
        max_length: int | None = None,
        max_batch_tokens: int = 16384,
        num_threads: int | None = None,
        revision: str | None = None,
        cache_dir: str | None = None,
        local_files_only: bool | None = None,
    ) -> None:
        max_length = int_at_least("max_length", max_length, 16, allow_none=True)
        max_batch_tokens = positive_int("max_batch_tokens", max_batch_tokens)
        t5 = _Loaded(
            model,
            "Soyoung97/RankT5-base",
            device=device,
            precision=precision,
            runtime=runtime,
            num_threads=num_threads,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
        )
        self._token = t5.token_id(token)
        self._load(t5, max_length, max_batch_tokens, {"token": token})

    def _scores(self, torch: Any, logits: Any) -> list[float]:
        return [float(x) for x in logits[:, self._token].tolist()]


class DuoT5Stage:
    """duoT5 as a re-ranking stage: reorders the top ``top_k`` of a previous ranking.

    ``rerank(query, ranked)``: ``ranked`` is a previous stage's output, best first — the
    engine's ``Reranker.rerank`` result (``RankedText``: each text is compared through
    its best window, ``window_text``) or plain strings. Every ordered pair of the first
    ``top_k`` is scored (``k·(k−1)`` model inputs); the result is those ``top_k`` sorted by
    their sym-sum score (0 … 2(k−1)), then the rest in their previous order and with their
    previous scores. Each text of a pair gets half of what ``max_length`` leaves beside
    the query and template; a text cut to fit is marked ``truncated=True`` (never silently).

    Options as for :class:`MonoT5Backend` (``model`` default ``castorini/duot5-base-msmarco``),
    plus ``top_k`` (default 10) and ``batch_size`` (model inputs per forward pass).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        top_k: int = 10,
        batch_size: int = 16,
        true_token: str = "▁true",
        false_token: str = "▁false",
        device: str | None = None,
        precision: Precision = "auto",
        runtime: Literal["auto", "torch"] = "auto",
        max_length: int | None = None,
        num_threads: int | None = None,
        revision: str | None = None,
        cache_dir: str | None = None,
        local_files_only: bool | None = None,
    ) -> None:
        self.top_k = int_at_least("top_k", top_k, 2)
        self.batch_size = positive_int("batch_size", batch_size)
        max_length = int_at_least("max_length", max_length, 16, allow_none=True)
        t5 = self._t5 = _Loaded(
            model,
            "castorini/duot5-base-msmarco",
            device=device,
            precision=precision,
            runtime=runtime,
            num_threads=num_threads,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
        )
        self._true, self._false = t5.token_id(true_token), t5.token_id(false_token)
        self.max_length = min(
            max_length or 512, model_max_length(t5.tokenizer, t5.model.config, default=512)
        )
        self._module = t5.model.to(getattr(t5.torch, _DTYPES[t5.plan.precision]))
        # measured: encoded length − query − both texts, over the probe pairs
        self.added_tokens = max(
            len(self._build(q, t, t)) - n_q - 2 * n_t
            for (q, t), n_q, n_t in zip(
                PROBES,
                t5.count([q for q, _ in PROBES]),
                t5.count([t for _, t in PROBES]),
                strict=True,
            )
        )
        self.precision = t5.plan.precision
        self.model_id = t5.model_id

    def _build(self, query: str, a: str, b: str) -> list[int]:
        return self._t5.encode(DUO_TEMPLATE.format(query=query, a=a, b=b))

    def _fit(self, text: str, budget: int) -> tuple[str, bool]:
        spans = self._t5.spans.token_spans([text])[0]
        if len(spans) <= budget:
            return text, False
        return text[: spans[budget - 1][1]] if budget > 0 else "", True

    def pairwise(self, query: str, texts: Sequence[str]) -> list[list[float]]:
        """``p[i][j]`` = p(text i is more relevant than text j) (diagonal 0)."""
        n = len(texts)
        order = [(i, j) for i in range(n) for j in range(n) if i != j]
        seqs = [self._build(query, texts[i], texts[j]) for i, j in order]
        p = [[0.0] * n for _ in range(n)]
        torch = self._t5.torch
        with torch.inference_mode():
            for at in range(0, len(seqs), self.batch_size):
                logits = self._t5.first_step_logits(self._module, seqs[at : at + self.batch_size])
                two = torch.stack([logits[:, self._false], logits[:, self._true]], dim=1)
                probs = torch.softmax(two, dim=1)[:, 1].tolist()
                for (i, j), prob in zip(order[at : at + self.batch_size], probs, strict=True):
                    p[i][j] = float(prob)
        return p

    def rerank(self, query: str, ranked: Sequence[RankedText | str]) -> list[RankedText]:
        """The first ``top_k`` of ``ranked`` reordered by duoT5's sym-sum, then the rest."""
        if not isinstance(query, str) or not query.strip():
            raise EmptyQueryError(f"query must be a non-blank string, got {query!r:.80}")
        if isinstance(ranked, (str, bytes)):
            raise InputError("ranked must be a list of RankedText or strings")
        items: list[RankedText] = []
        for i, r in enumerate(ranked):
            if isinstance(r, RankedText):
                items.append(r)
            elif isinstance(r, str):
                items.append(
                    RankedText(index=i, score=0.0, text=r, window=(0, len(r)), n_windows=1)
                )
            else:
                raise InputError(f"ranked[{i}] must be a RankedText or a string")
        head, tail = items[: self.top_k], items[self.top_k :]
        if len(head) < 2:
            return list(items)
        qn = len(self._t5.spans.token_spans([query])[0])
        budget = (self.max_length - self.added_tokens - qn) // 2
        if budget < 1:
            raise InputError(
                f"the query leaves no room for two texts in max_length={self.max_length}"
            )
        fitted = [self._fit(r.window_text, budget) for r in head]
        p = self.pairwise(query, [t for t, _ in fitted])
        n = len(head)
        scores = [sum(p[i][j] + (1.0 - p[j][i]) for j in range(n) if j != i) for i in range(n)]
        out = [
            RankedText(
                index=r.index,
                score=scores[k],
                text=r.text,
                window=r.window,
                n_windows=r.n_windows,
                truncated=r.truncated or fitted[k][1],
            )
            for k, r in enumerate(head)
        ]
        out.sort(key=lambda r: -r.score)
        return out + tail
