"""Supervised fine-tuning (every method but dpo) with the transformers Trainer.

We own the parts that go wrong silently elsewhere: the prompt format (one builder for training,
evaluation and serving; chat rows as real turns), the loss mask (answer tokens only, end of turn
included, never empty), the length guard, and two speed-ups that keep the loss
unchanged (the LM head only where the loss is taken; optional padding-free batches). The training
loop itself is transformers'; what every trainer shares (arguments, checkpoints, the saved
weights) is in train/common.py.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from tunewise.config import ProjectConfig, TaskConfig
from tunewise.core import Record
from tunewise.evaluate.decode import MIN_SHARED_PREFIX
from tunewise.models.chat import IGNORE, PromptBuilder
from tunewise.rungspec import DPO, KTO, TEXT
from tunewise.train.common import (
    TrainingGuardError,
    TrainResult,
    last_checkpoint,
    save_output,
    training_arguments,
)

log = logging.getLogger(__name__)


def _encode(builder: PromptBuilder, rec: Record) -> tuple[list[int], list[int]]:
    """Token ids and labels of one example; every trained answer closes with the end of turn."""
    ids, labels = builder.train_ids(rec)
    taken = [t for t in labels if t != IGNORE]
    if not taken:
        raise TrainingGuardError(f"record {rec.id} ({rec.source}): empty answer, nothing to learn")
    eot = builder.end_of_turn_id
    if eot is not None and taken[-1] != eot:
        raise TrainingGuardError(
            f"record {rec.id}: the answer does not end with the end-of-turn token ({builder.end_of_answer!r}); "
            "the model would not learn to stop"
        )
    return ids, labels


def _shorten_input(builder: PromptBuilder, rec: Record, max_length: int) -> tuple[list[int], list[int]]:
    """Re-encode ``rec`` with its input cut until it fits (answers and end of turn stay whole)."""
    limit = len(builder.tokenizer(rec.input, add_special_tokens=False)["input_ids"])
    while True:
        ids, labels = _encode(builder, rec)
        excess = len(ids) - max_length
        if excess <= 0:
            return ids, labels
        limit -= excess  # the truncation marker costs tokens too, so this may take a second round
        if limit < 1:
            raise TrainingGuardError(
                f"record {rec.id}: the prompt without its input is longer than train.max_length; raise it"
            )
        task = TaskConfig.model_validate({**builder.task.model_dump(), "max_input_tokens": limit})
        builder = PromptBuilder(task, builder.tokenizer)


def tokenize_examples(records: list[Record], builder: PromptBuilder, max_length: int,
                      policy: str = "error", warnings: list[str] | None = None) -> list[dict]:
    """Prompt + answer token ids with the loss on the answer only; fails loudly on a bad example.

    ``policy`` says what happens to an example longer than ``max_length``: ``error`` (the default)
    fails before training, ``drop`` leaves it out with a warning, ``truncate-input`` shortens the
    input (each user and tool turn of a chat) so the answers and their end of turn stay whole.
    Chat rows train on every assistant turn (see ``models/chat.py``). Warnings are appended to ``warnings``.
    """
    rows, too_long = [], []
    for rec in records:
        ids, labels = _encode(builder, rec)
        if len(ids) > max_length and policy == "truncate-input":
            ids, labels = _shorten_input(builder, rec, max_length)
        if len(ids) > max_length:
            too_long.append((rec.id, len(ids)))
            continue
        rows.append({"input_ids": ids, "labels": labels})
    if too_long and policy != "drop":
        worst = max(n for _, n in too_long)
        raise TrainingGuardError(
            f"{len(too_long)} training examples exceed train.max_length={max_length} tokens "
            f"(longest {worst}, e.g. record {too_long[0][0]}); raise train.max_length, set "
            "task.max_input_tokens, or set train.length_policy to drop or truncate-input"
        )
    if too_long:
        _say(f"train.length_policy=drop: left out {len(too_long)} of {len(records)} examples longer than "
             f"{max_length} tokens (e.g. record {too_long[0][0]})", warnings)
    if not rows:
        raise TrainingGuardError("no training example fits train.max_length; raise it")
    return rows


def _say(msg: str, warnings: list[str] | None) -> None:
    """A line about what was done to the training rows: logged, and kept in the run's warnings."""
    log.warning(msg)
    if warnings is not None:
        warnings.append(msg)


