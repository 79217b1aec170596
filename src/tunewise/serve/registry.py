"""Which rungs a server holds, under which model ids, and which loaded models they share.

A project serves the rungs of its ladder in use (tunewise.locate: the newest finished one); run
folders serve themselves. Model ids are
``<project name>/<rung>``: the ``model`` field of a request is looked up in this dict and never
turned into a path. The adapters of rungs whose table entry ``shares_base`` (lora, dora, ia3, dpo
and kto with LoRA weights) share one PEFT model per base and PEFT type (``load_adapter``;
``set_adapter`` per batch): peft holds adapters of one type per model, so LoRA and DoRA adapters
(both LoRA) share one, and IA3 adapters another, on a second copy of the base. The prompting rungs
run on the first copy with its adapters disabled. qlora (a quantised base), prefix / prompt tuning
(virtual tokens), full fine-tunes and the encoders load their own models.
"""

from __future__ import annotations

import json
import logging
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from tunewise.config import ConfigError, ProjectConfig
from tunewise.rungs.state import RungLoadError, project_of, read_manifest, run_config
from tunewise.rungspec import RUNGS

log = logging.getLogger(__name__)



class ServeError(ConfigError):
    """The server cannot start as asked (targets, host, token); the message says why."""


@dataclass
class Served:
    id: str
    rung: object
    config: ProjectConfig
    run_dir: Path
    task: str
    labels: list[str]
    adapter: str | None = None  # the PEFT adapter to activate on the shared model
    peft: object | None = None  # the shared PEFT model this rung runs on (a prompting rung: adapters off), if any
    base_key: str | None = None  # a prompting rung's shared base
    chat: bool = False  # measured on chat rows: a request's turns are rendered as the rows' were
    shared: tuple[list[int], object] | None = field(default=None, init=False, repr=False)  # set by prefix()

    def prefix(self) -> tuple[list[int], object]:
        """The tokens every prompt of this rung starts with (system prompt, instruction, fixed few-shot
        examples) and their KV cache, computed once and reused by every batch and join: the common
        start of two prompts with different inputs; ``([], None)`` if shorter than worth a forward, or if
        the rung's prompts are not the server's to feed (``prompt_reason``). A prompt that does not
        start with it (its tokens merge across the prefix's end, a request's own system turn) runs whole."""
        from tunewise.evaluate.decode import MIN_SHARED_PREFIX, cache_prefix, common_prefix_length, inference_precision
        from tunewise.rungs.saved import request_record

        if self.shared is None:
            ids, cache = [], None
            if prompt_reason(self.rung) is None:
                probes = self.rung.full_prompt_ids([request_record(text) for text in ("a", "zebra 7")])
                n = common_prefix_length(probes)
                ids = probes[0][:n] if n >= MIN_SHARED_PREFIX else []
            if ids:
                import torch

                with torch.inference_mode(), self.context(), inference_precision(self.rung.config.eval.precision):
                    self.rung.model.eval()
                    cache = cache_prefix(self.rung.model, ids)[1]
                log.info("%s: a prefix of %d tokens every prompt starts with is computed once and reused", self.id,
                         len(ids))
            self.shared = (ids, cache)
        return self.shared

    def context(self):
        """Select this rung's adapter on the shared model (or switch adapters off for a prompt rung)."""
        if self.peft is None:
            return nullcontext()
        if self.adapter is None:
            return self.peft.disable_adapter()
        self.peft.set_adapter(self.adapter)
        return nullcontext()


def prompt_reason(rung) -> str | None:
    """Why the server cannot feed ``rung``'s prompts to its model itself (a cached shared prefix, the
    decode engine): None when it can."""
    from tunewise.rungs.base import LabelScorer
    from tunewise.rungs.finetuned import FinetunedRung
    from tunewise.train.methods import PROMPT_LEARNING

    if getattr(rung, "method", None) in PROMPT_LEARNING:
        return f"{rung.method} keeps its own virtual tokens in the KV cache"
    if not (isinstance(rung, LabelScorer) and type(rung).predict in (LabelScorer.predict, FinetunedRung.predict)
            and type(rung).generate is LabelScorer.generate):
        return "the rung builds each prompt as it predicts (retrieval, its own decoding)"
    return None


