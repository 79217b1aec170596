"""Supervised fine-tuning of a PEFT adapter with the transformers Trainer.

We own the parts that go wrong silently elsewhere: the prompt format (one builder for training,
evaluation and serving), the loss mask (answer tokens only, EOS included, never empty), the length
guard, and checkpoint choice on val loss. The training loop itself is transformers'.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tunewise.config import ProjectConfig
from tunewise.core import Record
from tunewise.models.chat import PromptBuilder
from tunewise.workspace import atomic_dir, write_json

IGNORE = -100


class TrainingGuardError(ValueError):
    """Training would silently go wrong; raised before any step is taken."""


@dataclass
class TrainResult:
    model: object
    seconds: float
    tokens: int
    steps: int
    best_checkpoint: str | None
    history: list[dict] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def tokenize_examples(records: list[Record], builder: PromptBuilder, max_length: int) -> list[dict]:
    """Prompt + answer token ids with the loss on the answer only; fails loudly on a bad example."""
    eos_id = builder.tokenizer.eos_token_id
    rows, too_long = [], []
    for rec in records:
        prompt_ids, answer_ids = builder.encode(rec.input, rec.target)
        if not answer_ids:
            raise TrainingGuardError(f"record {rec.id} ({rec.source}): empty answer, nothing to learn")
        if eos_id is not None and answer_ids[-1] != eos_id:
            raise TrainingGuardError(
                f"record {rec.id}: the answer does not end with EOS ({builder.end_of_answer!r}); "
                "the model would not learn to stop"
            )
        ids = prompt_ids + answer_ids
        if len(ids) > max_length:
            too_long.append((rec.id, len(ids)))
            continue
        rows.append({"input_ids": ids, "labels": [IGNORE] * len(prompt_ids) + answer_ids})
    if too_long:
        worst = max(n for _, n in too_long)
        raise TrainingGuardError(
            f"{len(too_long)} training examples exceed train.max_length={max_length} tokens "
            f"(longest {worst}, e.g. record {too_long[0][0]}); raise train.max_length or set "
            "task.max_input_tokens to truncate inputs"
        )
    return rows


class PadCollator:
    """Right-pads a batch; padded positions are masked out of attention and loss."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: list[dict]) -> dict:
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n] = torch.tensor(r["input_ids"])
            labels[i, :n] = torch.tensor(r["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def peft_config(config: ProjectConfig):
    from peft import LoraConfig

    lc = config.train.lora
    return LoraConfig(
        r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout, target_modules=lc.target_modules,
        task_type="CAUSAL_LM",
    )


def training_arguments(config: ProjectConfig, out: Path):
    from transformers import TrainingArguments

    t = config.train
    cuda = torch.cuda.is_available()
    return TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=config.eval.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_steps,
        weight_decay=t.weight_decay,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        eval_strategy="steps",
        eval_steps=t.eval_steps,
        save_strategy="steps",
        save_steps=t.eval_steps,
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        logging_steps=max(1, min(10, t.eval_steps)),
        seed=t.seed,
        data_seed=t.seed,
        # Explicit: on CPU, mixed precision and checkpointing defaults fail or slow things down.
        use_cpu=not cuda,
        bf16=False,
        fp16=False,
        activation_checkpointing=False,
        train_sampling_strategy="group_by_length",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        report_to=[],
        disable_tqdm=True,
    )


def train_adapter(model, tokenizer, config: ProjectConfig, train: list[Record], val: list[Record],
                  run_dir: Path, progress=None, resume: bool = False) -> TrainResult:
    """Train a LoRA adapter; save the best one (by val loss) to ``run_dir/adapter``."""
    from peft import get_peft_model
    from transformers import PrinterCallback, set_seed

    from tunewise.data.split import subsample
    from tunewise.train.callbacks import HistoryCallback, RichProgressCallback

    t = config.train
    builder = PromptBuilder(config.task, tokenizer)
    builder.check_template()
    train = subsample(train, t.max_train_examples, t.seed)
    val = subsample(val, t.max_val_examples, t.seed)
    if not val:
        raise TrainingGuardError("the val split is empty: it is needed to choose the best checkpoint")
    train_rows = tokenize_examples(train, builder, t.max_length)
    val_rows = tokenize_examples(val, builder, t.max_length)

    set_seed(t.seed)
    model = get_peft_model(model, peft_config(config))
    run_dir = Path(run_dir)
    args = training_arguments(config, run_dir / "checkpoints")
    history = HistoryCallback()
    callbacks = [history]
    if progress is not None:
        callbacks.append(RichProgressCallback(progress))
    trainer = _TokenCountingTrainer(
        model=model, args=args, train_dataset=train_rows, eval_dataset=val_rows,
        data_collator=PadCollator(tokenizer.pad_token_id), callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # our own progress bar and history replace its prints
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=_last_checkpoint(run_dir / "checkpoints") if resume else None)
    seconds = time.perf_counter() - start
    model = trainer.model
    with atomic_dir(run_dir / "adapter") as tmp:
        model.save_pretrained(tmp)
    write_json(run_dir / "train_history.json", history.rows)
    steps = trainer.state.global_step
    return TrainResult(model, seconds, trainer.trained_tokens, steps, trainer.state.best_model_checkpoint, history.rows)


def _last_checkpoint(folder: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(folder)) if folder.exists() else None


class _TokenCountingTrainer:
    """Built lazily so importing this module does not import transformers' Trainer."""

    def __new__(cls, **kwargs):
        from transformers import Trainer

        class TokenCountingTrainer(Trainer):
            trained_tokens = 0

            def compute_loss(self, model, inputs, *a, **kw):
                if model.training:
                    self.trained_tokens += int(inputs["attention_mask"].sum())
                return super().compute_loss(model, inputs, *a, **kw)

        return TokenCountingTrainer(**kwargs)


def count_parameters(model) -> dict:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable": trainable, "total": total, "percent": 100 * trainable / max(total, 1)}
