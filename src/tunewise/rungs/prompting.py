"""Prompting rungs: the base model with the task instruction, no training."""

from __future__ import annotations

import logging

import numpy as np

from tunewise.core import Prediction, Record
from tunewise.rungs.base import LabelScorer, RunContext, off_the_books
from tunewise.rungs.encoder import Embedder, encoder_dir, train_subset
from tunewise.rungs.state import load_arrays, save_arrays, write_manifest
from tunewise.rungspec import FEW_SHOT, TEXT, ZERO_SHOT

log = logging.getLogger(__name__)
CONTENT_FREE = ("N/A", "", "[MASK]")  # Zhao et al. 2021, "Calibrate Before Use"


class Calibrated(LabelScorer):
    """Contextual calibration of label scores: p(label | x) / p(label | content-free x), renormalised.

    The prior is measured once per prompt (per example set) from the content-free inputs, scored in the
    same way as any row, and kept with the rung so that serving applies exactly what was measured."""

    prior: list[float] | None = None

    def calibrating(self) -> bool:
        return self.config.few_shot.calibrate and self.config.task.type == "classification"

    def measure_prior(self) -> None:
        from scipy.special import softmax

        self.prior = None
        if not self.calibrating():
            return
        rows = [Record(f"content-free-{i}", text, None) for i, text in enumerate(CONTENT_FREE)]
        labels = self.config.task.labels
        # A one-off measurement of the prompt: not predictions to bill, and what its three rows trip (examples
        # cut to fit the context) is the test rows' warning to give, not a second one.
        with off_the_books(self):
            probs = softmax(np.array([[p.scores[lab] for lab in labels] for p in super().score(rows)]), axis=1)
        self.prior = probs.mean(0).tolist()

    def score(self, records: list[Record], fixed=None) -> list[Prediction]:
        from scipy.special import log_softmax

        preds = super().score(records, fixed)
        if not self.prior:
            return preds
        labels = self.config.task.labels
        raw = np.array([[p.scores[lab] for lab in labels] for p in preds])
        cal = log_softmax(raw, axis=1) - np.log(np.asarray(self.prior))
        for p, row in zip(preds, cal, strict=True):
            p.output, p.scores = labels[int(row.argmax())], {lab: float(v) for lab, v in zip(labels, row, strict=True)}
        return preds


class ZeroShot(Calibrated):
    """The instruction and the input through the model's chat template; labels scored by likelihood."""

    name = ZERO_SHOT

    def fit(self, train: list[Record], val: list[Record]) -> ZeroShot:
        if self.config.task.type != TEXT:  # a plain-text corpus is scored as it is, with no prompt
            self.builder().check_template()
        self.measure_prior()
        return self

    def save(self, run_dir) -> None:
        """Nothing is learned but the calibration prior: config.yaml (instruction, base model) is the rest."""
        from pathlib import Path

        from tunewise import workspace as ws

        if self.prior:
            ws.write_json(Path(run_dir) / "calibration.json", {"prior": self.prior, "content_free": CONTENT_FREE})
        write_manifest(run_dir, self.name)

    @classmethod
    def load(cls, config, ctx: RunContext, manifest: dict) -> ZeroShot:
        import json

        self = cls(config, ctx.with_base(config))
        path = self.run_dir / "calibration.json"
        self.prior = json.loads(path.read_text(encoding="utf-8"))["prior"] if path.exists() else None
        return self


