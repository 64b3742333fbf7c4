"""Fine-tune a cross-encoder with the sentence-transformers trainer.

``listnet`` (default) trains listwise on :class:`~.training.TrainList` targets with
``ListNetLoss`` (cross-entropy to softmax(targets): listwise distillation when the
targets come from a teacher). ``bce`` trains pointwise on the labels alone with
``BinaryCrossEntropyLoss`` (each list's relevant document 1, the others 0).
bf16 autocast is used on CPUs with native bf16 (AVX512-BF16 / AMX) unless told otherwise.
The result is a directory that ``Reranker("minilm", model=DIR)`` loads.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from rerank_core.errors import ConfigError

from .._support import require
from .training import TrainList

__all__ = ["TrainConfig", "bf16_available", "finetune", "keep_first_layers", "projected_seconds"]

logger = logging.getLogger("crossrank.quality")

Loss = Literal["listnet", "bce"]
TRAINING_RECORD = "crossrank_training.json"


def bf16_available() -> bool:
    """Whether this machine runs bf16 matrix products natively (CPU or CUDA)."""
    import torch

    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if probe is None:
        return False
    try:
        if not probe():
            return False
        a = torch.ones(8, 8, dtype=torch.bfloat16)
        return bool(torch.isfinite(a @ a).all())
    except Exception:  # an odd build: fall back to fp32
        return False


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainConfig:
    loss: Loss = "listnet"
    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 4
    learning_rate: float = 5e-5
    warmup: float = 0.1
    max_length: int = 256
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    seed: int = 42
    max_minutes: float | None = None
    device: str | None = None
    layers: int | None = None

    def __post_init__(self) -> None:
        if self.loss not in ("listnet", "bce"):
            raise ConfigError(f"loss must be 'listnet' or 'bce', got {self.loss!r}")
        if self.batch_size < 1 or self.max_length < 16 or not self.learning_rate > 0:
            raise ConfigError("batch_size >= 1, max_length >= 16 and learning_rate > 0 needed")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ConfigError(f"precision must be auto, bf16 or fp32, got {self.precision!r}")
        if self.max_steps is None and not self.epochs > 0:
            raise ConfigError("epochs must be > 0 (or give max_steps)")
        if self.layers is not None and self.layers < 1:
            raise ConfigError(f"layers must be >= 1, got {self.layers}")


def keep_first_layers(model: Any, layers: int) -> int:
    """Keep the first ``layers`` transformer layers of a Hugging Face encoder model (BERT,
    RoBERTa, ELECTRA, XLM-R: ``base_model.encoder.layer``), in place, with its config updated;
    the embeddings and the score head stay. Returns the number of layers it had.
    A student for a cascade's first stage starts this way (``crossrank finetune --layers``)."""
    encoder: Any = getattr(getattr(model, "base_model", None), "encoder", None)
    stack = getattr(encoder, "layer", None)
    if stack is None:
        raise ConfigError(
            f"layers: cannot find the transformer layers (base_model.encoder.layer) of "
            f"{type(model).__name__}; only BERT-style encoders can be cut"
        )
    had = len(stack)
    if not 1 <= layers <= had:
        raise ConfigError(f"layers must be between 1 and {had} (the base model's), got {layers}")
    encoder.layer = stack[:layers]
    model.config.num_hidden_layers = layers
    return had


def _columns(lists: Sequence[TrainList], loss: Loss) -> dict[str, list[Any]]:
    if loss == "listnet":
        return {
            "query": [t.query for t in lists],
            "docs": [t.docs for t in lists],
            "labels": [t.targets for t in lists],
        }
    cols: dict[str, list[Any]] = {"query": [], "doc": [], "label": []}
    for t in lists:
        for d, rel in zip(t.docs, t.relevant, strict=True):
            cols["query"].append(t.query)
            cols["doc"].append(d)
            cols["label"].append(1.0 if rel else 0.0)
    return cols


def _dataset(lists: Sequence[TrainList], loss: Loss) -> Any:
    """One dataset per source family (``scifact``, ``trec-dl-2020-passage`` with its
    pseudo-queries, ...): the trainer then draws each batch from one family, in
    proportion to its size, so short passages are not padded to long abstracts."""
    from datasets import Dataset, DatasetDict

    families: dict[str, list[TrainList]] = {}
    for t in lists:
        families.setdefault(t.source.partition(":")[0], []).append(t)
    if len(families) == 1:
        return Dataset.from_dict(_columns(lists, loss))
    return DatasetDict(
        {name: Dataset.from_dict(_columns(part, loss)) for name, part in families.items()}
    )


def projected_seconds(elapsed: float, steps: int, total_steps: int, budget_s: float) -> float:
    """When a run with a time budget ends: at ``budget_s``, or sooner when its ``total_steps``
    run out first at the pace so far (the progress bar's total, so its ETA is the truth)."""
    if steps <= 0:
        return budget_s
    return min(budget_s, elapsed * total_steps / steps)


