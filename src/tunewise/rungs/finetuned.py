"""Fine-tuned LLM rungs: train with one method on the train split, then score labels like the prompts do."""

from __future__ import annotations

import time

import torch

from tunewise import rungspec
from tunewise.core import Prediction, Record
from tunewise.rungs.base import LabelScorer, RunContext
from tunewise.rungs.state import write_manifest


class FinetunedRung(LabelScorer):
    """Fine-tune the base with the training method of the rung's entry in the table of rungs
    (``train.method`` is set to it); the checkpoint with the best val loss is kept. One subclass per
    rung, made below from the table's methods."""

    name = "fine-tuned"  # every subclass names its entry in tunewise.rungspec

    @property
    def method(self) -> str:
        return rungspec.spec(self.name).method

    def __init__(self, config, ctx: RunContext):
        super().__init__(config, ctx)
        if self.config.train.method != self.method:
            train = self.config.train.model_copy(update={"method": self.method})
            self.config = self.config.model_copy(update={"train": train})

    def fit(self, train: list[Record], val: list[Record]) -> FinetunedRung:
        from tunewise.evaluate.cost import FORWARD, training_flops
        from tunewise.train.sft import train_adapter

        result = train_adapter(
            self.model, self.tokenizer, self.config, train, val, self.run_dir, progress=self.progress,
            project=self.project,  # a relative train.dpo.data is the project's, not the working folder's
        )
        self.model = result.model
        self.train_result = result
        self.warnings += result.warnings
        self.cost.train_seconds += result.seconds
        self.cost.train_tokens += result.tokens
        # A batch's shared prefix runs once: its copies in the other rows cost nothing.
        self.cost.train_flops += training_flops(self.shape[0], result.tokens - result.shared_tokens, self.train_passes())
        # The val evaluations that choose the checkpoint are part of training's bill (forward only).
        self.cost.train_eval_tokens += getattr(result, "eval_tokens", 0)
        evaluated = getattr(result, "eval_tokens", 0) - getattr(result, "eval_shared_tokens", 0)
        self.cost.train_flops += training_flops(self.shape[0], evaluated, FORWARD)
        return self

    def train_passes(self) -> int:
        """FLOPs per weight per trained token (see tunewise.evaluate.cost). DPO also runs the frozen
        reference model forward over every token."""
        from tunewise.evaluate.cost import FORWARD, FORWARD_BACKWARD, FORWARD_BACKWARD_FROZEN
        from tunewise.train.methods import PREFERENCE, full_weights

        passes = FORWARD_BACKWARD if full_weights(self.config) else FORWARD_BACKWARD_FROZEN
        return passes + FORWARD if self.method in PREFERENCE else passes

    def save(self, run_dir) -> None:
        """Training already wrote the best weights (PEFT adapter or full safetensors); name them."""
        from tunewise.train.methods import output_name

        write_manifest(run_dir, self.name, weights=output_name(self.config))

    @classmethod
    def load(cls, config, ctx: RunContext, manifest: dict) -> FinetunedRung:
        """The rung on its saved weights (a fresh base under an adapter; qlora on the quantised base
        it trained against); ``ctx.base`` is not used. The server shares one base between adapters itself."""
        import dataclasses

        from tunewise.train.merge import load_trained

        folder = ctx.run_dir / manifest["weights"]
        model, tok = load_trained(folder)
        return cls(config, dataclasses.replace(ctx, base=(model, tok, folder)))

    def predict(self, records: list[Record], prefix=None) -> list[Prediction]:
        from tunewise.train.methods import PROMPT_LEARNING

        if self.method not in PROMPT_LEARNING:
            return super().predict(records, prefix)
        from tunewise.evaluate.decode import inference_precision

        with inference_precision(self.config.eval.precision):
            if self.config.task.type != "classification":
                return self._generate_with_peft(records)
            return self._predict_without_cache(records)

    def _generate_with_peft(self, records: list[Record]) -> list[Prediction]:
        """Prefix and prompt tuning on extraction and generation: PEFT's own generate, which feeds the
        learned virtual tokens (our cached decoder would overwrite the prefix's KV cache)."""
        prompts = self.prompt_ids(records)
        tok, bs, stop = self.tokenizer, self.config.eval.batch_size, self.builder().stop_ids
        advance = self.progress(f"{self.name}: generating", len(records))
        start = time.perf_counter()
        answers: list[list[int]] = []
        self.model.eval()
        for i in range(0, len(prompts), bs):
            chunk = prompts[i : i + bs]
            width = max(len(p) for p in chunk)
            ids = torch.tensor([[tok.pad_token_id] * (width - len(p)) + p for p in chunk])
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk])
            with torch.no_grad():
                out = self.model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                          max_new_tokens=self.config.eval.max_new_tokens,
                                          eos_token_id=stop, pad_token_id=tok.pad_token_id)
            answers += [_until(row[width:].tolist(), stop) for row in out]
            advance(len(chunk))
        outputs = [tok.decode(a, skip_special_tokens=True).strip() for a in answers]
        per_ms = self.charge(start, prompts, [[len(a)] for a in answers], decoded=True)
        return [Prediction(id=r.id, output=o, latency_ms=per_ms, prompt_tokens=len(p))
                for r, o, p in zip(records, outputs, prompts, strict=True)]

    def _predict_without_cache(self, records: list[Record]) -> list[Prediction]:
        """Prefix and prompt tuning own the KV cache and the first positions, so the cached label
        scorer cannot drive them: score each prompt + label sequence in one plain forward."""
        labels = self.config.task.labels
        b = self.builder()
        label_ids = [b.encode("", lab)[1] for lab in labels]
        prompts = self.prompt_ids(records)
        advance = self.progress(f"{self.name}: scoring", len(records))
        start = time.perf_counter()
        scores = torch.stack([score_sequences(self.model, p, label_ids, self.tokenizer.pad_token_id) for p in prompts])
        advance(len(records))
        # Priced as the cached scorer would run it (tunewise.evaluate.cost): the virtual tokens belong to
        # the prefix every request shares.
        per_ms = self.charge(start, prompts, [self.label_runs(label_ids)] * len(prompts))
        return [
            Prediction(id=rec.id, output=labels[int(row.argmax())],
                       scores={lab: float(v) for lab, v in zip(labels, row, strict=True)},
                       latency_ms=per_ms, prompt_tokens=len(p))
            for rec, row, p in zip(records, scores, prompts, strict=True)
        ]


