"""Direct preference optimisation with TRL's DPOTrainer, on LoRA or full weights.

Preference rows are ``{prompt, chosen, rejected}`` in any form the loader reads (``data/schemas.py``):
``prompt`` is the user's input (or the row's turns, with their tools), rendered with the
same PromptBuilder (task instruction + chat template) as training, evaluation and serving; TRL
appends the EOS to both answers. A classification project can opt in to pairs built from its
labels (chosen = the label, rejected = another label drawn with the seed).
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from tunewise.config import ProjectConfig
from tunewise.core import Record
from tunewise.models.chat import PromptBuilder
from tunewise.rungspec import FULL


class PreferenceDataError(ValueError):
    """The preference data is missing or malformed; the message names the file and line."""


def read_preferences(path: Path) -> list[dict]:
    """Rows of a preference file, in any format and any preference form the loader reads (flat
    strings, message lists, ShareGPT, alpaca; JSONL, JSON arrays, ...); an error names the file and line.
    A row given as turns keeps them (``messages``, ``tools``) to be rendered as real turns."""
    from tunewise.data.load import DataError, load_file

    path = Path(path)
    if not path.exists():
        raise PreferenceDataError(f"train.dpo.data: no such file: {path}")
    try:
        loaded = load_file(path, schema="preference")
    except DataError as e:
        raise PreferenceDataError(f"train.dpo.data: {e}") from None
    if loaded.rejects:
        r = loaded.rejects[0]
        more = f" ({len(loaded.rejects) - 1} more rows rejected)" if len(loaded.rejects) > 1 else ""
        raise PreferenceDataError(f"{r.file}:{r.line}: {r.reason}{more}")
    rows = [{"prompt": rec.input, "chosen": rec.target, "rejected": rec.meta["rejected"],
             "messages": rec.meta.get("messages"), "tools": rec.meta.get("tools")} for rec in loaded.records]
    if len(rows) < 2:
        raise PreferenceDataError(f"{path}: needs at least two preference rows, found {len(rows)}")
    return rows


def pairs_from_labels(records: list[Record], labels: list[str], seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [
        {"prompt": r.input, "chosen": r.target, "rejected": rng.choice([x for x in labels if x != r.target])}
        for r in sorted(records, key=lambda r: r.id)
    ]


def split_preferences(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """A stable 90/10 train/val split by the hash of each prompt (same prompt, same side)."""
    def bucket(row: dict) -> int:
        return int(hashlib.sha256(row["prompt"].encode()).hexdigest(), 16) % 10

    val = [r for r in rows if bucket(r) == 0] or rows[-1:]
    train = [r for r in rows if r not in val]
    return train, val


def preference_splits(config: ProjectConfig, train: list[Record], val: list[Record], project: Path | None):
    d = config.train.dpo
    if d.data:
        path = Path(d.data) if Path(d.data).is_absolute() or project is None else Path(project) / d.data
        return split_preferences(read_preferences(path))
    if d.pairs_from_labels and config.task.type == "classification":
        labels = config.task.labels
        return pairs_from_labels(train, labels, config.train.seed), pairs_from_labels(val, labels, config.train.seed)
    raise PreferenceDataError(
        "train.method=dpo needs preference data: set train.dpo.data to a {prompt, chosen, rejected} JSONL "
        "file, or (classification) train.dpo.pairs_from_labels: true"
    )


def _render(rows: list[dict], builder: PromptBuilder):
    """Prompts through the chat template; answers closed with the template's end of turn, which TRL
    (appending only the EOS) would miss when the two differ."""
    from datasets import Dataset

    end = builder.end_of_answer

    def close(answer: str) -> str:
        return answer if answer.endswith(end) else answer + end

    def prompt(r: dict) -> str:
        return builder.chat_prompt(r["messages"], r.get("tools")) if r.get("messages") else builder.prompt(r["prompt"])

    return Dataset.from_list([{"prompt": prompt(r), "chosen": close(r["chosen"]), "rejected": close(r["rejected"])}
                              for r in rows])


def train_dpo(model, tokenizer, config: ProjectConfig, train: list[Record], val: list[Record],
              run_dir: Path, progress=None, resume: bool = False, project: Path | None = None):
    """Train with DPO; the best checkpoint by val loss is saved like an SFT run's."""
    from transformers import EarlyStoppingCallback, set_seed
    from trl import DPOConfig, DPOTrainer

    from tunewise.train.callbacks import tracking_callbacks
    from tunewise.train.common import TrainResult, run_trainer, training_arguments
    from tunewise.train.methods import check_method, peft_config

    t = config.train
    check_method(config)
    builder = PromptBuilder(config.task, tokenizer)
    builder.check_template()
    pref_train, pref_val = preference_splits(config, train, val, project)
    if t.max_val_examples:
        pref_val = pref_val[: t.max_val_examples]
    set_seed(t.seed)
    run_dir = Path(run_dir)
    args = training_arguments(
        config, run_dir / "checkpoints", cls=DPOConfig, beta=t.dpo.beta, max_length=t.max_length,
        train_sampling_strategy="random", gradient_checkpointing=False, precompute_ref_log_probs=False,
    )
    callbacks, history = tracking_callbacks(config, run_dir, progress)
    if t.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=t.early_stopping_patience))
    full = t.dpo.weights == FULL
    if full:
        for p in model.parameters():
            p.requires_grad_(True)
    trainer = DPOTrainer(
        model=model, args=args, train_dataset=_render(pref_train, builder), eval_dataset=_render(pref_val, builder),
        processing_class=tokenizer, callbacks=callbacks, peft_config=None if full else peft_config(config),
    )
    seconds = run_trainer(trainer, tokenizer, config, run_dir, history, resume)
    # DPO runs the prompt with each answer: count both sequences of every pair the steps consumed.
    rendered = _render(pref_train, builder)
    per_pair = sum(len(tokenizer(r["prompt"] + r["chosen"] + r["rejected"])["input_ids"]) for r in rendered) / len(rendered)
    pairs_seen = trainer.state.global_step * t.batch_size * t.grad_accum * trainer.args.world_size
    return TrainResult(trainer.model, seconds, int(per_pair * pairs_seen), trainer.state.global_step,
                       trainer.state.best_model_checkpoint, history.rows, history.warnings)
