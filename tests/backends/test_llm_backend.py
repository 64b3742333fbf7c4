"""The LLM yes/no rerankers (presets ``qwen3``, ``bge-gemma``) against the model cards'
formulas, written here independently with plain transformers, on tiny random Qwen3 and
Gemma models with real tokenizers trained in the tests (``_tiny_generative``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from _tiny_generative import make_gemma, make_qwen3
from _tiny_models import sample_texts
from helpers import need
from rerank_core import Reranker, WindowConfig
from rerank_core.windows import make_windows, window_budget

torch = need("torch")
transformers = need("transformers")

QUERIES = ["what causes scurvy in sailors?", "vitamin C deficiency and immune response"]

# the Qwen3-Reranker model card's template, typed out here (not imported from the backend)
CARD_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
    'and the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
    "<|im_start|>user\n"
)
CARD_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
CARD_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
FLAG_PROMPT = (
    "Given a query A and a passage B, determine whether the passage contains an answer to "
    "the query by providing a prediction of either 'Yes' or 'No'."
)


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_qwen3(tmp_path_factory.mktemp("llm") / "tiny-qwen3")


@pytest.fixture(scope="module")
def gemma_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_gemma(tmp_path_factory.mktemp("llm") / "tiny-gemma")


def texts(n: int = 6, words: int = 30) -> list[str]:
    return [" ".join(t.split()[:words]) for t in sample_texts()[:n]]


# ----------------------------------------------------------------- reference formulas


def qwen_card_ids(tok: Any, q: str, d: str, instruction: str = CARD_INSTRUCTION) -> list[int]:
    prefix = tok.encode(CARD_PREFIX, add_special_tokens=False)
    suffix = tok.encode(CARD_SUFFIX, add_special_tokens=False)
    body = f"<Instruct>: {instruction}\n<Query>: {q}\n<Document>: {d}"
    return list(prefix + tok(body, add_special_tokens=False)["input_ids"] + suffix)


def qwen_card_scores(path: Path, pairs: list[tuple[str, str]], **kw: Any) -> list[float]:
    """The model card's procedure: left-padded batch, last position, log_softmax over
    [no, yes], exp → P(yes)."""
    tok = transformers.AutoTokenizer.from_pretrained(str(path), padding_side="left")
    model = transformers.AutoModelForCausalLM.from_pretrained(str(path)).eval()
    yes, no = tok.convert_tokens_to_ids("yes"), tok.convert_tokens_to_ids("no")
    feats = tok.pad(
        {"input_ids": [qwen_card_ids(tok, q, d, **kw) for q, d in pairs]},
        padding=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        last = model(**feats).logits[:, -1, :]
    two = torch.stack([last[:, no], last[:, yes]], dim=1)
    return [float(x) for x in torch.nn.functional.log_softmax(two, dim=1)[:, 1].exp()]


def gemma_flag_ids(tok: Any, q: str, d: str, prompt: str = FLAG_PROMPT) -> list[int]:
    """FlagLLMReranker's get_inputs (no truncation needed at these lengths)."""
    sep = tok("\n", add_special_tokens=False)["input_ids"]
    return (
        [tok.bos_token_id]
        + tok(f"A: {q}", add_special_tokens=False)["input_ids"]
        + sep
        + tok(f"B: {d}", add_special_tokens=False)["input_ids"]
        + sep
        + tok(prompt, add_special_tokens=False)["input_ids"]
    )


def gemma_flag_scores(path: Path, pairs: list[tuple[str, str]], **kw: Any) -> list[float]:
    """The "Yes" token's logit at the last position, each pair run alone (no padding)."""
    tok = transformers.AutoTokenizer.from_pretrained(str(path))
    model = transformers.AutoModelForCausalLM.from_pretrained(str(path)).eval()
    yes = tok("Yes", add_special_tokens=False)["input_ids"][0]
    out = []
    for q, d in pairs:
        ids = torch.tensor([gemma_flag_ids(tok, q, d, **kw)])
        with torch.no_grad():
            out.append(float(model(input_ids=ids).logits[0, -1, yes]))
    return out


# ----------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def qwen(qwen_dir: Path) -> Any:
    from rerank_core.backends.llm import Qwen3RerankerBackend

    return Qwen3RerankerBackend(str(qwen_dir), precision="exact", max_length=320)


@pytest.fixture(scope="module")
def gemma(gemma_dir: Path) -> Any:
    from rerank_core.backends.llm import GemmaRerankerBackend

    return GemmaRerankerBackend(str(gemma_dir), precision="exact", max_length=320)


def test_qwen3_scores_equal_the_model_card(qwen: Any, qwen_dir: Path) -> None:
    pairs = [(q, t) for q in QUERIES for t in texts()]
    card = qwen_card_scores(qwen_dir, pairs)
    logits = qwen.score_pairs(pairs)  # logit(yes) - logit(no): sigmoid is P(yes)
    assert max(abs(1 / (1 + math.exp(-s)) - c) for s, c in zip(logits, card, strict=True)) < 1e-4
    assert max(card) - min(card) > 1e-3  # the random model still tells texts apart
    sig = Reranker(qwen, cache=None, normalize="sigmoid").score(QUERIES[0], texts())
    assert max(abs(a - b) for a, b in zip(sig, card[:6], strict=True)) < 1e-4


def test_qwen3_probability_and_instruction(qwen_dir: Path) -> None:
    from rerank_core.backends.llm import Qwen3RerankerBackend

    task = "Given a medical question, find abstracts that answer it"
    b = Qwen3RerankerBackend(
        str(qwen_dir), precision="exact", score="probability", instruction=task
    )
    assert b.score_scale == "probability" and b.describe()["instruction"] == task
    pairs = [(QUERIES[1], t) for t in texts()]
    card = qwen_card_scores(qwen_dir, pairs, instruction=task)
    assert max(abs(a - c) for a, c in zip(b.score_pairs(pairs), card, strict=True)) < 1e-4
    default = Qwen3RerankerBackend(str(qwen_dir), precision="exact", score="probability")
    assert b.fingerprint != default.fingerprint  # the instruction is part of the cache key


