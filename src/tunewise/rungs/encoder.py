"""The non-LLM specialists: a small sentence encoder (MiniLM) as features or fine-tuned with a head.

These are the cheap rungs most teams forget: a 22M-parameter encoder that reads a 128-token input in
milliseconds and needs no prompt at all. Both rungs train on the same train subset the LoRA rung
uses (``train.max_train_examples``, same seed), so the ladder compares like with like.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from tunewise.config import ConfigError, ProjectConfig, config_path
from tunewise.core import Cost, Prediction, Record
from tunewise.evaluate.cost import FORWARD, FORWARD_BACKWARD, forward_flops, model_shape
from tunewise.rungs.base import RunContext
from tunewise.rungs.state import load_arrays, save_arrays, write_manifest
from tunewise.rungspec import EMBEDDING_CLASSIFIER, ENCODER_FINETUNE


def encoder_dir(config: ProjectConfig, project: Path) -> Path:
    """The encoder folder named by ``encoder.model``: a bundled alias or a local folder."""
    from tunewise.assets import ENCODER_ALIASES, asset_path

    name = config.encoder.model
    if name in ENCODER_ALIASES:
        return asset_path(ENCODER_ALIASES[name])
    path = Path(name) if Path(name).is_absolute() else Path(project) / name
    if not (path / "config.json").exists():
        raise ConfigError(
            f"{config_path(project)}: bad value for 'encoder.model': {name!r} is neither a bundled alias "
            f"({', '.join(ENCODER_ALIASES)}) nor a folder holding config.json"
        )
    return path


def train_subset(config: ProjectConfig, train: list[Record]) -> list[Record]:
    from tunewise.data.split import subsample

    return subsample(train, config.train.max_train_examples, config.train.seed)


class Embedder:
    """Mean-pooled, normalised sentence embeddings from a local encoder folder (sentence-transformers)."""

    def __init__(self, folder: Path, max_seq_length: int, batch_size: int):
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(folder), device="cpu")
        self.model.max_seq_length = max_seq_length
        self.batch_size = batch_size
        self.shape = model_shape(self.model[0].auto_model)

    def __call__(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True,
            show_progress_bar=False,
        )

    def token_counts(self, texts: list[str]) -> list[int]:
        tok = self.model.tokenizer
        ids = tok(texts, truncation=True, max_length=self.model.max_seq_length)["input_ids"]
        return [len(x) for x in ids]


def _predictions(records: list[Record], labels: list[str], logp: np.ndarray, elapsed: float,
                 tokens: list[int]) -> list[Prediction]:
    per_ms = 1000 * elapsed / max(len(records), 1)
    return [
        Prediction(
            id=r.id, output=labels[int(row.argmax())], scores={lab: float(v) for lab, v in zip(labels, row, strict=True)},
            latency_ms=per_ms, prompt_tokens=n,
        )
        for r, row, n in zip(records, logp, tokens, strict=True)
    ]


class EmbeddingClassifier:
    """Frozen MiniLM embeddings + a logistic regression: seconds to train, milliseconds to run."""

    name = EMBEDDING_CLASSIFIER

    def __init__(self, config: ProjectConfig, ctx: RunContext):
        self.config, self.project, self.run_dir, self.progress = config, ctx.project, ctx.run_dir, ctx.progress
        self.cost = Cost()

    def fit(self, train: list[Record], val: list[Record]) -> EmbeddingClassifier:
        from sklearn.linear_model import LogisticRegression

        enc = self.config.encoder
        labels = self.config.task.labels
        start = time.perf_counter()
        self.embed = Embedder(encoder_dir(self.config, self.project), enc.max_seq_length, enc.batch_size)
        rows = train_subset(self.config, train)
        x = self.embed([r.input for r in rows])
        y = np.array([labels.index(r.target) for r in rows])
        # Embeddings are unit-length; C is the one knob worth exposing.
        self.clf = LogisticRegression(C=enc.C, max_iter=2000, random_state=enc.seed).fit(x, y)
        self.cost.train_seconds += time.perf_counter() - start
        self.cost.train_tokens += sum(self.embed.token_counts([r.input for r in rows]))
        # Training is one forward pass over the train subset; the logistic regression's FLOPs are negligible.
        self.cost.train_flops += FORWARD * self.embed.shape[0] * self.cost.train_tokens
        self.history = [{"step": 0, "n_train": len(rows), "train_accuracy": float(self.clf.score(x, y))}]
        return self

    def save(self, run_dir) -> None:
        """The logistic regression as plain arrays (safetensors), not a pickled estimator."""
        save_arrays(Path(run_dir) / "classifier.safetensors", {
            "coef": self.clf.coef_, "intercept": self.clf.intercept_, "classes": self.clf.classes_,
        })
        write_manifest(run_dir, self.name, history=self.history)

    @classmethod
    def load(cls, config, ctx: RunContext, manifest: dict) -> EmbeddingClassifier:
        from sklearn.linear_model import LogisticRegression

        self = cls(config, ctx)
        enc = config.encoder
        self.embed = Embedder(encoder_dir(config, self.project), enc.max_seq_length, enc.batch_size)
        arrays = load_arrays(self.run_dir / "classifier.safetensors")
        self.clf = LogisticRegression(C=enc.C, max_iter=2000, random_state=enc.seed)
        self.clf.coef_, self.clf.intercept_, self.clf.classes_ = arrays["coef"], arrays["intercept"], arrays["classes"]
        self.clf.n_features_in_ = arrays["coef"].shape[1]
        self.history = manifest.get("history", [])
        return self

    def predict(self, records: list[Record]) -> list[Prediction]:
        labels = self.config.task.labels
        texts = [r.input for r in records]
        start = time.perf_counter()
        proba = self.clf.predict_proba(self.embed(texts))
        elapsed = time.perf_counter() - start
        logp = np.full((len(records), len(labels)), -np.inf)
        logp[:, self.clf.classes_] = np.log(np.clip(proba, 1e-12, 1.0))
        tokens = self.embed.token_counts(texts)
        self.cost.predict_seconds += elapsed
        self.cost.predict_examples += len(records)
        self.cost.prompt_tokens += sum(tokens)
        self.cost.predict_flops += sum(forward_flops(self.embed.shape, n, causal=False) for n in tokens)
        return _predictions(records, labels, logp, elapsed, tokens)


class EncoderFinetune:
    """The encoder fine-tuned end to end with a linear classification head (plain PyTorch loop)."""

    name = ENCODER_FINETUNE

    def __init__(self, config: ProjectConfig, ctx: RunContext):
        self.config, self.project, self.run_dir, self.progress = config, ctx.project, ctx.run_dir, ctx.progress
        self.cost = Cost()

    def _batches(self, texts: list[str], batch_size: int):
        for i in range(0, len(texts), batch_size):
            yield i, self.tokenizer(
                texts[i : i + batch_size], truncation=True, max_length=self.config.encoder.max_seq_length,
                padding=True, return_tensors="pt",
            )

    def fit(self, train: list[Record], val: list[Record]) -> EncoderFinetune:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

        enc, labels = self.config.encoder, self.config.task.labels
        folder = encoder_dir(self.config, self.project)
        torch.manual_seed(enc.seed)
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=len(labels))
        rows = train_subset(self.config, train)
        rng = np.random.default_rng(enc.seed)
        steps_per_epoch = math.ceil(len(rows) / enc.batch_size)
        total = max(1, round(enc.epochs * steps_per_epoch))
        opt = torch.optim.AdamW(self.model.parameters(), lr=enc.learning_rate, weight_decay=0.01)
        sched = get_linear_schedule_with_warmup(opt, max(1, total // 10), total)
        advance = self.progress(f"{self.name}: training", total)
        self.history, step, tokens = [], 0, 0
        start = time.perf_counter()
        self.model.train()
        while step < total:
            order = rng.permutation(len(rows))
            texts = [rows[i].input for i in order]
            y = torch.tensor([labels.index(rows[i].target) for i in order])
            for i, batch in self._batches(texts, enc.batch_size):
                loss = self.model(**batch, labels=y[i : i + enc.batch_size]).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                opt.step(), sched.step(), opt.zero_grad()
                step += 1
                tokens += int(batch["attention_mask"].sum())
                self.history.append({"step": step, "loss": float(loss.detach())})
                advance(1)
                if step >= total:
                    break
        self.cost.train_seconds += time.perf_counter() - start
        self.cost.train_tokens += tokens
        # The encoder body only, as for the embedding classifier: the two rungs run the same weights
        # on the same tokens per request, and the linear heads' FLOPs are negligible.
        self.shape = model_shape(self.model.base_model)
        self.cost.train_flops += FORWARD_BACKWARD * self.shape[0] * tokens
        return self

    def save(self, run_dir) -> None:
        """The fine-tuned encoder and its head as a Hugging Face folder (safetensors) with its tokenizer."""
        from tunewise.workspace import atomic_dir

        with atomic_dir(Path(run_dir) / "encoder") as tmp:
            self.model.save_pretrained(tmp, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp)
        write_manifest(run_dir, self.name, weights="encoder")

    @classmethod
    def load(cls, config, ctx: RunContext, manifest: dict) -> EncoderFinetune:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self = cls(config, ctx)
        folder = self.run_dir / manifest.get("weights", "encoder")
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.model = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True,
                                                                        use_safetensors=True)
        self.shape = model_shape(self.model.base_model)
        return self

    def predict(self, records: list[Record]) -> list[Prediction]:
        import torch

        labels = self.config.task.labels
        texts = [r.input for r in records]
        self.model.eval()
        out, tokens = [], []
        start = time.perf_counter()
        with torch.inference_mode():
            for _, batch in self._batches(texts, self.config.encoder.batch_size):
                out.append(torch.log_softmax(self.model(**batch).logits.float(), -1).numpy())
                tokens += batch["attention_mask"].sum(-1).tolist()
        elapsed = time.perf_counter() - start
        self.cost.predict_seconds += elapsed
        self.cost.predict_examples += len(records)
        self.cost.prompt_tokens += sum(tokens)
        self.cost.predict_flops += sum(forward_flops(self.shape, n, causal=False) for n in tokens)
        return _predictions(records, labels, np.concatenate(out), elapsed, tokens)
