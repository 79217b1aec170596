"""The table of rungs: every rung declared once, as plain data.

Each entry says what a rung is (its name, what it needs, the task types it runs on, whether it
trains and with which method, how its weights are saved and whether the server may put them on a
shared base); the entries are listed cheapest first, so a rung's cost rank is its place here (the
recommendation breaks cost ties by it). The class of each rung is in ``tunewise.rungs.table``, which
also builds rungs; this module imports nothing, so the config (which validates rung and method
names), training and every stage can read it.

Adding a rung: one entry here and one class listed in ``tunewise.rungs.table``. A rung name as a
string literal anywhere else in ``src`` is a smell: use the constants below or ask the table.
"""

from __future__ import annotations

from dataclasses import dataclass

ZERO_SHOT = "zero-shot"
FEW_SHOT = "few-shot"
RAG = "rag"
EMBEDDING_CLASSIFIER = "embedding-classifier"
ENCODER_FINETUNE = "encoder-finetune"
PROMPT_TUNING = "prompt-tuning"
PREFIX = "prefix"
IA3 = "ia3"
LORA = "lora"
DORA = "dora"
QLORA = "qlora"
FULL = "full"
DPO = "dpo"
KTO = "kto"

TEXT = "text"
"""The task of a plain-text corpus: continued pre-training, scored by perplexity."""
TASK_TYPES = ("classification", "extraction", "generation", TEXT)
CLASSIFICATION = frozenset({"classification"})
LABELLED = frozenset({"classification", "extraction", "generation"})
"""The tasks whose rows hold an answer (a target) for each input: what prompts and classifiers need."""
WITH_TEXT = LABELLED | {TEXT}
"""The rungs that also run on a plain-text corpus: the base model as it is, and the fine-tuning methods
tested there with a causal-LM loss on the whole text (lora, full)."""

# What a rung may need beyond the base model and the task, and the setting that provides it.
NEEDS = {
    "labelled-rows": "the labelled train split",
    "documents": "data.documents (a folder of .txt/.md files to retrieve from)",
    "encoder": "encoder.model (a sentence encoder folder)",
    "preference": "train.dpo.data (prompt/chosen/rejected rows), or train.dpo.pairs_from_labels on classification",
    "unpaired-preference": "train.kto.data (prompt/completion rows labelled desirable or not)",
}

# PEFT adapter types (peft's PeftType values, as adapter_config.json spells them).
PEFT_LORA, PEFT_IA3, PEFT_PREFIX, PEFT_PROMPT = "LORA", "IA3", "PREFIX_TUNING", "PROMPT_TUNING"


@dataclass(frozen=True)
class RungSpec:
    name: str
    summary: str
    """One line: what the rung does (docs/config.md's table of rungs)."""
    trains: bool = False
    """Learns from the train rows: `tunewise curve` fits it at growing sizes (else it is measured once)."""
    method: str | None = None
    """The `train.method` it fine-tunes the base LLM with (None: no LLM fine-tuning)."""
    prompting: bool = False
    """The base LLM with a prompt, nothing trained."""
    task_types: frozenset[str] = LABELLED
    """The task types it runs on (checked when the config loads and before any rung runs)."""
    needs: frozenset[str] = frozenset()
    """Keys of NEEDS: what must be there before it runs."""
    adapter: str | None = None
    """The PEFT type its trained weights are saved as (with LoRA weights for dpo and kto); None: no adapter."""
    shares_base: bool = False
    """The server loads its adapter onto the one copy of the base model it shares with the other adapters
    of the same PEFT type (peft keeps one type per model); False: it loads its own model."""

    @property
    def llm(self) -> bool:
        """Runs on the base LLM (prompting or fine-tuned), not on the sentence encoder."""
        return self.prompting or self.method is not None

    @property
    def cost_rank(self) -> int:
        """Its place in the table, cheapest first."""
        return list(RUNGS).index(self.name)


