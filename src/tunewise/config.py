"""tunewise.yaml as pydantic models.

Settings resolve in this order: the defaults below → tunewise.yaml → ``--set key=value``.
Validation happens at load time; every error names the key and the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from tunewise.rungspec import DEFAULT_RUNGS, FULL, LORA, METHODS, NAMES, TASK_TYPES, refused, runs_on

CONFIG_NAME = "tunewise.yaml"


class ConfigError(ValueError):
    """A bad tunewise.yaml or --set value. The message is one line and names the key and file."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True)


class TaskConfig(_Strict):
    type: Literal[TASK_TYPES]
    """What the model must produce: one label, JSON fields, or free text; `text`: no answers, a plain-text
    corpus (rows `{"text": ...}`) the model is adapted to (continued pre-training), scored by perplexity."""
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
    json_schema: str | None = None
    """Extraction: a JSON Schema file (relative to the project) every answer is validated against."""

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


class ShareGPTTags(_Strict):
    messages: str = "conversations"
    """The field holding the list of turns."""
    role_tag: str = "from"
    """The key of a turn naming who speaks."""
    content_tag: str = "value"
    """The key of a turn holding its text."""
    user_tag: str = "human"
    """The role tag of the user's turns."""
    assistant_tag: str = "gpt"
    """The role tag of the assistant's turns (the answers trained and scored)."""
    system_tag: str = "system"
    """The role tag of a system turn (first only)."""
    function_tag: str = "function_call"
    """A turn whose text is a JSON tool call {"name", "arguments"} (or a list of them)."""
    observation_tag: str = "observation"
    """A turn holding a tool's result."""


class DataConfig(_Strict):
    # `schema` is a BaseModel attribute, so the field is schema_ under the alias the user writes.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, serialize_by_alias=True,
                              use_attribute_docstrings=True)

    files: list[str]
    """Data files, relative to the project folder."""
    split: SplitConfig = Field(default_factory=SplitConfig)
    seed: int = 0
    """Seed of the split; the same seed and data give the same test split and hash."""
    test_file: str | None = None
    """A fixed test file (relative to the project); `prepare` then splits only train/val from `files`."""
    schema_: Literal["input_target", "prompt_completion", "alpaca", "chat", "sharegpt", "preference", "kto",
                     "text"] | None = Field(default=None, alias="schema")
    """The data schema; None detects it per file (and the audit says which was detected). README's
    data section shows each."""
    sharegpt: ShareGPTTags = Field(default_factory=lambda: ShareGPTTags())
    """ShareGPT field and role names, where a file's differ from LLaMA-Factory's defaults."""
    id_field: str = "id"
    """The field holding each row's id; a row without one is named by a hash of its input and target, so inserting or reordering lines renames no row."""
    annotator_field: str | None = None
    """The field naming who labelled a row; the audit then reports annotator agreement (kappa)."""
    documents: str | None = None
    """A folder of .txt/.md documents (relative to the project) the `rag` rung retrieves from."""
    ood_test: str | None = None
    """An out-of-distribution test file (same fields), scored by every rung and reported separately."""
    allow_outside_paths: bool = False
    """Allow absolute paths outside the project folder in data.*, task.json_schema and
    train.dpo.data (off: every such path must lie inside the project, so a project is one folder
    that can be moved or shared whole). Relative paths that climb out with `..` are always refused."""
    recent_test: str | None = None
    """Labelled recent production requests (e.g. .tunewise/reviews/recent.jsonl from `tunewise review
    import` of a `tunewise monitor --export-review` CSV): `prepare` keeps them as a separate "recent" test
    split beside the frozen one, and the ladder scores every rung on both."""