def tokenize_corpus(records: list[Record], tokenizer, max_length: int, warnings: list[str] | None = None) -> list[dict]:
    """task.type text: every document's windows (tunewise.evaluate.perplexity, the same cut as scoring),
    the causal-LM loss on every token a window predicts. A window's first token takes no loss: its
    context is in the window before, and in a packed batch it must not be predicted across a boundary."""
    from tunewise.evaluate.perplexity import chunk_note, corpus_windows

    docs, cut = corpus_windows(tokenizer, [r.input for r in records], max_length)
    rows = [{"input_ids": w, "labels": [IGNORE, *w[1:]]} for d in docs for w in d if len(w) > 1]
    if cut:
        _say(chunk_note(cut, len(records), max_length, len(rows)), warnings)
    if not rows:
        raise TrainingGuardError("no document has a token to learn from")
    return rows


def check_loss_mask(batch: dict, eos_id: int | None) -> None:
    """Every row of a collated batch trains on some tokens, and on the end-of-turn token ``eos_id``
    (the EOS or the template's own end of turn), even when it is also the pad token."""
    labels = batch["labels"]
    for i, row in enumerate(labels):
        taken = row[row != IGNORE]
        if taken.numel() == 0:
            raise TrainingGuardError(f"batch row {i}: the loss mask is empty, the model would learn nothing")
        if eos_id is not None and not bool((taken == eos_id).any()):
            raise TrainingGuardError(
                f"batch row {i}: the end-of-turn token (id {eos_id}) is masked out of the loss; the model would "
                "never learn to stop (is pad == eos and the collator masking padding by id?)"
            )
    if "position_ids" not in batch:
        # Answer-only loss: a label under a padding position would be trained on padding.
        padded = batch["attention_mask"] == 0
        if bool((labels[padded] != IGNORE).any()):
            raise TrainingGuardError("labels fall on padding positions; the loss mask covers non-answer tokens")


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


class PackedCollator:
    """Padding-free: one row holding every example, positions restarting at each example.

    With no attention mask, transformers builds a block-diagonal causal mask from the position
    ids, so examples do not see each other; each example's first label is a prompt token (masked),
    so no loss crosses a boundary.
    """

    def __call__(self, rows: list[dict]) -> dict:
        ids = [t for r in rows for t in r["input_ids"]]
        labels = [t for r in rows for t in r["labels"]]
        pos = [i for r in rows for i in range(len(r["input_ids"]))]
        return {
            "input_ids": torch.tensor([ids]), "labels": torch.tensor([labels]), "position_ids": torch.tensor([pos]),
        }


def sparse_causal_loss(model, inputs: dict, num_items_in_batch=None) -> torch.Tensor:
    """The causal-LM loss with the LM head applied only where a label is taken.

    The head over a 49k vocabulary is a fifth of a small model's FLOPs, and answer-only training
    takes the loss on a few tokens per example; the loss value is the same as computing every logit.
    """
    labels = inputs["labels"]
    shifted = labels[:, 1:]
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = shifted != IGNORE
    rest = {k: v for k, v in inputs.items() if k != "labels"}
    logits = model(**rest, logits_to_keep=keep, use_cache=False).logits
    return _answer_loss(logits, shifted[shifted != IGNORE], num_items_in_batch)


