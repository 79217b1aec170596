"""Which dataset, ladder and run a command uses: one rule each, said in one line and recorded.

- **The dataset**: the folder `tunewise prepare` wrote for this config and data (the same fingerprint:
  ``data/prepare.find_prepared``). Its test split is the rows this config scores
  (``eval.max_test_examples`` applied as the ladder applies it, ``data/resolve.scored``), named by
  their sha256 (``test_hash``).
- **The ladder**: the newest *finished* ladder report of the project. Finished: its
  ``.tunewise/reports/<time>/ladder.json`` reads and its status is ``complete`` or ``partial`` (every
  rung ran; some may have failed). A folder without ladder.json (a ladder still running, or killed),
  an unreadable one and an ``interrupted`` ladder (Ctrl-C) are passed over, and the error or the
  line says so. Newest by folder name, the time the report was made, never by modification time,
  which a copy or a checkout changes. A folder given by hand (`tunewise report --run`) is used as
  given, when it holds a ladder.json.
- **A run**: a rung of that ladder. Its folder is what ladder.json records, read back with
  ``workspace.resolve``. A run given by its folder (``tunewise export RUN``, a run folder served
  directly) is described by the newest finished ladder that lists it.

serve, monitor, export, report, ui, curve and ``estimate --break-even`` all call this module; each
prints ``line()`` and writes ``record()`` into what it outputs (ladder.json, the server's
``/v1/models`` and ``serve/served.json``, monitor.json, export.json). Paths in artefacts are stored
relative to the project (``workspace.stored``) and read back in one place (``workspace.resolve``).

`monitor` uses the ladder the server recorded for the monitored model in ``served.json`` beside the
request log (else this rule's ladder) and refuses, naming both sha256 hashes, when that ladder's
test split is not the dataset's (``check_same_test``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from tunewise import workspace as ws
from tunewise.config import ConfigError, ProjectConfig

FINISHED = ("complete", "partial")
SERVED = "served.json"


class LocateError(ConfigError):
    """No dataset or ladder fits the rule, or the two disagree; the message says what was looked for."""


def _short(sha: str | None) -> str:
    return f"{sha[:8]}…" if sha else "unknown"


# ---------------------------------------------------------------- the dataset

@dataclass(frozen=True)
class Dataset:
    project: Path
    folder: Path
    hash: str
    test_hash: str
    n_test: int

    def line(self) -> str:
        return (f"using dataset {ws.stored(self.project, self.folder)}/ "
                f"(test split {self.n_test} rows, sha256 {_short(self.test_hash)})")

    def record(self) -> dict:
        return {"dir": ws.stored(self.project, self.folder), "hash": self.hash, "test_hash": self.test_hash,
                "n_test": self.n_test}


def dataset(config: ProjectConfig, project: Path) -> Dataset | None:
    """The dataset prepared for this config and data, or None when none was prepared."""
    from tunewise.data.prepare import find_prepared, read_part
    from tunewise.data.resolve import scored
    from tunewise.data.split import records_hash

    folder = find_prepared(config, Path(project))
    if folder is None:
        return None
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    test = scored(config, read_part(folder, "test"))
    return Dataset(Path(project), folder, manifest.get("hash", folder.name), records_hash(test), len(test))


# ---------------------------------------------------------------- the ladder

@dataclass(frozen=True)
class Ladder:
    project: Path
    folder: Path
    data: dict
    skipped: tuple[str, ...] = ()
    """Newer report folders passed over, each with why (for the line a command prints)."""

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def test_hash(self) -> str | None:
        return self.data.get("test_hash")

    @property
    def status(self) -> str:
        return self.data.get("status", "complete")

    def rungs(self) -> list[dict]:
        return list(self.data.get("rungs", []))

    def rung(self, name: str) -> dict | None:
        return next((r for r in self.rungs() if r.get("name", r.get("rung")) == name), None)

    def run_dir(self, entry: dict) -> Path | None:
        return ws.resolve(self.project, entry["run_dir"]) if entry.get("run_dir") else None

    def runs(self) -> list[Path]:
        return [p for p in (self.run_dir(r) for r in self.rungs()) if p is not None]

    def lists(self, run_dir: Path) -> dict | None:
        """This ladder's entry for ``run_dir``, or None."""
        want = Path(run_dir).resolve()
        return next((r for r in self.rungs() if r.get("run_dir") and self.run_dir(r).resolve() == want), None)

    def line(self, why: str = "the newest finished ladder") -> str:
        passed = f"; passed over {', '.join(self.skipped)}" if self.skipped else ""
        return (f"using ladder {ws.stored(self.project, self.folder)}/ ({why}, {self.status}; "
                f"test split sha256 {_short(self.test_hash)}{passed})")

    def record(self) -> dict:
        dataset = self.data.get("dataset") or {}
        return {"report": ws.stored(self.project, self.folder), "status": self.status,
                "test_hash": self.test_hash, "dataset_hash": dataset.get("hash")}