def _fine_tune(name: str, summary: str, adapter: str | None, shares_base: bool = False,
               needs: frozenset[str] = frozenset({"labelled-rows"}), task_types: frozenset[str] = LABELLED) -> RungSpec:
    return RungSpec(name, summary, trains=True, method=name, task_types=task_types, needs=needs, adapter=adapter,
                    shares_base=shares_base)


RUNGS: dict[str, RungSpec] = {s.name: s for s in (
    RungSpec(ZERO_SHOT, "the instruction and the input through the base model's chat template (text: the base "
             "model's perplexity on the corpus, nothing trained)", prompting=True, task_types=WITH_TEXT),
    RungSpec(FEW_SHOT, "k solved train examples before the input (few_shot.selection: random or similar)",
             prompting=True, needs=frozenset({"labelled-rows"})),
    RungSpec(RAG, "the passages retrieved from data.documents before the input", prompting=True,
             needs=frozenset({"documents", "encoder"})),
    RungSpec(EMBEDDING_CLASSIFIER, "a logistic regression on frozen sentence-encoder embeddings", trains=True,
             task_types=CLASSIFICATION, needs=frozenset({"labelled-rows", "encoder"})),
    RungSpec(ENCODER_FINETUNE, "the sentence encoder fine-tuned end to end with a classification head",
             trains=True, task_types=CLASSIFICATION, needs=frozenset({"labelled-rows", "encoder"})),
    _fine_tune(PROMPT_TUNING, "learned virtual tokens before the input (PEFT prompt tuning)", PEFT_PROMPT),
    _fine_tune(PREFIX, "learned key/value prefixes in every layer (PEFT prefix tuning)", PEFT_PREFIX),
    _fine_tune(IA3, "learned scaling vectors on attention and MLP activations (PEFT IA3)", PEFT_IA3,
               shares_base=True),
    _fine_tune(LORA, "low-rank adapters on the linear layers (PEFT LoRA)", PEFT_LORA, shares_base=True,
               task_types=WITH_TEXT),
    _fine_tune(DORA, "weight-decomposed low-rank adapters (PEFT DoRA, a LoRA variant)", PEFT_LORA,
               shares_base=True),
    _fine_tune(QLORA, "LoRA over a 4- or 8-bit quantised base (bitsandbytes); served on its own quantised base",
               PEFT_LORA),
    _fine_tune(FULL, "every weight of the base model trained", None, task_types=WITH_TEXT),
    _fine_tune(DPO, "direct preference optimisation (TRL) on chosen/rejected pairs, LoRA or full weights",
               PEFT_LORA, shares_base=True, needs=frozenset({"preference"})),
    _fine_tune(KTO, "KTO (TRL) on unpaired desirable/undesirable answers, LoRA or full weights", PEFT_LORA,
               shares_base=True, needs=frozenset({"unpaired-preference"})),
)}

NAMES = tuple(RUNGS)
"""Every rung name, cheapest first."""
METHODS = tuple(s.method for s in RUNGS.values() if s.method is not None)
"""The training methods (`train.method`)."""
DEFAULT_RUNGS = (ZERO_SHOT, LORA)
"""The rungs `tunewise ladder` runs when the config names none."""


def refused(names, task_type: str) -> list[str]:
    """The rungs of ``names`` that do not run on ``task_type`` (unknown names are left to the caller)."""
    return [n for n in names if n in RUNGS and task_type not in RUNGS[n].task_types]


def runs_on(task_type: str) -> list[str]:
    """The rungs that run on ``task_type``, cheapest first."""
    return [n for n, s in RUNGS.items() if task_type in s.task_types]


def spec(name: str) -> RungSpec:
    """The table's entry for ``name``; KeyError naming the known rungs."""
    try:
        return RUNGS[name]
    except KeyError:
        raise KeyError(f"unknown rung '{name}' (known: {', '.join(NAMES)})") from None

