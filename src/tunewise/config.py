"""tunewise.yaml as pydantic models.

Settings resolve in this order: the defaults below → tunewise.yaml → ``--set key=value``.
Validation happens at load time; every error names the key and the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

CONFIG_NAME = "tunewise.yaml"


class ConfigError(ValueError):
    """A bad tunewise.yaml or --set value. The message is one line and names the key and file."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TaskConfig(_Strict):
    type: Literal["classification", "extraction", "generation"]
    """What the model must produce: one label, JSON fields, or free text."""
    input_field: str = "input"
    """The field of each data row that holds the model's input."""
    target_field: str = "target"
    """The field of each data row that holds the expected output (a label for classification)."""
    labels: list[str] = Field(default_factory=list)
    """The allowed labels (classification). Required: tunewise never guesses them from data."""
    instruction: str = ""
    """The instruction every prompt starts with; the same text in prompting, training and serving."""
    max_input_tokens: int | None = Field(default=None, gt=0)
    """Truncate each input to this many tokens of the base model's tokenizer (None: keep whole)."""

    @model_validator(mode="after")
    def _labels_for_classification(self) -> TaskConfig:
        if self.type == "classification":
            if len(self.labels) < 2:
                raise ValueError("labels: a classification task needs at least two labels")
            if len(set(self.labels)) != len(self.labels):
                raise ValueError("labels: each label must appear once")
        return self


class SplitConfig(_Strict):
    train: float = Field(0.8, gt=0, lt=1)
    """Fraction of rows for training."""
    val: float = Field(0.1, ge=0, lt=1)
    """Fraction for validation (checkpoint choice, early stopping)."""
    test: float = Field(0.1, gt=0, lt=1)
    """Fraction for the frozen test split every rung is scored on."""

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitConfig:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"split: train + val + test must be 1.0, got {total:g}")
        return self


class DataConfig(_Strict):
    files: list[str]
    """Data files, relative to the project folder."""
    split: SplitConfig = Field(default_factory=SplitConfig)
    seed: int = 0
    """Seed of the split; the same seed and data give the same test split and hash."""


class ModelConfig(_Strict):
    base: str
    """A bundled alias (smollm2-135m-instruct), a local Hugging Face model folder, or a .gguf path."""