def _read(folder: Path) -> tuple[dict | None, str]:
    """(ladder.json, '') for a finished ladder, else (None or the ladder, why it is not used)."""
    path = folder / "ladder.json"
    if not path.exists():
        return None, "no ladder.json (running, or stopped before its report)"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, f"ladder.json unreadable ({type(e).__name__})"
    if not isinstance(data, dict) or not isinstance(data.get("rungs"), list):
        return None, "ladder.json has no 'rungs' list"
    status = data.get("status", "complete")
    if status not in FINISHED:
        return data, f"status {status}"
    return data, ""


def _reports(project: Path) -> list[Path]:
    root = ws.workspace(project) / "reports"
    return sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: p.name, reverse=True) if root.is_dir() else []


def finished_ladders(project: Path):
    """Every finished ladder of the project, newest first, each with the newer folders passed over."""
    project, skipped = Path(project), []
    for folder in _reports(project):
        data, why = _read(folder)
        if why:
            skipped.append(f"{folder.name} ({why})")
            continue
        yield Ladder(project, folder, data, tuple(skipped))


def find_ladder(project: Path) -> Ladder | None:
    """The ladder every command uses (the newest finished one), or None when there is none."""
    return next(finished_ladders(project), None)


def ladder(project: Path, folder: Path | None = None) -> Ladder:
    """The ladder a command uses: ``folder`` when given, else the newest finished one. LocateError
    (exit 2) naming what was looked for when there is none."""
    project = Path(project)
    if folder is not None:
        data, why = _read(Path(folder))
        if data is None:
            raise LocateError(f"{folder}: not a saved ladder: {why}")
        return Ladder(project, Path(folder), data)
    found = find_ladder(project)
    if found is None:
        passed = [f"{p.name} ({_read(p)[1]})" for p in _reports(project)]
        seen = f": passed over {', '.join(passed[:5])}" if passed else ""
        raise LocateError(f"{project}: no saved ladder to use: {ws.workspace(project) / 'reports'} holds no finished "
                          f"ladder.json (status {' or '.join(FINISHED)}){seen}; run `tunewise ladder {project}` first")
    return found


def ladder_of_run(run_dir: Path) -> Ladder | None:
    """The newest finished ladder of the run's project that lists ``run_dir``, or None."""
    from tunewise.rungs.state import project_of

    return next((lad for lad in finished_ladders(project_of(run_dir)) if lad.lists(run_dir)), None)


def check_same_test(ladder: Ladder, data: Dataset) -> None:
    """Refuse when ``ladder`` was measured on another test split than ``data``'s: its figures and its
    rungs' test predictions would describe other rows."""
    if ladder.test_hash != data.test_hash:
        raise LocateError(
            f"ladder {ws.stored(ladder.project, ladder.folder)}/ was measured on test split sha256 "
            f"{ladder.test_hash}, but the dataset {ws.stored(data.project, data.folder)}/ prepared for this config "
            f"has test split sha256 {data.test_hash}: the ladder's calibration does not describe these rows. "
            "Run `tunewise ladder` on this data and serve its rungs, or give the config (--set) the ladder ran with")


# ---------------------------------------------------------------- what a server serves

def served_path(log: Path) -> Path:
    """The record of what a server serves, beside its request log."""
    return Path(log).parent / SERVED


def served_record(run_dir: Path) -> dict:
    """What the server's metadata says about one served run: its folder and the ladder that measured it."""
    from tunewise.rungs.state import project_of

    project = project_of(run_dir)
    found = ladder_of_run(run_dir)
    return {"run": ws.stored(project, run_dir), "ladder": found.record() if found else None}


def write_served(log: Path, models: dict[str, dict]) -> Path:
    """``served.json`` beside ``log``: each model id's run and ladder (as ``served_record``), so the
    monitor of that log calibrates on the very ladder the server loaded."""
    return ws.write_json(served_path(log), {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                            "models": models})


def monitored_ladder(project: Path, log: Path, name: str, rungs: list[str]) -> tuple[Ladder | None, str]:
    """(ladder, why it is the one) for monitoring ``log`` of project ``name``: the ladder the server
    recorded in served.json beside the log for the monitored rungs (all the project's models when the
    log names none) when that is one ladder, else the newest finished one."""
    project = Path(project)
    path = served_path(log)
    try:
        models = json.loads(path.read_text(encoding="utf-8")).get("models", {}) if path.is_file() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        models = {}
    ids = [f"{name}/{r}" for r in rungs] if rungs else [m for m in models if m.startswith(f"{name}/")]
    entries = [models[m] for m in ids if m in models]
    reports = {(e.get("ladder") or {}).get("report") for e in entries if isinstance(e, dict)}
    if len(reports) == 1 and None not in reports:
        recorded = ws.resolve(project, reports.pop())
        data, why = _read(recorded)
        if data is None:
            raise LocateError(f"{path}: the server recorded ladder {recorded}, which is not a saved ladder: {why}")
        return Ladder(project, recorded, data), f"the ladder the server loaded ({ws.stored(project, path)})"
    return find_ladder(project), "the newest finished ladder"