class FewShot(Calibrated):
    """k solved train examples before the input, then label scoring like zero-shot.

    With ``few_shot.selection: random`` every prompt carries the same examples, so the tokens they
    share are run through the model once and reused as a KV cache: each call then costs only its
    own input, although it is still billed (``prompt_tokens``) for the whole prompt, as an API would.
    """

    name = FEW_SHOT

    def fit(self, train: list[Record], val: list[Record]) -> FewShot:
        b = self.builder()
        b.check_template()
        fs = self.config.few_shot
        self.pool = train_subset(self.config, train)
        self.pool_inputs = [_clip(self.tokenizer, r.input, fs.max_example_tokens) for r in self.pool]
        self.k = min(fs.k, len(self.pool))
        if fs.selection == "random":
            self.sets = example_sets(self.pool, self.k, fs.seed, fs.sets)
            self.fixed = self.sets[0]
            self.measure_prior()
        else:
            enc = self.config.encoder
            self.embed = Embedder(encoder_dir(self.config, self.project), enc.max_seq_length, enc.batch_size)
            self.pool_vectors = self.embed([r.input for r in self.pool])
        return self

    def save(self, run_dir) -> None:
        """The example pool (records and clipped inputs) as JSON, its embeddings as safetensors."""
        from pathlib import Path

        from tunewise import workspace as ws

        run_dir = Path(run_dir)
        ws.write_json(run_dir / "few_shot.json", {
            "pool": [r.to_json() for r in self.pool], "pool_inputs": self.pool_inputs, "k": self.k,
            "fixed": getattr(self, "fixed", None), "sets": getattr(self, "sets", None), "prior": self.prior,
        })
        if self.config.few_shot.selection != "random":
            save_arrays(run_dir / "few_shot_vectors.safetensors", {"pool": self.pool_vectors})
        write_manifest(run_dir, self.name)

    @classmethod
    def load(cls, config, ctx: RunContext, manifest: dict) -> FewShot:
        import json

        self = cls(config, ctx.with_base(config))
        run_dir, project = self.run_dir, self.project
        state = json.loads((run_dir / "few_shot.json").read_text(encoding="utf-8"))
        self.pool = [Record.from_json(r) for r in state["pool"]]
        self.pool_inputs, self.k = state["pool_inputs"], state["k"]
        self.prior = state.get("prior")
        if config.few_shot.selection == "random":
            self.fixed = state["fixed"]
            self.sets = state.get("sets") or [self.fixed]
        else:
            enc = config.encoder
            self.embed = Embedder(encoder_dir(config, project), enc.max_seq_length, enc.batch_size)
            self.pool_vectors = load_arrays(run_dir / "few_shot_vectors.safetensors")["pool"]
        return self

    def predict_draws(self, records: list[Record]) -> list[tuple[int, list[int], list[Prediction]]]:
        """(seed, example indices, predictions) of every example set after the first (which the ladder
        scores as the rung itself); the first set is restored afterwards, so serving uses it."""
        if self.config.few_shot.selection != "random":
            return []
        first, first_prior, out = self.fixed, self.prior, []
        try:
            for i, shots in enumerate(self.sets[1:], start=1):
                self.fixed = shots
                self.measure_prior()  # the content-free prior belongs to this set's prompt
                out.append((self.config.few_shot.seed + i, shots, self.predict(records)))
        finally:
            self.fixed, self.prior = first, first_prior
        return out

    def shots_for(self, records: list[Record]) -> list[list[int]]:
        """Indices into the pool of each record's examples."""
        if self.config.few_shot.selection == "random":
            return [self.fixed] * len(records)
        sims = self.embed([r.input for r in records]) @ self.pool_vectors.T
        # Most similar last: the nearest example sits right before the input.
        return [list(reversed(row.argsort()[::-1][: self.k].tolist())) for row in sims]

    def prompt_ids(self, records: list[Record]) -> list[list[int]]:
        b = self.builder()
        budget = self.context_budget()
        full, cut_prompts, cut_shots = [], 0, 0
        for rec, shots in zip(records, self.shots_for(records), strict=True):
            # Fit to the context: drop the farthest examples until prompt + answer fits.
            k = len(shots)
            while True:
                ids = self.tokenizer(self.render_record(b, rec, shots), add_special_tokens=False)["input_ids"]
                if len(ids) <= budget or not shots:
                    break
                shots = shots[1:]
            cut_prompts, cut_shots = cut_prompts + (len(shots) < k), cut_shots + k - len(shots)
            full.append(ids)
        if cut_prompts:
            self.warnings.append(f"few-shot: {cut_prompts} of {len(records)} prompts lost examples to fit the "
                                 f"{budget}-token context ({cut_shots} examples cut in all)")
            log.warning(self.warnings[-1])
        self._prefix_ids = _common_prefix(full) if self.config.few_shot.selection == "random" else []
        cut = len(self._prefix_ids)
        return [ids[cut:] for ids in full]

    def render_record(self, b, rec: Record, shots: list[int]) -> str:
        """A chat row keeps its own turns: the system turn (with the instruction), then each
        example's conversation, then the row's turns up to its answer; other rows see ``render``."""
        if rec.meta.get("messages") and getattr(self.tokenizer, "chat_template", None):
            return self._render_chat(b, rec, shots)
        return self.render(b, rec.input, shots)

    def render(self, b, text: str, shots: list[int]) -> str:
        """The examples as earlier chat turns (user: input, assistant: answer), then the input.

        Turns, not one long message: the model then sees each answer exactly where, and in the form,
        its own answer is scored (label + end of turn). On BBC with SmolLM2-135M this took 20
        test articles from 4 to 12 right. Without a chat template the examples go inline.
        """
        if not getattr(self.tokenizer, "chat_template", None):
            return b.prompt(text, [(self.pool_inputs[i], self.pool[i].target) for i in shots])
        instruction = self.config.task.instruction.strip()
        messages: list[dict] = []
        for i in shots:
            lead = f"{instruction}\n\n" if instruction and not messages else ""
            messages += [{"role": "user", "content": lead + self.pool_inputs[i]},
                         {"role": "assistant", "content": self.pool[i].target or ""}]
        lead = f"{instruction}\n\n" if instruction and not messages else ""
        messages.append({"role": "user", "content": lead + b.truncate(text)})
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _render_chat(self, b, rec: Record, shots: list[int]) -> str:
        turns = b.prompt_turns(rec.meta["messages"])
        head = turns[:1] if turns and turns[0]["role"] == "system" else []
        examples: list[dict] = []
        clip = self.config.few_shot.max_example_tokens
        for i in shots:
            shot = self.pool[i]
            messages = shot.meta.get("messages") or [
                {"role": "user", "content": shot.input}, {"role": "assistant", "content": shot.target or ""}]
            examples += [t for t in b.chat_messages(messages, clip, instruction=False) if t["role"] != "system"]
        return b.render(head + examples + turns[len(head):], generation=True, tools=rec.meta.get("tools"))

    def context_budget(self) -> int:
        limit = getattr(self.model.config, "max_position_embeddings", None) or 2048
        labels = self.config.task.labels
        if self.config.task.type == "classification" and labels:
            label_room = 8 + max(len(self.tokenizer(lab)["input_ids"]) for lab in labels)
        else:
            label_room = self.config.eval.max_new_tokens
        return limit - label_room

    def shared_prefix(self):
        from tunewise.evaluate.decode import cache_prefix

        if not getattr(self, "_prefix_ids", None):
            return None
        return cache_prefix(self.model, self._prefix_ids)