class LoraConfig(_Strict):
    r: int = Field(8, gt=0)
    alpha: int = Field(16, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


METHODS = ("full", "lora", "dora", "qlora", "prefix", "prompt-tuning", "ia3", "dpo")
Method = Literal["full", "lora", "dora", "qlora", "prefix", "prompt-tuning", "ia3", "dpo"]


class DpoConfig(_Strict):
    beta: float = Field(0.1, gt=0)
    """Strength of the pull towards the reference model (DPO's beta)."""
    weights: Literal["lora", "full"] = "lora"
    """Train a LoRA adapter (the frozen base is the reference) or all weights (a frozen copy is)."""
    data: str | None = None
    """A JSONL file of {prompt, chosen, rejected} rows, relative to the project folder."""
    pairs_from_labels: bool = False
    """Classification only, opt-in: build pairs from the train split (chosen = the label,
    rejected = another label chosen with the seed) when no preference file is given."""


class TrainConfig(_Strict):
    method: Method = "lora"
    """The fine-tuning method: full, lora, dora, qlora, prefix, prompt-tuning, ia3 or dpo."""
    epochs: float = Field(1.0, gt=0)
    max_steps: int = -1
    """Stop after this many optimizer steps (-1: train for `epochs`)."""
    batch_size: int = Field(8, gt=0)
    grad_accum: int = Field(1, gt=0)
    learning_rate: float = Field(2e-4, gt=0)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    max_length: int = Field(512, gt=8)
    """Longest training sequence in tokens (prompt + answer); see `length_policy` for longer ones."""
    length_policy: Literal["error", "drop", "truncate-input"] = "error"
    """What happens to a training example longer than `max_length`: fail before training (error),
    leave it out with a warning naming how many (drop), or cut the prompt's input from the left
    end of the prompt so the answer and EOS stay whole (truncate-input)."""
    max_train_examples: int | None = Field(default=None, gt=0)
    """Train on a seeded, stratified subset of this size (None: the whole train split)."""
    max_val_examples: int | None = Field(default=200, gt=0)
    """Score checkpoints on at most this many val rows (a seeded subset) to bound eval time."""
    eval_steps: int = Field(50, gt=0)
    """Evaluate on val and checkpoint every this many steps; the best val loss is kept."""
    save_steps: int | None = Field(default=None, gt=0)
    """Checkpoint every this many steps (None: every `eval_steps`); must be a multiple of it."""
    save_total_limit: int = Field(2, gt=0)
    """Keep at most this many periodic checkpoints (the best one is always kept too)."""
    seed: int = 0
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Mixed precision: bf16 or fp16 where the hardware has it (checked before training)."""
    early_stopping_patience: int | None = Field(default=None, gt=0)
    """Stop when val loss has not improved for this many evaluations (None: never stop early)."""
    overfit_gap: float = Field(0.5, gt=0)
    """Warn when val loss exceeds train loss by this much and the gap keeps growing."""
    quant_bits: Literal[4, 8] = 4
    """qlora: quantise the frozen base to 4-bit (NF4) or 8-bit with bitsandbytes."""
    num_virtual_tokens: int = Field(8, gt=0)
    """prefix and prompt-tuning: how many virtual tokens are learned."""
    sparse_logits: bool = True
    """Compute the LM head only where the loss is taken (answer tokens): the same loss, less work.
    Applies to full, lora, dora and qlora."""
    padding_free: bool = False
    sampling: Literal["group_by_length", "random", "sequential"] = "group_by_length"
    """Order of training examples: shuffled in groups of similar length (less padding), shuffled,
    or in file order (reproducible across process counts; used to check DDP against one process)."""
    """Opt-in: pack each batch into one row with per-example position ids (no padding)."""
    tensorboard: bool = True
    """Write TensorBoard event files under the run's logs/ folder."""
    mlflow_uri: str | None = None
    """Log params and metrics to MLflow at this tracking URI (sqlite:///path/mlflow.db, or an
    http(s) server; MLflow 3 refuses file stores unless MLFLOW_ALLOW_FILE_STORE=true); None: off."""
    allow_pickle: bool = False
    """Load or export pickle (.bin) weights; off because unpickling can run arbitrary code."""
    lora: LoraConfig = Field(default_factory=LoraConfig)
    dpo: DpoConfig = Field(default_factory=DpoConfig)

    @field_validator("save_steps")
    @classmethod
    def _save_on_eval(cls, v: int | None, info: ValidationInfo) -> int | None:
        eval_steps = info.data.get("eval_steps")
        if v is not None and eval_steps and v % eval_steps:
            raise ValueError(f"must be a multiple of eval_steps={eval_steps} (the best checkpoint needs an eval)")
        return v


class EvalConfig(_Strict):
    batch_size: int = Field(8, gt=0)
    bootstrap: int = Field(1000, ge=100)
    """Bootstrap resamples behind every confidence interval."""
    max_test_examples: int | None = Field(default=None, gt=0)
    """Score every rung on a seeded, stratified subset of the test split (None: all of it)."""


RUNGS = ("zero-shot", "lora")


class ProjectConfig(_Strict):
    name: str = "project"
    task: TaskConfig
    data: DataConfig
    model: ModelConfig
    rungs: list[Literal["zero-shot", "lora"]] = Field(default_factory=lambda: list(RUNGS))
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=value``; the value is read as YAML (numbers, lists, booleans)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. train.epochs=2")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return key.strip().split("."), parsed


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    for text in overrides:
        keys, value = parse_override(text)
        node = raw
        for key in keys[:-1]:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text!r}: '{key}' is not a section")
            node = child
        node[keys[-1]] = value
    return raw


def _describe(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown key '{key}'"
    if first["type"] == "missing":
        return f"{source}: missing required key '{key}'"
    msg = first["msg"].removeprefix("Value error, ")
    return f"{source}: bad value for '{key}': {msg} (got {first.get('input')!r})"


def config_path(project: Path) -> Path:
    project = Path(project)
    return project if project.is_file() else project / CONFIG_NAME


def load_config(project: Path, overrides: list[str] | None = None) -> ProjectConfig:
    """Read ``<project>/tunewise.yaml``, apply ``--set`` overrides and validate."""
    path = config_path(project)
    if not path.exists():
        raise ConfigError(f"{path}: no such file (run `tunewise init DIR --example bbc-news`)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        where = f"{path}:{line + 1}" if line is not None else str(path)
        raise ConfigError(f"{where}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    raw = apply_overrides(raw, overrides or [])
    try:
        return ProjectConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_describe(e, str(path))) from None


def dump_config(config: ProjectConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