def _until(ids: list[int], stop: list[int]) -> list[int]:
    """The answer up to its first end-of-turn (or EOS) token."""
    return next((ids[:i] for i, t in enumerate(ids) if t in stop), ids)


@torch.no_grad()
def score_sequences(model, prompt: list[int], answers: list[list[int]], pad_id: int) -> torch.Tensor:
    """Summed log-probability of each answer after ``prompt``, one right-padded batch, no cache."""
    model.eval()
    width = len(prompt) + max(len(a) for a in answers)
    ids = torch.full((len(answers), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, a in enumerate(answers):
        seq = prompt + a
        ids[i, : len(seq)] = torch.tensor(seq)
        mask[i, : len(seq)] = 1
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
    logits = logits[:, -width:]  # prompt tuning prepends its virtual tokens' positions
    logp = torch.log_softmax(logits.float(), dim=-1)
    out = torch.zeros(len(answers))
    for i, a in enumerate(answers):
        pos = torch.arange(len(prompt) - 1, len(prompt) - 1 + len(a))
        out[i] = logp[i, pos, torch.tensor(a)].sum()
    return out


def _method_class(method: str) -> type[FinetunedRung]:
    """The rung of one training method: FinetunedRung under the method's name in the table of rungs."""
    return type(f"Finetuned_{method.replace('-', '_')}", (FinetunedRung,), {"name": method, "__module__": __name__})


# One class per fine-tuning rung, derived from the table (tunewise.rungspec): a new method needs no class here.
FINE_TUNED = tuple(_method_class(m) for m in rungspec.METHODS)
