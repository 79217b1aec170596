"""Kahneman-Tversky optimisation with TRL's KTOTrainer: unpaired preference data, where each row is
one answer and whether it is desirable, on LoRA or full weights.

The rows come from ``train.kto.data`` in any form the loader reads as ``kto`` (TRL's
prompt/completion/label, LLaMA-Factory's messages/label; JSONL, JSON arrays, ...). Unlike the
project's own data, where an undesirable answer is never trained as a good one and is left out,
here both kinds are the signal: desirable answers are pulled up, undesirable ones pushed down.
Prompts are rendered with the same PromptBuilder (instruction + chat template, tools) as training,
evaluation and serving; answers are closed with the template's end of turn.
"""

from __future__ import annotations

from pathlib import Path

from tunewise.config import ProjectConfig
from tunewise.models.chat import PromptBuilder
from tunewise.train.dpo import PreferenceDataError, split_preferences


def read_unpaired(path: Path) -> list[dict]:
    """Rows ``{prompt, completion, label, messages, tools}``; an error names the file and line."""
    from tunewise.data.load import DataError, read_rows
    from tunewise.data.schemas import RowError, parse_row

    path = Path(path)
    if not path.exists():
        raise PreferenceDataError(f"train.kto.data: no such file: {path}")
    rows = []
    try:
        for line, row, _ in read_rows(path):
            try:
                if isinstance(row, Exception) or not isinstance(row, dict):
                    raise RowError(str(row) if isinstance(row, Exception) else "expected a JSON object")
                text, target, meta = parse_row(row, "kto", "input", "target")
                if target is None:
                    raise RowError("the answer is empty")
            except RowError as e:
                raise PreferenceDataError(f"{path}:{line}: {e}") from None
            rows.append({"prompt": text, "completion": target, "label": meta["desirable"],
                         "messages": meta["messages"], "tools": meta.get("tools")})
    except DataError as e:
        raise PreferenceDataError(f"train.kto.data: {e}") from None
    kinds = {r["label"] for r in rows}
    if kinds != {True, False}:
        have = "desirable" if True in kinds else "undesirable"
        raise PreferenceDataError(f"{path}: KTO needs desirable and undesirable answers (label true and false); "
                                  f"found only {have} ones ({len(rows)} rows)" if rows else f"{path}: no rows")
    return rows


def kto_rows(config: ProjectConfig, project: Path | None) -> tuple[list[dict], list[dict]]:
    """The train / val rows of ``train.kto.data`` (a stable split by prompt)."""
    data = config.train.kto.data
    if not data:
        raise PreferenceDataError("train.method=kto needs unpaired preference data: set train.kto.data (rows with "
                                  "prompt/completion or messages, and label true/false)")
    path = Path(data) if Path(data).is_absolute() or project is None else Path(project) / data
    return split_preferences(read_unpaired(path))


def _render(rows: list[dict], builder: PromptBuilder):
    from datasets import Dataset

    end = builder.end_of_answer
    return Dataset.from_list([{"prompt": builder.chat_prompt(r["messages"], r.get("tools")),
                               "completion": r["completion"] if r["completion"].endswith(end) else r["completion"] + end,
                               "label": r["label"]} for r in rows])


def train_kto(model, tokenizer, config: ProjectConfig, run_dir: Path, progress=None, resume: bool = False,
              project: Path | None = None):
    """Train with KTO; the best checkpoint by val loss is saved like an SFT run's."""
    from transformers import EarlyStoppingCallback, set_seed
    from trl import KTOConfig, KTOTrainer

    from tunewise.train.callbacks import tracking_callbacks
    from tunewise.train.common import TrainResult, run_trainer, training_arguments
    from tunewise.train.methods import check_method, full_weights, peft_config

    t, k = config.train, config.train.kto
    check_method(config)
    builder = PromptBuilder(config.task, tokenizer)
    builder.check_template()
    rows_train, rows_val = kto_rows(config, project)
    if t.max_val_examples:
        rows_val = rows_val[: t.max_val_examples]
    set_seed(t.seed)
    run_dir = Path(run_dir)
    args = training_arguments(config, run_dir / "checkpoints", cls=KTOConfig, beta=k.beta, max_length=t.max_length,
                              desirable_weight=k.desirable_weight, undesirable_weight=k.undesirable_weight,
                              gradient_checkpointing=False, precompute_ref_log_probs=False,
                              # the KL term pairs each row with its neighbour in a fixed-order batch (TRL requires it)
                              train_sampling_strategy="sequential")
    callbacks, history = tracking_callbacks(config, run_dir, progress)
    if t.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=t.early_stopping_patience))
    full = full_weights(config)
    if full:
        for p in model.parameters():
            p.requires_grad_(True)
    train_set = _render(rows_train, builder)
    trainer = KTOTrainer(model=model, args=args, train_dataset=train_set, eval_dataset=_render(rows_val, builder),
                         processing_class=tokenizer, callbacks=callbacks, peft_config=None if full else peft_config(config))
    seconds = run_trainer(trainer, tokenizer, config, run_dir, history, resume)
    per_row = sum(len(tokenizer(r["prompt"] + r["completion"])["input_ids"]) for r in train_set) / len(train_set)
    rows_seen = trainer.state.global_step * t.batch_size * t.grad_accum * trainer.args.world_size
    return TrainResult(trainer.model, seconds, int(per_row * rows_seen), trainer.state.global_step,
                       trainer.state.best_model_checkpoint, history.rows, history.warnings)
