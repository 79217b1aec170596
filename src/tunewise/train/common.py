"""What every trainer (SFT, DPO, KTO) shares: the training arguments, the result, checkpoints that
resume only when complete, and the saved weights with the chat template they were trained with.

The trainers (train/sft.py, train/dpo.py, train/kto.py) and the callbacks import this module, never
each other, so none of them sits in an import cycle.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tunewise.config import ProjectConfig
from tunewise.train.methods import output_name
from tunewise.workspace import atomic_dir, sha256_bytes, write_json

log = logging.getLogger(__name__)

COMPLETE = "tunewise-complete"
"""Marker written last into a checkpoint folder: a folder without it was cut off mid-save."""


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
    warnings: list[str] = field(default_factory=list)
    eval_tokens: int = 0
    """Tokens of the val evaluations during training (forward only): part of what training costs."""
    shared_tokens: int = 0
    """Of ``tokens``, those not computed per row: copies of a batch's shared prefix, run once."""
    eval_shared_tokens: int = 0
    """Of ``eval_tokens``, the copies of a val batch's shared prefix (run once, as in training)."""

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def training_arguments(config: ProjectConfig, out: Path, cls=None, **overrides):
    """TrainingArguments (or a subclass such as TRL's DPOConfig) from the train config."""
    from transformers import TrainingArguments

    from tunewise.evaluate.decode import resolve_precision

    t = config.train
    cuda = torch.cuda.is_available()
    kwargs = dict(
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
        save_steps=t.save_steps or t.eval_steps,
        save_total_limit=t.save_total_limit,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        logging_steps=max(1, min(10, t.eval_steps)),
        seed=t.seed,
        data_seed=t.seed,
        # Explicit: on CPU, mixed precision and checkpointing defaults fail or slow things down.
        use_cpu=not cuda,
        bf16=resolve_precision(t.precision) == "bf16",
        fp16=t.precision == "fp16",
        activation_checkpointing=False,
        train_sampling_strategy=t.sampling,
        # torchrun on CPU: gloo is the backend that runs there (only set when there are peers).
        ddp_backend="gloo" if not cuda and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        report_to=[],
        disable_tqdm=True,
    )
    kwargs.update(overrides)
    return (cls or TrainingArguments)(**kwargs)


def last_checkpoint(folder: Path) -> str | None:
    """The newest checkpoint that finished saving; half-written ones (killed mid-save) are removed."""
    folder = Path(folder)
    if not folder.exists():
        return None
    done = []
    for ck in folder.glob("checkpoint-*"):
        if (ck / COMPLETE).exists():
            done.append((int(ck.name.rsplit("-", 1)[1]), ck))
        elif ck.is_dir():
            log.warning("removing %s: it was cut off while saving", ck)
            shutil.rmtree(ck, ignore_errors=True)
    return str(max(done)[1]) if done else None


def save_output(trainer, tokenizer, config: ProjectConfig, run_dir: Path) -> Path:
    """Save the trained weights as safetensors with the tokenizer and its chat template."""
    target = run_dir / output_name(config)
    if not trainer.args.should_save:
        return target
    with atomic_dir(target) as tmp:
        trainer.model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / "tunewise-train.json", {
            "method": config.train.method, "quant_bits": config.train.quant_bits,
            "chat_template_sha256": template_hash(tokenizer),
            "base": config.model.base,
        })
    return target


def run_trainer(trainer, tokenizer, config: ProjectConfig, run_dir: Path, history, resume: bool) -> float:
    """Train a TRL trainer (DPO, KTO) the way every tunewise run trains: our progress and history in
    place of its printer, resumed from the newest complete checkpoint when asked, the best weights
    saved with the tokenizer; returns the training seconds."""
    import time

    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=last_checkpoint(Path(run_dir) / "checkpoints") if resume else None)
    seconds = time.perf_counter() - start
    save_output(trainer, tokenizer, config, Path(run_dir))
    if trainer.args.should_save:
        history.save(run_dir)
    return seconds


def template_hash(tokenizer) -> str | None:
    template = getattr(tokenizer, "chat_template", None)
    return sha256_bytes(template.encode()) if isinstance(template, str) else None


def check_same_template(trained_dir: Path, tokenizer) -> None:
    """Serving or evaluating a trained model with a different chat template fails loudly."""
    meta = Path(trained_dir) / "tunewise-train.json"
    if not meta.exists():
        return
    want = json.loads(meta.read_text())["chat_template_sha256"]
    if want != template_hash(tokenizer):
        raise TrainingGuardError(
            f"{trained_dir}: trained with a different chat template than the tokenizer now in use; "
            "prompts would render differently than in training"
        )
