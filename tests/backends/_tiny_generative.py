"""Tiny random models of the LLM-reranker and T5 architectures, with real tokenizers
trained here with ``tokenizers`` on the bundled SciFact sample.

* Qwen3: a byte-level BPE with Qwen2's pre-tokenizer pattern and the chat special tokens
  (``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>``; ``<think>``/``</think>`` as added
  tokens, as in Qwen3's vocabulary), ``Qwen3ForCausalLM`` with 2 layers, hidden 64.
* Gemma: a SentencePiece-style BPE (spaces as ``▁``, no prefix space) with ``<bos>``,
  ``<eos>``, ``<pad>``, ``GemmaForCausalLM`` with 2 layers, hidden 64.
* T5: a SentencePiece Unigram (``▁`` prefix) with ``<pad>``, ``</s>``, ``<unk>`` and
  ``<extra_id_0..10>``, ``▁true``/``▁false`` whole pieces, ``</s>`` appended; a
  ``T5ForConditionalGeneration`` with 2 layers, d_model 32.
"""

from __future__ import annotations

import json
from pathlib import Path

from _tiny_models import sample_texts

QWEN_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# words the templates and scores need as whole tokens, repeated so that training keeps them
_EXTRA = ["yes", "no", "Yes", "No", "true", "false", "Query", "Document", "Relevant"]


def _corpus() -> list[str]:
    texts = sample_texts()
    drills = [" ".join(_EXTRA), "\n".join(_EXTRA), "yes\nno\nYes\nNo", *_EXTRA] * 200
    return texts + drills


def make_qwen3(out: Path, *, seed: int = 3) -> Path:
    import torch
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1500,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_corpus(), trainer)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        model_max_length=1024,
    )
    hf.add_tokens(["<think>", "</think>"])
    config = Qwen3Config(
        vocab_size=len(hf),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        initializer_range=0.2,
        pad_token_id=hf.pad_token_id,
        eos_token_id=hf.eos_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    hf.save_pretrained(str(out))
    return out


def make_gemma(out: Path, *, seed: int = 5) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import GemmaConfig, GemmaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " ")])
    trainer = trainers.BpeTrainer(
        vocab_size=1500, special_tokens=["<pad>", "<eos>", "<bos>", "<unk>"]
    )
    tok.train_from_iterator(_corpus(), trainer)
    from tokenizers import processors

    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", tok.token_to_id("<bos>"))]
    )
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        padding_side="left",
        model_max_length=1024,
    )
    config = GemmaConfig(
        vocab_size=len(hf),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=1024,
        initializer_range=0.2,
        pad_token_id=hf.pad_token_id,
        bos_token_id=hf.bos_token_id,
        eos_token_id=hf.eos_token_id,
    )
    torch.manual_seed(seed)
    model = GemmaForCausalLM(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    hf.save_pretrained(str(out))
    return out


def make_t5(out: Path, *, seed: int = 11) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    extra_ids = [f"<extra_id_{i}>" for i in range(11)]
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=1500,
        special_tokens=["<pad>", "</s>", "<unk>", *extra_ids],
        unk_token="<unk>",
    )
    tok.train_from_iterator(_corpus(), trainer)
    # "▁true"/"▁false" as whole pieces (T5's vocabulary has them): likely, not certain, after
    # training on this small corpus, so they are added to the Unigram vocabulary if missing
    data = json.loads(tok.to_str())
    have = {piece for piece, _ in data["model"]["vocab"]}
    data["model"]["vocab"] += [[p, -2.0] for p in ("▁true", "▁false") if p not in have]
    tok = Tokenizer.from_str(json.dumps(data))
    eos = tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", eos)]
    )
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        additional_special_tokens=extra_ids,
        model_max_length=512,
    )
    config = T5Config(
        vocab_size=len(hf),
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        pad_token_id=hf.pad_token_id,
        eos_token_id=eos,
        decoder_start_token_id=hf.pad_token_id,
        initializer_factor=1.0,
    )
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    hf.save_pretrained(str(out))
    return out