class AuditConfig(_Strict):
    near_duplicate_threshold: float = Field(0.8, gt=0, le=1)
    """Jaccard similarity of the two inputs' word and word-pair sets (casefolded, punctuation dropped)
    at or above which they are near-duplicates. One word inserted into an n-word text scores (n-1)/(n+1),
    one replaced (n-2)/(n+1): at 0.8 an insertion is caught from 9 words and two texts differing in one
    replaced word pair from 14 (from 10 at the first or last word); 0.85 moves these to 13 and 19."""
    max_tokens: int | None = Field(default=None, gt=0)
    """Rows longer than this (input + target, base model tokens) are `too_long` (None: no limit)."""
    min_label_count: int = Field(10, ge=1)
    """Labels with fewer rows than this are reported by `class_balance`."""
    review_sample: int = Field(50, ge=0)
    """Rows, spread across labels, in the review sample for a person to read."""
    mislabels: bool = True
    """Run `suspected_mislabels` (embeds rows with MiniLM on CPU; the slowest check)."""
    mislabel_max_rows: int | None = Field(default=2000, gt=0)
    """Check a seeded, stratified subset of this many rows for mislabels (None: every row)."""
    seed: int = 0
    """Seed of the audit's samples (the review sample, the mislabel subset)."""


class PrepareConfig(_Strict):
    exact_duplicates: Literal["drop", "keep"] = "drop"
    """Drop rows whose input and target repeat an earlier row."""
    near_duplicates: Literal["collapse", "keep"] = "collapse"
    """Keep one row (the first by id) of each near-duplicate cluster with the same target."""
    conflicts: Literal["majority", "drop", "keep"] | None = None
    """Rows with the same input but different targets: keep the majority target, drop all, or keep.
    None: majority for classification (labels conflict); keep for generation and extraction, where
    different answers to one input are alternatives (trained on, and all used as references)."""
    pii: Literal["redact", "drop", "keep"] = "redact"
    """Replace personal data with typed placeholders ([EMAIL]…), drop the row, or keep with a warning."""
    too_long: Literal["drop", "truncate", "keep"] = "drop"
    """Rows over audit.max_tokens: drop them, or truncate the input to fit."""
    apply_reviews: bool = True
    """Apply corrections recorded by `tunewise review import`."""


class ModelConfig(_Strict):
    base: str
    """A bundled alias (smollm2-135m-instruct), a local Hugging Face model folder, or a .gguf path."""


class LoraConfig(_Strict):
    r: int = Field(8, gt=0)
    """LoRA rank: the inner size of each adapter's low-rank update."""
    alpha: int = Field(16, gt=0)
    """LoRA scaling: the update is multiplied by alpha / r."""
    dropout: float = Field(0.05, ge=0, lt=1)
    """Dropout on the adapter's input during training. Each adapted layer draws its own random mask over its
    input; on a CPU that was a fifth of the BBC demo's LoRA fit (its config sets 0, peft's default)."""
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    """The linear layers that get adapters: a list of module names, or all-linear."""


# The training methods and rung names are the table of rungs' (tunewise.rungspec).
Method = Literal[METHODS]
Weights = Literal[LORA, FULL]


class DpoConfig(_Strict):
    beta: float = Field(0.1, gt=0)
    """Strength of the pull towards the reference model (DPO's beta)."""
    weights: Weights = LORA
    """Train a LoRA adapter (the frozen base is the reference) or all weights (a frozen copy is)."""
    data: str | None = None
    """A JSONL file of {prompt, chosen, rejected} rows, relative to the project folder."""
    pairs_from_labels: bool = False
    """Classification only, opt-in: build pairs from the train split (chosen = the label,
    rejected = another label chosen with the seed) when no preference file is given."""


class KtoConfig(_Strict):
    beta: float = Field(0.1, gt=0)
    """Strength of the pull towards the reference model (KTO's beta)."""
    weights: Weights = LORA
    """Train a LoRA adapter (the frozen base is the reference) or all weights (a frozen copy is)."""
    data: str | None = None
    """A file of unpaired preference rows (prompt/completion or messages, and label true/false: is
    the answer desirable?), in any format the loader reads, relative to the project folder."""
    desirable_weight: float = Field(1.0, gt=0)
    """Weight of the desirable rows' loss (raise it when they are the fewer)."""
    undesirable_weight: float = Field(1.0, gt=0)
    """Weight of the undesirable rows' loss."""


