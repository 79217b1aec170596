"""Prompting rungs: the base model with the task instruction, no training."""

from __future__ import annotations

import logging

from tunewise.core import Record
from tunewise.rungs.base import LabelScorer

log = logging.getLogger(__name__)


class ZeroShot(LabelScorer):
    """The instruction and the input through the model's chat template; labels scored by likelihood."""

    name = "zero-shot"

    def fit(self, train: list[Record], val: list[Record]) -> ZeroShot:
        self.builder().check_template()
        return self

    def save(self, run_dir) -> None:
        """Nothing is learned: the run's config.yaml (instruction, base model) is the whole rung."""
        from tunewise.rungs.saved import write_manifest

        write_manifest(run_dir, self.name)

    @classmethod
    def load(cls, run_dir, config, project, manifest: dict, base: tuple | None = None) -> ZeroShot:
        from tunewise.rungs.saved import llm_base

        return cls(config, llm_base(config, project, base), run_dir, project=project)


class FewShot(LabelScorer):
    """k solved train examples before the input, then label scoring like zero-shot.

    With ``few_shot.selection: random`` every prompt carries the same examples, so the tokens they
    share are run through the model once and reused as a KV cache: each call then costs only its
    own input, although it is still billed (``prompt_tokens``) for the whole prompt, as an API would.
    """

    name = "few-shot"

    def fit(self, train: list[Record], val: list[Record]) -> FewShot:
        from tunewise.rungs.encoder import train_subset

        b = self.builder()
        b.check_template()
        fs = self.config.few_shot
        self.pool = train_subset(self.config, train)
        self.pool_inputs = [_clip(self.tokenizer, r.input, fs.max_example_tokens) for r in self.pool]
        self.k = min(fs.k, len(self.pool))
        if fs.selection == "random":
            self.fixed = _balanced_sample(self.pool, self.k, fs.seed)
        else:
            from tunewise.rungs.encoder import Embedder, encoder_dir

            enc = self.config.encoder
            self.embed = Embedder(encoder_dir(self.config, self.project), enc.max_seq_length, enc.batch_size)
            self.pool_vectors = self.embed([r.input for r in self.pool])
        return self

    def save(self, run_dir) -> None:
        """The example pool (records and clipped inputs) as JSON, its embeddings as safetensors."""
        from pathlib import Path

        from tunewise import workspace as ws
        from tunewise.rungs.saved import save_arrays, write_manifest

        run_dir = Path(run_dir)
        ws.write_json(run_dir / "few_shot.json", {
            "pool": [r.to_json() for r in self.pool], "pool_inputs": self.pool_inputs, "k": self.k,
            "fixed": getattr(self, "fixed", None),
        })
        if self.config.few_shot.selection != "random":
            save_arrays(run_dir / "few_shot_vectors.safetensors", {"pool": self.pool_vectors})
        write_manifest(run_dir, self.name)

    @classmethod
    def load(cls, run_dir, config, project, manifest: dict, base: tuple | None = None) -> FewShot:
        import json
        from pathlib import Path

        from tunewise.rungs.saved import llm_base, load_arrays

        run_dir = Path(run_dir)
        self = cls(config, llm_base(config, project, base), run_dir, project=project)
        state = json.loads((run_dir / "few_shot.json").read_text(encoding="utf-8"))
        self.pool = [Record.from_json(r) for r in state["pool"]]
        self.pool_inputs, self.k = state["pool_inputs"], state["k"]
        if config.few_shot.selection == "random":
            self.fixed = state["fixed"]
        else:
            from tunewise.rungs.encoder import Embedder, encoder_dir

            enc = config.encoder
            self.embed = Embedder(encoder_dir(config, project), enc.max_seq_length, enc.batch_size)
            self.pool_vectors = load_arrays(run_dir / "few_shot_vectors.safetensors")["pool"]
        return self

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
