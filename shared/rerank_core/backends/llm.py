"""LLM-style yes/no rerankers (presets ``"qwen3"`` and ``"bge-gemma"``): a causal language
model reads query and text in its own prompt template, and the score comes from the
logits of its next token at the last position.

* ``qwen3`` (default ``Qwen/Qwen3-Reranker-0.6B``; 4B and 8B load the same way): the
  model card's template — a system turn asking for "yes" or "no", a user turn
  ``<Instruct>: {instruction}\\n<Query>: {query}\\n<Document>: {text}``, and the assistant
  turn opened with an empty think block (``<think>\\n\\n</think>\\n\\n``). Score: the
  model card's ``log_softmax`` over the [no, yes] logits; ``score="logit"`` (default)
  returns ``logit(yes) − logit(no)`` (its ``sigmoid`` is the card's P(yes), so
  ``normalize="sigmoid"`` gives the card's number), ``score="probability"`` returns P(yes).
* ``bge-gemma`` (default ``BAAI/bge-reranker-v2-gemma``): FlagEmbedding's
  ``FlagLLMReranker`` input — ``<bos>`` + ``"A: {query}"`` + ``"\\n"`` + ``"B: {text}"``
  + ``"\\n"`` + its prompt (``instruction=`` replaces the default prompt), each piece
  tokenized alone. Score: the logit of the ``"Yes"`` token (``normalize="sigmoid"`` gives
  ``compute_score(..., normalize=True)``).

Both: left padding, pairs run in length-sorted sub-batches (``max_batch_tokens``), bf16 on
a CPU with bf16 instructions (``precision="auto"``), fp16 on CUDA, fp32 with
``precision="exact"``. Torch only (see :mod:`._templated` for why no ONNX). The tokens the
template adds are measured and counted in the engine's window budget, so a window is
never cut by the model's ``max_length``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal

from .. import deps
from .._validate import int_at_least, one_of
from ..errors import ConfigError, ModelLoadError
from ..types import Pair, ScoreScale
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

__all__ = [
    "BGE_GEMMA_PROMPT",
    "FAMILY",
    "QWEN3_INSTRUCTION",
    "QWEN3_PREFIX",
    "QWEN3_SUFFIX",
    "GemmaRerankerBackend",
    "LLMRerankerBackend",
    "Qwen3RerankerBackend",
]

QWEN3_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
QWEN3_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
    'and the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
    "<|im_start|>user\n"
)
QWEN3_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
BGE_GEMMA_PROMPT = (
    "Given a query A and a passage B, determine whether the passage contains an answer to "
    "the query by providing a prediction of either 'Yes' or 'No'."
)

Precision = Literal["auto", "exact", "fp32", "bf16", "fp16"]
Score = Literal["logit", "probability"]

FAMILY = Family(
    name="llm",
    label="LLM reranker",
    extra="bge",
    policy=SpeedPolicy(
        precisions=("auto", "exact", "fp32", "bf16", "fp16"),
        cpu_auto=(Choice("torch", "bf16", needs="bf16"), Choice("torch", "fp32")),
        gpu_auto=(("cuda", "fp16"),),
    ),
)

_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


@dataclass(frozen=True, slots=True)
class _Style:
    """One model family's ``name`` (in the fingerprint), ``default_model`` and
    ``default_instruction``."""

    name: str
    default_model: str
    default_instruction: str


class LLMRerankerBackend(LocalBackend):
    """Base of the yes/no LLM rerankers; a subclass states its template (:meth:`_builder`)
    and score (:meth:`_scores`). Options (both presets):

    ``model``: hub id or local directory. ``instruction``: the task instruction (Qwen3) or
    prompt (bge-gemma); default the model card's. ``device``: ``"cpu"`` (default),
    ``"auto"`` or a torch device. ``precision``: ``"auto"`` (bf16 on a CPU with bf16
    instructions, else fp32; fp16 on CUDA), ``"exact"``/``"fp32"``, ``"bf16"``, ``"fp16"``.
    ``runtime``: ``"auto"``/``"torch"``. ``max_length``: tokens per encoded pair, template
    included. ``max_batch_tokens``: padded tokens per forward pass (default 16384).
    ``num_threads``, ``revision``, ``cache_dir``, ``trust_remote_code``,
    ``local_files_only``: as for the other local backends.
    """

    family = FAMILY
    style: ClassVar[_Style]
    score_scale: ScoreScale = "logit"

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        instruction: str | None = None,
        score: Score = "logit",
        device: str | None = None,
        precision: Precision = "auto",
        runtime: Literal["auto", "torch"] = "auto",
        max_length: int | None = None,
        max_batch_tokens: int = 16384,
        num_threads: int | None = None,
        revision: str | None = None,
        cache_dir: str | None = None,
        trust_remote_code: bool = False,
        local_files_only: bool | None = None,
    ) -> None:
        request = torch_request(FAMILY.policy, precision, runtime, num_threads)
        one_of("score", score, ("logit", "probability"))
        if instruction is not None and (not isinstance(instruction, str) or not instruction):
            raise ConfigError(f"instruction must be a non-empty string, got {instruction!r}")
        max_length = int_at_least("max_length", max_length, 16, allow_none=True)
        max_batch_tokens = int_at_least("max_batch_tokens", max_batch_tokens, 1)
        torch = deps.require("torch", extra="bge", purpose="the LLM rerankers")
        transformers = deps.require("transformers", extra="bge", purpose="the LLM rerankers")
        model_id = str(model) if model is not None else self.style.default_model
        on_device = resolve_device(device, extra="bge")
        plan = plan_speed(
            device=on_device,
            precision=request.precision,
            runtime="torch",
            policy=FAMILY.policy,
        )
        kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
        for key, value in (
            ("revision", revision),
            ("cache_dir", cache_dir),
            ("local_files_only", local_files_only),
        ):
            if value is not None:
                kwargs[key] = value
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(model_id, **kwargs)
            lm = transformers.AutoModelForCausalLM.from_pretrained(
                model_id, dtype=getattr(torch, _DTYPES[plan.precision]), **kwargs
            )
            lm.to(on_device)
        except Exception as exc:
            raise load_error(model_id + (f"@{revision}" if revision else ""), exc) from exc
        self._instruction = instruction or self.style.default_instruction
        self._score_kind: Score = score
        if score == "probability":
            self.score_scale = "probability"
        self._hf_tokenizer = tokenizer
        build, default_max = self._builder(tokenizer, self._instruction)
        cap = model_max_length(tokenizer, lm.config, default=default_max)
        limit = min(max_length or default_max, cap)
        spans = HFTokenizer(tokenizer, extra="bge", pair_tokens=0)
        encoder = TemplateEncoder(
            build,
            lambda xs: [len(s) for s in spans.token_spans(xs)],
            spans.token_spans,
            limit,
            f"{self.style.name} reranker {model_id!r}",
        )
        if encoder.added_tokens + 2 > limit:
            raise ConfigError(
                f"max_length={limit} leaves no room beside the template "
                f"({encoder.added_tokens} tokens)"
            )
        self._encoder = encoder
        pad_id = tokenizer.pad_token_id
        if pad_id is None:
            pad_id = tokenizer.eos_token_id or 0

        def forward(module: Any) -> Any:
            def run(seqs: list[list[int]]) -> list[float]:
                ids, mask = pad_batch(torch, seqs, int(pad_id), "left", on_device)
                positions = (mask.cumsum(-1) - 1).clamp(min=0)
                out = module(
                    input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1
                )
                return self._scores(torch, out.logits[:, -1, :].float())

            def score(pairs: Sequence[Pair]) -> list[float]:
                return pairs_in_order(pairs, encoder, max_batch_tokens, run)

            return score

        self._start(
            LoadedModel(
                model_id=model_id,
                module=lm,
                hf_model=None,
                hf_tokenizer=tokenizer,
                device=on_device,
                owned=True,
                not_exportable="LLM rerankers run on torch only",
            ),
            request,
            PairEncoding(max_length=limit, added_tokens=encoder.added_tokens),
            forward=forward,
            onnx_cache_dir=None,
            fingerprint={
                "model": model_id,
                "revision": revision,
                "weights": weights_digest(
                    local_weights_dir(
                        model_id,
                        revision,
                        cache_dir,
                        getattr(lm, "name_or_path", None),
                        extra="bge",
                    )
                ),
                "template": self.style.name,
                "instruction": self._instruction,
                "score": score,
            },
        )
        self._plan = replace(
            self._plan,
            reason=self._plan.reason.replace("runtime='torch' asked for: ", "")
            + " (LLM rerankers run on torch)",
        )

    # what a subclass states -------------------------------------------------------------

    def _builder(self, tokenizer: Any, instruction: str) -> tuple[Any, int]:
        """``(build(query, text) -> ids, default max_length)``."""
        raise NotImplementedError

    def _scores(self, torch: Any, last: Any) -> list[float]:
        """Scores from the last position's logits (batch × vocabulary, fp32)."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """The local backends' facts plus ``template``, ``instruction`` and ``score``."""
        facts = super().describe()
        facts.update(
            template=self.style.name, instruction=self._instruction, score=self._score_kind
        )
        return facts

    def encode_pair(self, query: str, text: str) -> list[int]:
        """The token ids the model reads for ``(query, text)`` (what the tests check
        against ``max_length``)."""
        return self._encoder.encode(query, text)


def _token_id(tokenizer: Any, token: str, model_id: str) -> int:
    tid = tokenizer.convert_tokens_to_ids(token)
    if tid is None or tid == tokenizer.unk_token_id:
        raise ModelLoadError(f"tokenizer of {model_id!r} has no token {token!r}")
    return int(tid)


class Qwen3RerankerBackend(LLMRerankerBackend):
    """Qwen3-Reranker (preset ``"qwen3"``); see the module docstring for template and score."""

    style = _Style("qwen3", "Qwen/Qwen3-Reranker-0.6B", QWEN3_INSTRUCTION)

    def _builder(self, tokenizer: Any, instruction: str) -> tuple[Any, int]:
        name = str(getattr(tokenizer, "name_or_path", "") or "")
        self._yes = _token_id(tokenizer, "yes", name)
        self._no = _token_id(tokenizer, "no", name)

        def enc(s: str) -> list[int]:
            return list(tokenizer(s, add_special_tokens=False)["input_ids"])

        prefix, suffix = enc(QWEN3_PREFIX), enc(QWEN3_SUFFIX)

        def build(query: str, text: str) -> list[int]:
            middle = f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {text}"
            return prefix + enc(middle) + suffix

        return build, 8192  # the model card's max_length

    def _scores(self, torch: Any, last: Any) -> list[float]:
        pair = torch.stack([last[:, self._no], last[:, self._yes]], dim=1)
        if self._score_kind == "probability":
            return [float(x) for x in torch.log_softmax(pair, dim=1)[:, 1].exp().tolist()]
        return [float(x) for x in (pair[:, 1] - pair[:, 0]).tolist()]


class GemmaRerankerBackend(LLMRerankerBackend):
    """bge-reranker-v2-gemma (preset ``"bge-gemma"``); see the module docstring."""

    style = _Style("bge-gemma", "BAAI/bge-reranker-v2-gemma", BGE_GEMMA_PROMPT)

    def _builder(self, tokenizer: Any, instruction: str) -> tuple[Any, int]:
        def enc(s: str) -> list[int]:
            return list(tokenizer(s, add_special_tokens=False)["input_ids"])

        yes = enc("Yes")
        if not yes:
            raise ModelLoadError("the tokenizer encodes 'Yes' as nothing")
        self._yes = yes[0]
        bos = [] if tokenizer.bos_token_id is None else [int(tokenizer.bos_token_id)]
        sep, prompt = enc("\n"), enc(instruction)

        def build(query: str, text: str) -> list[int]:
            return bos + enc(f"A: {query}") + sep + enc(f"B: {text}") + sep + prompt

        # FlagLLMReranker's default: 512 tokens for <bos>, query and passage, then the prompt
        return build, 512 + len(sep) + len(prompt)

    def _scores(self, torch: Any, last: Any) -> list[float]:
        col = last[:, self._yes]
        if self._score_kind == "probability":
            col = torch.sigmoid(col)
        return [float(x) for x in col.tolist()]