class TrainConfig(_Strict):
    method: Method = LORA
    """The fine-tuning method (`tunewise train`, and the rungs' own training): the method of a fine-tuning
    rung of the table of rungs below."""
    epochs: float = Field(1.0, gt=0)
    """Passes over the train split (ignored when `max_steps` is set)."""
    max_steps: int = -1
    """Stop after this many optimizer steps (-1: train for `epochs`)."""
    batch_size: int = Field(8, gt=0)
    """Examples per optimizer micro-batch, per process."""
    grad_accum: int = Field(1, gt=0)
    """Micro-batches accumulated per optimizer step (effective batch = batch_size × grad_accum × processes)."""
    learning_rate: float = Field(2e-4, gt=0)
    """Peak learning rate of AdamW."""
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    """How the learning rate moves after warm-up."""
    warmup_steps: int = Field(0, ge=0)
    """Optimizer steps of linear warm-up from 0 to `learning_rate`."""
    weight_decay: float = Field(0.0, ge=0)
    """AdamW's decoupled weight decay."""
    max_length: int = Field(512, gt=8)
    """Longest training sequence in tokens (prompt + answer); see `length_policy` for longer ones. With
    task.type text, the window a document is cut into, in training and in scoring alike (windows overlap by
    one token, so every token is predicted once; the run says how many documents were cut)."""
    length_policy: Literal["error", "drop", "truncate-input"] = "error"
    """What happens to a training example longer than `max_length`: fail before training (error),
    leave it out with a warning naming how many (drop), or cut the prompt's input from the left
    end of the prompt so the answer and EOS stay whole (truncate-input). Not used by task.type text, whose
    documents are cut into windows of `max_length` instead."""
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
    """Seed of initialisation, dropout and example order."""
    precision: Literal["fp32", "bf16", "fp16", "auto"] = "fp32"
    """Mixed precision: bf16 where the hardware runs it natively (a GPU with bf16, or a CPU with
    AVX512-BF16 or AMX), fp16 on a CUDA GPU; checked before training. Master weights stay fp32.
    `auto`: bf16 where it runs natively, else fp32 (the run records which)."""
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
    shared_prefix: bool = True
    """Run the prompt prefix every row of a padded batch shares (system prompt, instruction) once per
    batch and let each row attend to that one copy: the same loss and gradients as computing it per
    row (a test checks both), less compute. With LoRA dropout the prefix's dropout draw is then
    shared by the batch's rows. Applies to full, lora, dora and qlora with sparse_logits."""
    padding_free: bool = False
    """Opt-in: pack each batch into one row with per-example position ids (no padding). The same
    batches and loss as padded training, less compute and memory (see BENCHMARKS.md)."""
    sampling: Literal["group_by_length", "random", "sequential"] = "group_by_length"
    """Order of training examples: shuffled in groups of similar length (less padding; different
    batches from a plain shuffle, so a slightly different run), shuffled, or in file order
    (reproducible across process counts; used to check DDP against one process)."""
    tensorboard: bool = True
    """Write TensorBoard event files under the run's logs/ folder."""
    mlflow_uri: str | None = None
    """Log params and metrics to MLflow at this tracking URI (sqlite:///path/mlflow.db, or an
    http(s) server; MLflow 3 refuses file stores unless MLFLOW_ALLOW_FILE_STORE=true); None: off."""
    allow_pickle: bool = False
    """Load or export pickle (.bin) weights; off because unpickling can run arbitrary code."""
    lora: LoraConfig = Field(default_factory=LoraConfig)
    dpo: DpoConfig = Field(default_factory=DpoConfig)
    kto: KtoConfig = Field(default_factory=KtoConfig)
    """KTO: unpaired preference (a desirable or undesirable answer per row), TRL's KTOTrainer."""

    @field_validator("save_steps")
    @classmethod
    def _save_on_eval(cls, v: int | None, info: ValidationInfo) -> int | None:
        eval_steps = info.data.get("eval_steps")
        if v is not None and eval_steps and v % eval_steps:
            raise ValueError(f"must be a multiple of eval_steps={eval_steps} (the best checkpoint needs an eval)")
        return v


class FormatConfig(_Strict):
    """What a well-formed generated answer looks like (format compliance); every check is optional."""

    min_words: int | None = Field(default=None, ge=0)
    """Answers shorter than this many words fail format compliance (None: no minimum)."""
    max_words: int | None = Field(default=None, gt=0)
    """Answers longer than this many words fail format compliance (None: no maximum)."""
    required_phrases: list[str] = Field(default_factory=list)
    """Phrases every answer must contain (case-insensitive)."""
    regex: str | None = None
    """A regular expression every answer must match (re.search)."""