def runs_of_project(project: Path) -> list[Path]:
    """The run folders of the project's ladder in use (tunewise.locate: the newest finished one)."""
    from tunewise import locate

    return locate.ladder(project).runs()


def expand_targets(targets: list[Path]) -> list[Path]:
    runs: list[Path] = []
    for t in targets:
        t = Path(t)
        if (t / "tunewise.yaml").exists():
            runs += runs_of_project(t)
        elif (t / "config.yaml").exists():
            runs.append(t)
        else:
            raise ServeError(f"{t}: neither a project (tunewise.yaml) nor a run folder (config.yaml)")
    if not runs:
        raise ServeError("nothing to serve: give a project folder or run folders")
    return runs


def load_served(targets: list[Path]) -> dict[str, Served]:
    """Every rung under its model id; adapters of one PEFT type on the same base share one loaded model."""
    from tunewise.rungs.saved import load_rung

    served: dict[str, Served] = {}
    models = SharedModels()
    chat: dict[tuple, bool] = {}  # per project and config: the rungs of one ladder share their dataset
    llm: set[str] = set()  # the model ids of rungs on a language model (the table's llm rungs)
    for run_dir in expand_targets(targets):
        try:
            manifest = read_manifest(run_dir)
            config = run_config(run_dir)
        except (RungLoadError, ConfigError) as e:
            raise ServeError(str(e)) from None
        name, project = manifest["rung"], project_of(run_dir)
        mid = f"{config.name}/{name}"
        if mid in served:
            log.warning("%s: %s already served from %s; keeping the first", run_dir, mid, served[mid].run_dir)
            continue
        weights = run_dir / manifest.get("weights", "")
        data_key = (str(project), config.model_dump_json(exclude={"rungs", "train"}))
        if data_key not in chat:  # fingerprinting hashes every data file: once per dataset, not per rung
            chat[data_key] = measured_on_chat(config, project)
        entry = Served(mid, None, config, run_dir, config.task.type, list(config.task.labels),
                       chat=chat[data_key])
        spec = RUNGS.get(name)  # None: an unknown rung, which load_rung names
        if spec is not None and spec.llm:
            llm.add(mid)
        if spec is not None and spec.shares_base and (weights / "adapter_config.json").exists():
            entry.rung, entry.peft = models.adapter(mid, name, config, project, run_dir, weights)
            entry.adapter = mid
        elif spec is not None and spec.prompting:
            entry.rung = load_rung(run_dir, project, base=models.base(config, project))
            entry.base_key = _key(config, project)
        else:
            entry.rung = load_rung(run_dir, project)
        served[mid] = entry
    # Adapters are injected into the base in place: prompting rungs on it run with them switched off.
    for entry in served.values():
        if entry.base_key is not None:
            entry.peft = models.on_base.get(entry.base_key)
    bf16_weights(served, llm)
    return served


def bf16_weights(served: dict[str, Served], llm: set[str]) -> None:
    """Store the linear weights of each loaded LLM in bf16 when every rung on it is an ``llm`` rung
    computing in bf16 (eval.precision): the same results, without autocast's cast of every weight on
    every call."""
    from tunewise.evaluate.decode import resolve_precision, store_bf16

    on: dict[int, tuple[object, list[Served]]] = {}
    for entry in served.values():
        model = getattr(entry.rung, "model", None)
        if model is None:
            continue
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        on.setdefault(id(base), (model, []))[1].append(entry)
    for model, entries in on.values():
        bf16 = [e.id in llm and resolve_precision(e.config.eval.precision) == "bf16" for e in entries]
        if all(bf16):
            n = store_bf16(model)
            log.info("%s: %d linear weights kept in bf16 (its rungs compute in bf16)",
                     ", ".join(e.id for e in entries), n)
        elif any(bf16):  # not an error, but said: these rungs decode about half as fast as alone
            log.warning("%s share one loaded model with %s, which do not compute in bf16: its weights stay fp32, "
                        "and the bf16 rungs cast them on every call", ", ".join(e.id for e, b in zip(entries, bf16) if b),
                        ", ".join(e.id for e, b in zip(entries, bf16) if not b))