def test_gemma_scores_equal_flag_llm_reranker_formula(gemma: Any, gemma_dir: Path) -> None:
    pairs = [(q, t) for q in QUERIES for t in texts()]
    ref = gemma_flag_scores(gemma_dir, pairs)
    ours = gemma.score_pairs(pairs)
    assert max(abs(a - b) for a, b in zip(ours, ref, strict=True)) < 1e-4
    assert max(ref) - min(ref) > 1e-3


def test_gemma_instruction_replaces_the_prompt(gemma_dir: Path) -> None:
    from rerank_core.backends.llm import GemmaRerankerBackend

    prompt = "Does passage B answer query A? Say 'Yes' or 'No'."
    b = GemmaRerankerBackend(str(gemma_dir), precision="exact", instruction=prompt)
    pairs = [(QUERIES[0], t) for t in texts(3)]
    ref = gemma_flag_scores(gemma_dir, pairs, prompt=prompt)
    assert max(abs(a - r) for a, r in zip(b.score_pairs(pairs), ref, strict=True)) < 1e-4


@pytest.mark.parametrize("name", ["qwen", "gemma"])
def test_windows_fit_max_length_untruncated(name: str, request: pytest.FixtureRequest) -> None:
    """Every window of a long text, encoded with the template exactly as the reference
    encodes it (no truncation), is at most max_length tokens; windows fill the model."""
    b = request.getfixturevalue(name)
    path = request.getfixturevalue(f"{name}_dir")
    tok = transformers.AutoTokenizer.from_pretrained(str(path))
    ref_ids = qwen_card_ids if name == "qwen" else gemma_flag_ids
    long_texts = [" ".join(sample_texts()[i : i + 4]) for i in range(0, 12, 4)]
    for q in QUERIES:
        qn = len(b.tokenizer.token_spans([q])[0])
        budget = window_budget(b.max_length, qn, b.tokenizer.pair_special_tokens)
        for text in long_texts:
            spans = b.tokenizer.token_spans([text])[0]
            windows, _ = make_windows(spans, len(text), budget=budget, overlap=16)
            assert len(windows) > 2
            lengths = [len(ref_ids(tok, q, text[w.start : w.end])) for w in windows]
            assert max(lengths) <= b.max_length, (lengths, b.max_length)
            assert max(lengths) >= b.max_length - 6  # the budget is not wasted either
            assert windows[0].start == 0 and windows[-1].end == len(text)
            for w in windows:  # what the backend feeds the model is the whole window
                assert b.encode_pair(q, text[w.start : w.end]) == ref_ids(
                    tok, q, text[w.start : w.end]
                )


def test_long_text_score_is_max_over_windows(qwen: Any, qwen_dir: Path) -> None:
    q, text = QUERIES[0], " ".join(sample_texts()[:3])
    (r,) = Reranker(qwen, cache=None, window=WindowConfig(overlap=16)).rerank(q, [text])
    qn = len(qwen.tokenizer.token_spans([q])[0])
    budget = window_budget(qwen.max_length, qn, qwen.tokenizer.pair_special_tokens)
    windows, _ = make_windows(
        qwen.tokenizer.token_spans([text])[0], len(text), budget=budget, overlap=16
    )
    assert r.n_windows == len(windows) > 1
    card = qwen_card_scores(qwen_dir, [(q, text[w.start : w.end]) for w in windows])
    assert abs(1 / (1 + math.exp(-r.score)) - max(card)) < 1e-4


def test_speed_plan_bf16_where_the_cpu_has_it(qwen_dir: Path) -> None:
    from rerank_core.backends.llm import Qwen3RerankerBackend
    from rerank_core.backends.runtime import cpu_info

    b = Qwen3RerankerBackend(str(qwen_dir))
    facts = b.describe()
    assert facts["runtime"] == "torch"
    assert facts["precision"] == ("bf16" if cpu_info().bf16 else "fp32")
    assert "torch" in facts["reason"] and facts["pair_tokens"] > 30
    pairs = [(QUERIES[0], t) for t in texts(3)]
    exact = Qwen3RerankerBackend(str(qwen_dir), precision="exact").score_pairs(pairs)
    assert max(abs(a - e) for a, e in zip(b.score_pairs(pairs), exact, strict=True)) < 0.1


def test_bad_options_are_config_errors(qwen_dir: Path) -> None:
    from rerank_core import ConfigError
    from rerank_core.backends.llm import Qwen3RerankerBackend

    with pytest.raises(ConfigError, match="runtime"):
        Qwen3RerankerBackend(str(qwen_dir), runtime="onnx")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="precision"):
        Qwen3RerankerBackend(str(qwen_dir), precision="int8")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="instruction"):
        Qwen3RerankerBackend(str(qwen_dir), instruction="")
    with pytest.raises(ConfigError, match="score"):
        Qwen3RerankerBackend(str(qwen_dir), score="log")  # type: ignore[arg-type]


def test_presets_are_registered() -> None:
    from rerank_core.backends import BACKENDS, backend_class
    from rerank_core.backends.llm import GemmaRerankerBackend, Qwen3RerankerBackend

    assert backend_class("qwen3") is Qwen3RerankerBackend
    assert backend_class("bge-gemma") is GemmaRerankerBackend
    assert {"monot5", "rankt5"} <= set(BACKENDS)
