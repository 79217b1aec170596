"""Which rungs a server holds, under which model ids, and one shared base model per base.

A project serves the rungs of its ladder in use (tunewise.locate: the newest finished one); run
folders serve themselves. Model ids are
``<project name>/<rung>``: the ``model`` field of a request is looked up in this dict and never
turned into a path. LoRA-family adapters (lora, dora, ia3, dpo adapters) on the same base share one
PEFT model (``load_adapter``; ``set_adapter`` per batch); prompting rungs on that base run with
the adapters disabled. qlora (a quantised base), prefix / prompt tuning (virtual tokens), full
fine-tunes and the encoders load their own models.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from tunewise.config import ConfigError, ProjectConfig
from tunewise.rungs.state import RungLoadError, project_of, read_manifest, run_config

log = logging.getLogger(__name__)

SHARED_ADAPTERS = {"lora", "dora", "ia3", "dpo"}
PROMPTING = {"zero-shot", "few-shot", "rag"}


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
    peft: object | None = None  # the shared PEFT model this rung runs on, if any
    base_key: str | None = None  # a prompting rung's shared base
    chat: bool = False  # measured on chat rows: a request's turns are rendered as the rows' were

    def context(self):
        """Select this rung's adapter on the shared model (or switch adapters off for a prompt rung)."""
        if self.peft is None:
            return nullcontext()
        if self.adapter is None:
            return self.peft.disable_adapter()
        self.peft.set_adapter(self.adapter)
        return nullcontext()


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
    """Every rung under its model id; adapters on the same base share one loaded model."""
    from tunewise.rungs.saved import load_rung

    served: dict[str, Served] = {}
    bases: dict[str, tuple] = {}
    shared: dict[str, object] = {}
    chat: dict[tuple, bool] = {}  # per project and config: the rungs of one ladder share their dataset
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
        if name in SHARED_ADAPTERS and (weights / "adapter_config.json").exists():
            entry.rung, entry.peft = _shared_adapter(mid, name, config, project, run_dir, weights, bases, shared)
            entry.adapter = mid
        elif name in PROMPTING:
            base = _base(config, project, bases)
            entry.rung = load_rung(run_dir, project, base=base)
            entry.base_key = _key(config, project)
        else:
            entry.rung = load_rung(run_dir, project)
        served[mid] = entry
    # Adapters are injected into the base in place: prompting rungs on it run with them switched off.
    for entry in served.values():
        if entry.base_key is not None:
            entry.peft = shared.get(entry.base_key)
    return served


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


def _base(config: ProjectConfig, project: Path, bases: dict) -> tuple:
    from tunewise.models.load import load

    key = _key(config, project)
    if key not in bases:
        bases[key] = load(config.model.base, project)
    return bases[key]


def _shared_adapter(mid, name, config, project, run_dir, weights, bases, shared):
    from peft import PeftModel

    from tunewise.models.load import load_tokenizer
    from tunewise.rungs.finetuned import FinetunedRung
    from tunewise.train.common import check_same_template

    key = _key(config, project)
    model, _, folder = _base(config, project, bases)
    if key not in shared:
        shared[key] = PeftModel.from_pretrained(model, weights, adapter_name=mid, is_trainable=False)
    else:
        shared[key].load_adapter(weights, adapter_name=mid, is_trainable=False)
    tok = load_tokenizer(weights)
    check_same_template(weights, tok)
    rung = FinetunedRung(config, (shared[key], tok, folder), run_dir, method=name, project=project)
    return rung, shared[key]