def measured_on_chat(config: ProjectConfig, project: Path) -> bool:
    """Whether the rung was measured on chat rows (their real turns through the template): then a
    request's messages are rendered the same way, not reduced to its last user turn."""
    if config.data.schema_ is not None:
        return config.data.schema_ == "chat"
    from tunewise.data.prepare import find_prepared, read_part

    folder = find_prepared(config, project)
    if folder is None:  # not a silent guess: say which way requests will be read
        log.warning("%s: no prepared dataset matches this config, so whether its rungs were measured on chat "
                    "rows is unknown; chat requests are answered from their last user turn", project)
        return False
    rows = read_part(folder, "test")[:1]
    return bool(rows and rows[0].meta.get("messages"))


def _key(config: ProjectConfig, project: Path) -> str:
    from tunewise.models.load import resolve

    return str(resolve(config.model.base, project))


class SharedModels:
    """The loaded models a server's rungs share: one copy of each base for its prompting rungs, and
    one PEFT model per base and PEFT type for the adapters that share a base.

    peft refuses to hold adapters of two types in one model, and an adapter is injected into the
    modules of the base it wraps, so the first PEFT type on a base wraps the copy the prompting rungs
    use and each further type gets a copy of its own."""

    def __init__(self):
        self.bases: dict[str, tuple] = {}  # base key -> (model, tokenizer, folder), the prompting rungs' copy
        self.peft: dict[tuple[str, str], tuple] = {}  # (base key, PEFT type) -> (its PEFT model, base folder)
        self.on_base: dict[str, object] = {}  # base key -> the PEFT model that wraps the prompting rungs' copy

    def base(self, config: ProjectConfig, project: Path) -> tuple:
        from tunewise.models.load import load

        key = _key(config, project)
        if key not in self.bases:
            self.bases[key] = load(config.model.base, project)
        return self.bases[key]

    def adapter(self, mid: str, name: str, config: ProjectConfig, project: Path, run_dir: Path, weights: Path):
        """(the rung ``name`` on the PEFT model its adapter shares, that PEFT model)."""
        from peft import PeftModel

        from tunewise.models.load import load, load_tokenizer
        from tunewise.rungs.base import RunContext
        from tunewise.rungs.table import rung_class
        from tunewise.train.common import check_same_template

        key, kind = _key(config, project), peft_type(weights)
        if (key, kind) in self.peft:
            peft, folder = self.peft[(key, kind)]
            peft.load_adapter(weights, adapter_name=mid, is_trainable=False)
        else:
            if key in self.on_base:  # the shared copy holds adapters of another type: this type gets its own
                model, _, folder = load(config.model.base, project)
            else:
                model, _, folder = self.base(config, project)
            peft = PeftModel.from_pretrained(model, weights, adapter_name=mid, is_trainable=False)
            self.peft[(key, kind)] = (peft, folder)
            self.on_base.setdefault(key, peft)
        tok = load_tokenizer(weights)
        check_same_template(weights, tok)
        return rung_class(name)(config, RunContext(project, run_dir, base=(peft, tok, folder))), peft


def peft_type(weights: Path) -> str:
    """The PEFT type of the adapter folder ``weights`` (LORA for LoRA and DoRA, IA3, ...)."""
    return json.loads((weights / "adapter_config.json").read_text(encoding="utf-8")).get("peft_type", "")
