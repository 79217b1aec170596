"""The one way every command gets its data: the prepared dataset that matches the config.

`ladder`, `train`, `sweep` and `launch` all call ``resolve_splits``. It never re-reads the raw
files on its own: it loads the dataset `tunewise prepare` wrote for this very config and data
(same fingerprint), and when there is none it prepares one now — cleaned, redacted, split without
leakage, with its data card — says so in one line and records it in the returned ``Splits``
(``auto_prepared``, ``note``), which the caller writes into its own output. When preparing fails
the error says why, in one line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tunewise import workspace as ws
from tunewise.config import ProjectConfig
from tunewise.core import ProgressFn, Record, no_progress
from tunewise.data.frozen import summary_lines
from tunewise.data.load import DataError, Reject
from tunewise.data.prepare import find_prepared, prepare_project, read_part, read_rejects
from tunewise.data.split import by_target, no_strata, records_hash, subsample

log = logging.getLogger(__name__)


@dataclass
class Splits:
    train: list[Record]
    val: list[Record]
    test: list[Record]
    rejects: list[Reject]
    test_hash: str
    dataset_dir: Path
    ood: list[Record] = field(default_factory=list)
    dataset_hash: str = ""
    auto_prepared: bool = False
    """True when no prepared dataset matched the config and this call prepared one."""
    note: str = ""
    """The one line said about how the data was resolved ('' when a prepared dataset matched)."""
    prepared_by: str = ""
    """What prepared the dataset, from its manifest: `tunewise prepare` or the command that had to."""
    recent: list[Record] = field(default_factory=list)
    """Labelled recent production requests (data.recent_test), scored beside the frozen test split."""
    frozen_split: dict = field(default_factory=dict)
    """The manifest's record of the split against earlier ones (kept/new/moved, epoch, resplit)."""
    project: Path | None = None
    """The project the dataset belongs to: outputs record its folder relative to it."""

    def record(self, with_test: bool = True) -> dict:
        """What an output (ladder.json, lineage.json, sweep.json) records about the data it used."""
        where = ws.stored(self.project, self.dataset_dir) if self.project is not None else str(self.dataset_dir)
        out = {"dir": where, "hash": self.dataset_hash, "auto_prepared": self.auto_prepared,
               "prepared_by": self.prepared_by, "note": self.note, "frozen_split": self.frozen_split,
               "counts": {"train": len(self.train), "val": len(self.val), "rejected": len(self.rejects)}}
        if with_test:  # a sweep never looks at the test split, not even its size
            out["test_hash"] = self.test_hash
            out["counts"].update(test=len(self.test), ood=len(self.ood), recent=len(self.recent))
        return out


def scored(config: ProjectConfig, records: list[Record]) -> list[Record]:
    """The rows of a test (or OOD) split that ``config`` scores: ``eval.max_test_examples`` of them, a
    seeded subset stratified by label for classification. Its ``records_hash`` is the test split's
    identity that ladder.json records and the monitor checks."""
    key = by_target if config.task.type == "classification" else no_strata
    return subsample(records, config.eval.max_test_examples, config.data.seed, key)


def resolve_splits(config: ProjectConfig, project: Path, command: str = "tunewise",
                   say: Callable[[str], None] | None = None, progress: ProgressFn = no_progress) -> Splits:
    """The project's train/val/test (and OOD) splits for ``config``, from a prepared dataset.

    ``eval.max_test_examples`` takes a seeded subset of the test and OOD splits (stratified by
    label for classification). An empty test split is refused here, before any work.
    """
    project = Path(project)
    say = say or log.warning
    folder, note = find_prepared(config, project), ""
    if folder is None:
        try:
            folder, manifest = prepare_project(config, project, origin=f"`{command}` (no prepared dataset matched its config)",
                                               progress=progress)
        except DataError as e:
            raise DataError(f"no prepared dataset matches this config and preparing one failed: {e}") from None
        c = manifest["counts"]
        note = (f"no prepared dataset matches this config; prepared {manifest['hash'][:16]} (train {c['train']}, "
                f"val {c['val']}, test {c['test']}, rejected {c['rejected']}) in {folder}")
        lines = summary_lines(manifest["frozen_split"])  # a fresh split says why; otherwise what the test kept
        how = lines[-1] if manifest["frozen_split"]["fresh"] else next((x for x in lines if x.startswith("test:")), "")
        note += f"; {how}" if how else ""
        say(note)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    train, val, test, ood = (read_part(folder, n) for n in ("train", "val", "test", "ood"))
    if not test:
        raise DataError(f"{folder}: the test split is empty (train {len(train)}, val {len(val)}, test 0); "
                        "nothing could be scored: add data or raise data.split.test, then run `tunewise prepare`")
    if not train:
        raise DataError(f"{folder}: the train split is empty (train 0, val {len(val)}, test {len(test)}); add data")
    test, ood = scored(config, test), scored(config, ood)
    return Splits(train, val, test, read_rejects(folder), records_hash(test), folder, ood,
                  manifest.get("hash", ""), bool(note), note, manifest.get("prepared_by", "tunewise prepare"),
                  read_part(folder, "recent_test"), manifest.get("frozen_split", {}), project)