def finetune(
    lists: Sequence[TrainList],
    *,
    base_model: str | Path,
    output_dir: str | Path,
    config: TrainConfig,
    progress: bool = True,
    record: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train a cross-encoder from ``base_model`` on ``lists``; save it to ``output_dir``.

    Returns the training record (also written as ``crossrank_training.json``).
    """
    for module, dist in (
        ("sentence_transformers", "sentence-transformers"),
        ("datasets", "datasets"),
        ("accelerate", "accelerate"),
    ):
        require(module, extra="train", package=dist, purpose="crossrank finetune")
    import torch
    from sentence_transformers.cross_encoder import (
        CrossEncoder,
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
    )
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss, ListNetLoss
    from transformers import TrainerCallback

    if not lists:
        raise ConfigError("no training lists: check the training sources")
    if config.loss == "listnet" and any(len(t.targets) != len(t.docs) for t in lists):
        raise ConfigError("listnet needs teacher targets on every list (score_lists)")
    out = Path(output_dir)
    use_bf16 = config.precision == "bf16" or (config.precision == "auto" and bf16_available())
    torch.manual_seed(config.seed)
    from .._support import resolve_device

    device = resolve_device(config.device)
    model = CrossEncoder(str(base_model), num_labels=1, max_length=config.max_length, device=device)
    base_layers = None
    if config.layers is not None:
        base_layers = keep_first_layers(model.model, config.layers)
    inference_length = max(512, config.max_length)
    max_positions = int(getattr(model.config, "max_position_embeddings", inference_length))
    train_ds = _dataset(lists, config.loss)
    if config.loss == "listnet":
        loss: Any = ListNetLoss(model, mini_batch_size=config.batch_size * len(lists[0].docs))
    else:
        loss = BinaryCrossEntropyLoss(model)
    parts = list(train_ds.values()) if isinstance(train_ds, dict) else [train_ds]
    steps_per_epoch = sum(math.ceil(len(p) / config.batch_size) for p in parts)
    total_steps = config.max_steps or math.ceil(steps_per_epoch * config.epochs)
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    clock = {"start": t0}
    stopped_early = False
    budget_s = config.max_minutes * 60 if config.max_minutes else None

    class _Budget(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            clock["start"] = time.perf_counter()
            return control

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            nonlocal stopped_early
            if budget_s and time.perf_counter() - clock["start"] > budget_s:
                stopped_early = True
                control.should_training_stop = True
            return control

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> Any:
            if logs and "loss" in logs:
                history.append({"step": state.global_step, "loss": float(logs["loss"])})
            return control

    class _BudgetBar(TrainerCallback):
        """Progress in seconds of the time budget (the default bar counts steps, and its ETA
        is that of all the steps, however long --max-minutes allows)."""

        def __init__(self, budget: float) -> None:
            self.budget = budget
            self.bar: Any = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            import sys

            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=self.budget,
                desc="training (time budget)",
                file=sys.stderr,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f}s "
                "[{elapsed}<{remaining}{postfix}]",
            )
            return control

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            if self.bar is not None:
                elapsed = time.perf_counter() - clock["start"]
                total = projected_seconds(elapsed, state.global_step, total_steps, self.budget)
                self.bar.total = total
                self.bar.n = min(elapsed, total)
                loss = f", loss {history[-1]['loss']:.4f}" if history else ""
                self.bar.set_postfix_str(f"step {state.global_step}/{total_steps}{loss}")
            return control

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            if self.bar is not None:
                self.bar.close()
            return control

    optimizers: tuple[Any, Any] = (None, None)
    if budget_s:
        # A time budget sets the schedule: warm up over the first ``warmup`` of the budget
        # (a fraction, or seconds when >= 1), then decay linearly to 0 when time is up,
        # so a run that is stopped by the clock has finished its schedule.
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.learning_rate, weight_decay=0.01
        )
        warm = config.warmup * budget_s if config.warmup < 1 else config.warmup

        def by_time(_step: int) -> float:
            used = time.perf_counter() - clock["start"]
            if used < warm:
                return max(0.02, used / warm)
            return max(0.0, (budget_s - used) / max(1e-9, budget_s - warm))

        optimizers = (optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, by_time))

    import tempfile

    with tempfile.TemporaryDirectory(prefix="crossrank-train-") as scratch:
        args = CrossEncoderTrainingArguments(
            output_dir=scratch,
            max_steps=total_steps,
            per_device_train_batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            warmup_steps=config.warmup,
            lr_scheduler_type="linear",
            bf16=use_bf16,
            save_strategy="no",
            logging_steps=max(1, min(25, total_steps // 20)),
            report_to="none",
            seed=config.seed,
            disable_tqdm=not progress,
            use_cpu=device == "cpu",
            dataloader_num_workers=0,
        )
        trainer = CrossEncoderTrainer(
            model=model,
            args=args,
            train_dataset=train_ds,
            loss=loss,
            callbacks=[_Budget()],
            optimizers=optimizers,
        )
        if budget_s and progress:
            from transformers import ProgressCallback

            trainer.remove_callback(ProgressCallback)
            trainer.add_callback(_BudgetBar(budget_s))
        trainer.train()
        steps_done = int(trainer.state.global_step)
    seconds = time.perf_counter() - t0
    model.max_seq_length = min(inference_length, max_positions)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    info: dict[str, Any] = dict(record or {})
    info.update(
        {
            "base_model": str(base_model),
            "config": asdict(config),
            "bf16": use_bf16,
            "device": device,
            "torch_threads": int(torch.get_num_threads()),
            "lists": len(lists),
            "pairs_per_list": len(lists[0].docs),
            "steps": steps_done,
            "planned_steps": total_steps,
            "stopped_by_time_budget": stopped_early,
            "schedule": "linear over the time budget" if budget_s else "linear over the steps",
            "seconds": seconds,
            "loss_history": history,
            "saved_max_length": model.max_seq_length,
            # the pair length it learnt from: the local backends' default max_length
            "trained_max_length": config.max_length,
            "layers": {"kept": config.layers, "of": base_layers} if base_layers else None,
        }
    )
    (out / TRAINING_RECORD).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info