def shared_prefix_length(inputs: dict) -> int:
    """Tokens at the start of a right-padded batch that every row shares and no row takes a loss on
    (nor predicts its first answer token from), leaving each row its own tokens; 0 when under
    MIN_SHARED_PREFIX or when the batch is packed."""
    ids, labels = inputs["input_ids"], inputs["labels"]
    if ids.shape[0] < 2 or "position_ids" in inputs or "attention_mask" not in inputs:
        return 0
    same = (ids == ids[:1]).all(0) & (inputs["attention_mask"] == 1).all(0) & (labels == IGNORE).all(0)
    length = int(same.long().cumprod(0).sum())
    # The last prefix position predicts the next token: that one must take no loss either.
    while length > 0 and length < labels.shape[1] and bool((labels[:, length] != IGNORE).any()):
        length -= 1
    return length if length >= MIN_SHARED_PREFIX else 0


def shared_prefix_loss(model, inputs: dict, prefix: int, num_items_in_batch=None) -> torch.Tensor:
    """sparse_causal_loss with the batch's shared ``prefix`` tokens run once: its KV cache, built
    with gradients, is repeated for every row, and the rows run on from there. Same loss and
    gradients (tests/train/test_train_guards.py), fewer FLOPs."""
    ids, labels, mask = inputs["input_ids"], inputs["labels"], inputs["attention_mask"]
    batch, width = ids.shape
    cache = model(input_ids=ids[:1, :prefix], use_cache=True, logits_to_keep=1).past_key_values
    cache.batch_repeat_interleave(batch)
    shifted = labels[:, 1:]
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = shifted != IGNORE
    positions = torch.arange(prefix, width).unsqueeze(0).expand(batch, -1)
    logits = model(input_ids=ids[:, prefix:], attention_mask=mask, position_ids=positions, past_key_values=cache,
                   logits_to_keep=keep[:, prefix:], use_cache=True).logits
    return _answer_loss(logits, shifted[shifted != IGNORE], num_items_in_batch)


def _answer_loss(logits: torch.Tensor, targets: torch.Tensor, num_items_in_batch) -> torch.Tensor:
    logits = logits.reshape(-1, logits.shape[-1]).float()
    if num_items_in_batch is None:
        return torch.nn.functional.cross_entropy(logits, targets)
    loss = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
    return loss / torch.as_tensor(num_items_in_batch, device=loss.device)


def make_trainer(sparse: bool, shared: bool = False, **kwargs):
    """The transformers Trainer with token counting, sparse logits, the shared prefix run once per
    batch (``shared``) and completion markers."""
    from transformers import Trainer

    class TunewiseTrainer(Trainer):
        trained_tokens = 0
        evaluated_tokens = 0
        shared_tokens = 0
        """Trained tokens run once for their whole batch (the shared prefix's copies in the other rows)."""
        eval_shared_tokens = 0

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            mask = inputs.get("attention_mask")
            tokens = int(mask.sum()) if mask is not None else int(inputs["input_ids"].numel())
            if model.training:
                self.trained_tokens += tokens
            else:
                self.evaluated_tokens += tokens
            if not sparse or return_outputs:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            prefix = shared_prefix_length(inputs) if shared else 0
            if prefix:
                copies = prefix * (inputs["input_ids"].shape[0] - 1)
                if model.training:
                    self.shared_tokens += copies
                else:
                    self.eval_shared_tokens += copies
                loss = shared_prefix_loss(model, inputs, prefix, num_items_in_batch)
            else:
                loss = sparse_causal_loss(model, inputs, num_items_in_batch)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes  # as Trainer.compute_loss does
            return loss

        def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
            """The val loss that chooses the checkpoint, computed as training computes its loss (head only
            on answer tokens, the shared prefix once): the same value as the dense default, which ran the
            49k-vocabulary head and its log-softmax over every position (a third of the demo's fit)."""
            if not sparse or not prediction_loss_only:
                return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
            inputs = self._prepare_inputs(inputs)
            num_items = self._get_num_items_in_batch([inputs], self.args.device)
            with torch.no_grad(), self.compute_loss_context_manager():
                loss = self.compute_loss(model, inputs, num_items_in_batch=num_items)
            return loss.detach().mean(), None, None

    return TunewiseTrainer(**kwargs)