class EvalConfig(_Strict):
    batch_size: int = Field(8, gt=0)
    """Prompts scored or generated together at evaluation."""
    max_new_tokens: int = Field(64, gt=0)
    """Longest generated answer (extraction and generation tasks)."""
    format: FormatConfig = Field(default_factory=FormatConfig)
    """Format compliance checks for generation tasks."""
    bootstrap: int = Field(1000, ge=100)
    """Bootstrap resamples behind every confidence interval."""
    max_test_examples: int | None = Field(default=None, gt=0)
    """Score every rung on a seeded, stratified subset of the test split (None: all of it)."""
    margin: float = Field(0.02, ge=0, lt=1)
    """Non-inferiority margin of the recommendation, in units of the primary metric (0.02: 2 points
    of accuracy). A cheaper rung is recommended over the best only when its paired difference to the
    best is shown above -margin (one-sided alpha 0.025, Holm-corrected over rungs; docs/decision.md)."""
    guard_margins: dict[str, float] = Field(default_factory=lambda: {"content_f1": 0.02, "groundedness": 0.02})
    """Guard metrics (higher is better) and their own margins: the recommended rung is overruled only
    when another rung is shown better on a guard metric by more than its margin (one-sided alpha 0.025,
    Holm-corrected over rungs and guard metrics). A guard is used only when every rung measured it."""
    timing_examples: int = Field(8, ge=0)
    """A rung's latency is the median and IQR of ms per example over the batches of its test pass; a rung
    that predicts the test split in fewer than 4 batches (one call) predicts this fixed, seeded test sample
    again instead (0: skip). ladder.json names the source of each rung's figure."""
    timing_repeats: int = Field(3, ge=1)
    """How many times the timing sample is predicted (rungs timed on it); median and IQR over the repeats."""
    precision: Literal["fp32", "bf16", "auto"] = "fp32"
    """Matmuls of every LLM rung's scoring and generation: fp32, or bf16 autocast where the hardware
    runs bf16 natively (checked before any rung runs); softmax and scores stay fp32. On a CPU with
    AVX512-BF16, bf16 matmuls run about twice as fast; BENCHMARKS.md shows the accuracy change.
    `auto`: bf16 where it runs natively, else fp32 (each run records which)."""
    primary: str | None = None
    """The metric that ranks rungs and decides the recommendation (None: the task's default:
    accuracy, field_f1, or content_f1 for generation). Any per-item metric the task reports, e.g.
    rouge_l, content_recall, groundedness, semantic_similarity, exact_match."""


class FewShotConfig(_Strict):
    k: int = Field(5, gt=0)
    """How many solved examples go into every prompt (fewer if the model's context cannot hold them)."""
    selection: Literal["random", "similar"] = "random"
    """`random`: one fixed, seeded set for every prompt, balanced over labels, so the examples are
    computed once as a shared KV-cache prefix (cheap on CPU). `similar`: the k train examples
    nearest to each input by MiniLM embedding; every prompt differs, so no shared cache (use on a
    GPU or for small test sets)."""
    max_example_tokens: int = Field(48, gt=0)
    """Truncate each example's input to this many tokens; short examples keep every call cheap."""
    seed: int = 0
    """Seed of the random example set (the first of ``sets``: the one saved and served)."""
    sets: int = Field(3, ge=1)
    """With `selection: random`, how many example sets (seeds seed, seed+1, ...) the ladder scores: the
    score of few-shot depends on the draw, so the report shows the mean, the spread and a CI over sets,
    and calls few-shot "as good" only when every set is (docs/decision.md). 1: one draw, as before."""
    calibrate: bool = True
    """Contextual calibration (Zhao et al. 2021): divide each label's probability by its probability
    for content-free inputs ("N/A", "", "[MASK]") under the same prompt. Applies to zero-shot and
    few-shot classification under likelihood scoring. On by default: on TREC question classification
    (a public corpus, 5 example sets per k) it halved the spread across sets and raised the mean
    (BENCHMARKS.md, "Few-shot across example draws"); false scores the raw label likelihoods."""