def _clip(tokenizer, text: str, max_tokens: int) -> str:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return text if len(ids) <= max_tokens else tokenizer.decode(ids[:max_tokens]) + " …"


def _balanced_sample(pool: list[Record], k: int, seed: int) -> list[int]:
    """k pool indices, round-robin over targets (one per label first), in a seeded shuffled order."""
    import random

    rng = random.Random(seed)
    by_target: dict[str | None, list[int]] = {}
    for i, r in enumerate(pool):
        by_target.setdefault(r.target, []).append(i)
    for idx in by_target.values():
        rng.shuffle(idx)
    queues = [by_target[t] for t in sorted(by_target, key=str)]
    chosen: list[int] = []
    while len(chosen) < k:
        for q in queues:
            if q and len(chosen) < k:
                chosen.append(q.pop())
    rng.shuffle(chosen)  # no label order for the model to copy
    return chosen


def example_sets(pool: list[Record], k: int, seed: int, n_sets: int) -> list[list[int]]:
    """``n_sets`` balanced example sets (seeds seed, seed+1, ...). A model leans toward the label of the
    last example (Zhao et al. 2021), so while labels remain, no two sets end on the same label: a set whose
    last example repeats an earlier set's last label has it swapped with one of an unused label."""
    sets, last_labels = [], set()
    for i in range(n_sets):
        shots = _balanced_sample(pool, k, seed + i)
        if shots and pool[shots[-1]].target in last_labels:
            swap = next((j for j, s in enumerate(shots) if pool[s].target not in last_labels), None)
            if swap is not None:
                shots[swap], shots[-1] = shots[-1], shots[swap]
        if shots:
            last_labels.add(pool[shots[-1]].target)
        sets.append(shots)
    return sets


def score_draws(rung, records: list[Record], first, score) -> list[dict] | None:
    """Every example set of a drawn rung, scored by ``score`` (predictions -> scored, as the ladder
    scores the rung): seed, example indices, primary value and per-item scores (for report.decide).
    ``first``: the ladder's scoring of the first set. None for a rung without draws."""
    extra = rung.predict_draws(records) if hasattr(rung, "predict_draws") else []
    if not extra:
        return None
    fs = rung.config.few_shot
    out = [{"seed": fs.seed, "examples": rung.sets[0], "value": first.metrics[first.primary],
            "item_scores": first.item_scores.tolist()}]
    for seed, shots, preds in extra:
        s = score(preds)
        out.append({"seed": seed, "examples": shots, "value": s.metrics[s.primary], "item_scores": s.item_scores.tolist()})
    return out


def _common_prefix(seqs: list[list[int]]) -> list[int]:
    """The longest token prefix shared by every sequence, leaving each at least one token of its own."""
    if not seqs:
        return []
    n = min(len(s) for s in seqs) - 1
    first = seqs[0]
    for s in seqs[1:]:
        i = 0
        while i < n and s[i] == first[i]:
            i += 1
        n = i
    return first[: max(n, 0)]