def check_all_batches(rows: list[dict], collator, batch_size: int, eos_id: int | None) -> None:
    """Run the loss-mask guard on every collated training batch (cheap: token ids only)."""
    for start in range(0, len(rows), batch_size):
        check_loss_mask(collator(rows[start:start + batch_size]), eos_id)


def train_adapter(model, tokenizer, config: ProjectConfig, train: list[Record], val: list[Record],
                  run_dir: Path, progress=None, resume: bool = False, project: Path | None = None) -> TrainResult:
    """Train with ``config.train.method``; save the best weights (by val loss) to ``run_dir``.

    Adapters go to ``run_dir/adapter``, full weights to ``run_dir/model``. ``resume`` continues
    from the newest complete checkpoint in ``run_dir/checkpoints``. ``project``: where the config's
    relative paths (train.dpo.data) are resolved.
    """
    if config.train.method == DPO:
        from tunewise.train.dpo import train_dpo

        return train_dpo(model, tokenizer, config, train, val, run_dir, progress, resume, project)
    if config.train.method == KTO:
        from tunewise.train.kto import train_kto

        return train_kto(model, tokenizer, config, run_dir, progress, resume, project)
    from transformers import EarlyStoppingCallback, PrinterCallback, set_seed

    from tunewise.data.split import subsample
    from tunewise.train.callbacks import tracking_callbacks
    from tunewise.train.methods import PASS_THROUGH, check_method, prepare_model

    t = config.train
    check_method(config)
    builder = PromptBuilder(config.task, tokenizer)
    corpus = config.task.type == TEXT  # continued pre-training: the whole text, no prompt and no template
    if not corpus:
        builder.check_template()
    train = subsample(train, t.max_train_examples, t.seed)
    val = subsample(val, t.max_val_examples, t.seed)
    if not val:
        raise TrainingGuardError("the val split is empty: it is needed to choose the best checkpoint")
    notes: list[str] = []  # warnings before training; the history callback adds its own

    def encode(records: list[Record]) -> list[dict]:
        if corpus:
            return tokenize_corpus(records, tokenizer, t.max_length, notes)
        return tokenize_examples(records, builder, t.max_length, t.length_policy, notes)

    train_rows, val_rows = encode(train), encode(val)

    set_seed(t.seed)
    model = prepare_model(model, config)
    run_dir = Path(run_dir)
    args = training_arguments(config, run_dir / "checkpoints")
    callbacks, history = tracking_callbacks(config, run_dir, progress)
    if t.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=t.early_stopping_patience))
    collator = PackedCollator() if t.padding_free else PadCollator(tokenizer.pad_token_id)
    # A window of a document ends where it was cut, not with an end of turn.
    check_all_batches(train_rows, collator, t.batch_size, None if corpus else builder.end_of_turn_id)
    trainer = make_trainer(
        t.sparse_logits and t.method in PASS_THROUGH, t.shared_prefix,
        model=model, args=args, train_dataset=train_rows, eval_dataset=val_rows,
        data_collator=collator, callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # our own progress bar and history replace its prints
    for cb in callbacks:
        if hasattr(cb, "bind"):
            cb.bind(trainer)
    checkpoint = last_checkpoint(run_dir / "checkpoints") if resume else None
    if resume and checkpoint is None:
        log.warning("%s: no complete checkpoint to resume from; training from the start", run_dir)
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=checkpoint)
    seconds = time.perf_counter() - start
    save_output(trainer, tokenizer, config, run_dir)
    if trainer.args.should_save:
        history.save(run_dir)
    return TrainResult(trainer.model, seconds, trainer.trained_tokens, trainer.state.global_step,
                       trainer.state.best_model_checkpoint, history.rows, notes + history.warnings,
                       trainer.evaluated_tokens, trainer.shared_tokens, trainer.eval_shared_tokens)


def count_parameters(model) -> dict:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable": trainable, "total": total, "percent": 100 * trainable / max(total, 1)}