class EncoderConfig(_Strict):
    """The small encoder behind `embedding-classifier`, `encoder-finetune` and similarity few-shot."""

    model: str = "all-minilm-l6-v2"
    """A bundled alias (all-minilm-l6-v2) or a local sentence-transformers / BERT folder."""
    max_seq_length: int = Field(128, gt=8)
    """Truncate inputs to this many encoder tokens."""
    batch_size: int = Field(32, gt=0)
    """Texts embedded (or fine-tuned on) together."""
    C: float = Field(1.0, gt=0)
    """Inverse L2 strength of the embedding-classifier's logistic regression."""
    epochs: float = Field(1.0, gt=0)
    """Epochs of `encoder-finetune`."""
    learning_rate: float = Field(1e-4, gt=0)
    """Learning rate of `encoder-finetune` (AdamW, linear decay)."""
    seed: int = 0
    """Seed of the classifier head's initialisation and the example order."""


class RetrievalConfig(_Strict):
    """How the `rag` rung cuts `data.documents` into passages and how many it puts in a prompt."""

    chunk_words: int = Field(120, gt=10)
    """Longest passage, in words; paragraphs are packed whole up to it."""
    overlap_words: int = Field(30, ge=0)
    """Words shared by consecutive windows of a paragraph longer than `chunk_words`."""
    top_k: int = Field(3, gt=0)
    """Passages put into every prompt."""
    max_passage_tokens: int = Field(128, gt=0)
    """Truncate each passage in the prompt to this many tokens: RAG pays for its context on every call."""
    gold_field: str | None = None
    """A data field holding text that the passage answering the row contains (e.g. the glossary
    entry's heading); when set, the report gives the rag rung's retrieval recall@k."""


class CostConfig(_Strict):
    """Prices that turn the work a rung recorded (FLOPs, tokens, bytes read) into money. The ladder
    report, its recommendation and `tunewise estimate --break-even` all price with this one section. Set
    it to what you pay. A change here re-runs no rung: `tunewise report PROJECT --set cost.gpu=L4`
    re-prices the latest ladder."""

    usd_per_hour: float = Field(1.0, ge=0)
    """Price of the machine that serves (and, unless `train_usd_per_hour` says otherwise, trains), per
    hour: a cloud GPU or CPU instance. Latencies are measured on the machine the ladder ran on."""
    gpu: str | None = None
    """Price the work on this GPU of the catalogue (tunewise/gpus.yaml, or your copy in $TUNEWISE_HOME):
    prefill and training FLOPs at its peak and generated tokens by its memory bandwidth, each at the
    catalogue's stated utilisation; its hourly price replaces `usd_per_hour` unless you also set
    `usd_per_hour`. None: this CPU."""
    train_usd_per_hour: float | None = Field(default=None, ge=0)
    """Price of the training machine, per hour, when it differs from the serving one (None: the same)."""
    usd_per_1m_prompt_tokens: float = Field(0.0, ge=0)
    """Extra price per million prompt tokens, for a hosted model billed by the token (0: self-hosted)."""
    requests_per_month: int = Field(100_000, gt=0)
    """Expected traffic: ranks rungs by training + one month of serving in the recommendation, and turns a
    break-even volume into months."""
    gflops: float | None = Field(default=None, gt=0)
    """Sustained GFLOP/s of the CPU machine a request's (and a training run's) FLOPs are priced on when
    `gpu` is not set. None: measured once on this machine by a short matmul benchmark and cached in
    $TUNEWISE_HOME. Set it to price a machine other than the one the ladder runs on."""


class MonitorConfig(_Strict):
    """Thresholds of `tunewise monitor`. A window alarms when a test is significant after a
    Benjamini-Hochberg correction across that window's tests (at `alpha`, per window: never across
    windows, so the monitor is as sensitive on the thousandth window as on the first) AND its effect
    reaches the size below. Verdict: `retrain` (exit 3)
    when the estimated or measured accuracy fell by `max_accuracy_drop`, or the latest window has too
    many out-of-distribution inputs; `watch` (exit 4) on any other alarm; `stable` (exit 0)."""

    window: Literal["auto", "hour", "day", "week"] = "auto"
    """Time window of the trends; auto: the finest whose typical window holds `min_window` requests."""
    min_window: int = Field(30, ge=5)
    """Requests a window needs to be tested (smaller windows are shown, not tested); also the window
    size, in requests, of a log without times."""
    alpha: float = Field(0.05, gt=0, lt=1)
    """False-alarm rate per window: the tests of each window are corrected together (Benjamini-Hochberg),
    so an unchanged window alarms on its p-values with probability at most `alpha`, whatever the log's
    length (a correction over the whole log would make a long-running monitor ever less sensitive).
    Over many unchanged windows about `alpha` of them may pass the p-value step; the effect sizes
    below keep those from alarming."""
    reference_size: int = Field(300, ge=20)
    """Training rows (a seeded sample) the embedding test compares each window with."""
    kernel_rows: int = Field(500, ge=20)
    """Most rows of a window the embedding (kernel) test uses: a longer window is tested on a seeded
    sample of this size, so the kernel matrix stays (reference_size + kernel_rows)² whatever the traffic."""
    permutations: int = Field(2000, ge=100)
    """Permutations of the embedding test (raised when the window's correction needs more)."""
    min_mmd: float = Field(0.01, ge=0)
    """Smallest embedding shift (squared MMD, RBF kernel) that counts."""
    max_psi: float = Field(0.2, ge=0)
    """Predicted-label shift (population stability index) above which the label mix changed."""
    max_confidence_drop: float = Field(0.05, ge=0)
    """Drop of the mean top-label probability, against the frozen test split, that counts."""
    max_ood_rate: float = Field(0.1, gt=0, le=1)
    """Share of a window's inputs farther from the training data than 99% of training rows are
    from each other, above which the window is out of distribution."""
    max_length_ks: float = Field(0.25, gt=0, le=1)
    """Input-length shift (Kolmogorov-Smirnov distance of word counts) that counts."""
    max_new_vocab: float = Field(0.05, gt=0, le=1)
    """Share of words unseen in training, above the frozen test split's own share, that counts."""
    max_accuracy_drop: float = Field(0.05, gt=0, lt=1)
    """Estimated (CBPE) or measured accuracy this far below the ladder's figure (and significantly
    lower, after the window's correction) means retrain."""
    seed: int = 0
    """Seed of the reference sample, the permutation tests and the review export's random sample."""


class ServeConfig(_Strict):
    """`tunewise serve`: limits every request is held to, dynamic batching and the request log."""

    batch_wait_ms: float = Field(10.0, ge=0, le=1000)
    """How long the first request of a batch waits for others to join it: latency traded for throughput."""
    max_batch: int = Field(16, gt=0, le=512)
    """Most requests run in one batch."""
    max_queue: int = Field(256, gt=0)
    """Requests waiting for the model beyond this get 503 (retry later) instead of waiting for ever."""
    max_concurrency: int = Field(64, gt=0)
    """Requests open at once beyond this get 429."""
    max_body_bytes: int = Field(1_000_000, gt=0)
    """Largest request body accepted (bigger: HTTP 413)."""
    max_tokens: int = Field(256, gt=0)
    """The most new tokens a request may ask for (`max_tokens`); larger asks get 400."""
    max_prompt_chars: int = Field(20_000, gt=0)
    """Longest prompt accepted, in characters (longer: HTTP 400)."""
    redact_pii: bool = True
    """Replace e-mails, phone and card numbers, IBANs and keys with [TYPE] in the request log (data/pii.py);
    on by default, as the log holds what users sent."""
    log_inputs: bool = True
    """Keep each request's input and output in the request log (monitoring reads them)."""


class LabelingConfig(_Strict):
    """What a labelled row costs: `tunewise curve` weighs more labels against a bigger rung with it."""

    usd_per_row: float | None = Field(default=None, ge=0)
    """Price of labelling one more row (annotator time or a vendor's rate), in USD. Unset: the curve
    says how many rows the next point of quality needs, but not what they cost."""


class CurveConfig(_Strict):
    """`tunewise curve`: how each size of a learning curve is measured."""

    seeds: int = Field(3, ge=1)
    """Training runs per size of a rung that trains, each with its own seed (the subset drawn and the
    rung's own seed: seed, seed+1, ...); the curve's band includes their spread, not only the test
    split's. Prompting rungs are measured once."""


RUNGS = DEFAULT_RUNGS
RungName = Literal[NAMES]


class ProjectConfig(_Strict):
    name: str = "project"
    """A short name for the project, used in reports and as the prefix of served model ids."""
    task: TaskConfig
    data: DataConfig
    model: ModelConfig
    rungs: list[RungName] = Field(default_factory=lambda: list(RUNGS))
    """The rungs `tunewise ladder` runs, cheapest first (`--rungs` overrides)."""
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    prepare: PrepareConfig = Field(default_factory=PrepareConfig)
    few_shot: FewShotConfig = Field(default_factory=FewShotConfig)
    labeling: LabelingConfig = Field(default_factory=LabelingConfig)
    curve: CurveConfig = Field(default_factory=CurveConfig)
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    cost: CostConfig = Field(default_factory=CostConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)

    @model_validator(mode="after")
    def _rungs_run_on_the_task(self) -> ProjectConfig:
        # The table of rungs says which task types each rung runs on; say every misfit at once.
        task = self.task.type
        if bad := refused(self.rungs, task):
            raise ValueError(f"rungs: {', '.join(bad)} do not run on task.type {task} (rungs that do: "
                             f"{', '.join(runs_on(task))})")
        if refused([self.train.method], task):
            methods = [n for n in runs_on(task) if n in METHODS]
            raise ValueError(f"train.method: {self.train.method} does not train on task.type {task} (methods that "
                             f"do: {', '.join(methods)})")
        return self


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
    if not first["loc"]:  # a check across sections names its keys itself
        return f"{source}: {msg}"
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
        config = ProjectConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_describe(e, _blame(e, path, overrides or []))) from None
    check_paths(config, path)
    return config


def path_keys(config: ProjectConfig) -> list[tuple[str, str]]:
    """Every (key, path) of the config that names a file or folder of the project's own data.

    model.base and encoder.model are not here: models are shared between projects and often live
    in a cache outside any one of them.
    """
    d = config.data
    keys = [(f"data.files[{i}]", f) for i, f in enumerate(d.files)]
    keys += [("data.test_file", d.test_file), ("data.ood_test", d.ood_test), ("data.recent_test", d.recent_test),
             ("data.documents", d.documents),
             ("task.json_schema", config.task.json_schema), ("train.dpo.data", config.train.dpo.data),
             ("train.kto.data", config.train.kto.data)]
    return [(k, v) for k, v in keys if v]


def check_paths(config: ProjectConfig, source: Path) -> None:
    """Refuse a path that leaves the project folder, naming its key, unless data.allow_outside_paths allows it."""
    root = os.path.abspath(Path(source).parent)
    for key, value in path_keys(config):
        # Lexical, not resolved: a symlink the user placed inside the project is their choice.
        full = os.path.normpath(os.path.join(root, value))
        if full == root or full.startswith(root + os.sep):
            continue
        if Path(value).is_absolute() and config.data.allow_outside_paths:
            continue
        hint = ("give it as an absolute path to allow it" if config.data.allow_outside_paths
                else "move it into the project, or set data.allow_outside_paths: true and give an absolute path")
        raise ConfigError(f"{source}: {key}: {value!r} is outside the project folder {root} ({hint})")


def _blame(err: ValidationError, path: Path, overrides: list[str]) -> str:
    """The --set option that wrote the failing key, else the file: an error points where the value came from."""
    loc = [str(p) for p in err.errors()[0]["loc"]]
    for text in reversed(overrides):  # the last --set of a key wins, so it is the one to blame
        keys, _ = parse_override(text)
        if loc[: len(keys)] == keys or keys[: len(loc)] == loc:
            return f"--set {text}"
    return str(path)


def dump_config(config: ProjectConfig) -> str:
    """The resolved config as YAML, with credentials in URLs (mlflow_uri, say) replaced by ***."""
    from tunewise.workspace import redact_secrets

    return yaml.safe_dump(redact_secrets(config.model_dump(mode="json")), sort_keys=False, allow_unicode=True)
