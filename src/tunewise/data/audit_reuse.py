"""Which saved audit still describes the data: a fingerprint of what an audit reads, and the lookup.

An audit depends on the bytes of the files it reads, the command-line flags that pick fields and
files, the config keys that change how rows are read or checked, and the version of the checks. Its
fingerprint is stored in audit.json, so a later command (``review export``) reuses the newest audit
whose fingerprint matches instead of auditing again.
"""

from __future__ import annotations

import json
from pathlib import Path

from tunewise import workspace as ws
from tunewise.data.audit_checks import CHECK_NAMES
from tunewise.data.dedup import MEASURE


def audit_fingerprint(project: Path, config, data: list[str] | None = None, test_file: str | None = None,
                      input_field: str | None = None, target_field: str | None = None,
                      max_tokens: int | None = None) -> str:
    """sha256 of everything an audit of ``project`` with these flags reads (flags as given, None if not).

    Files named by flags are relative to the working directory, the config's to the project (as the
    audit reads them). Out: keys that change prompts, training or scoring but not the rows.
    """
    project = Path(project)
    files = [Path(d) for d in data] if data else [project / f for f in (config.data.files if config else [])]
    test = Path(test_file) if test_file else (project / config.data.test_file if config and config.data.test_file
                                               else None)
    read = [*files, *([test] if test else [])]
    parts = {
        "files": {str(f): ws.sha256_file(f) if f.is_file() else None for f in read},
        "flags": {"data": data, "test": test_file, "input_field": input_field, "target_field": target_field,
                  "max_tokens": max_tokens},
        "config": None if config is None else {
            "task": {"type": config.task.type, "input_field": config.task.input_field,
                     "target_field": config.task.target_field, "labels": list(config.task.labels)},
            "data": {"schema": config.data.schema_, "id_field": config.data.id_field,
                     "sharegpt": config.data.sharegpt.model_dump(),
                     "annotator_field": config.data.annotator_field},
            "audit": config.audit.model_dump(mode="json"), "model": config.model.base,
        },
        "checks": [*CHECK_NAMES, MEASURE, ws.package_versions(["tunewise"]).get("tunewise")],
    }
    return ws.sha256_bytes(json.dumps(parts, sort_keys=True, default=str).encode())


def latest_matching_audit(project: Path, fingerprint: str) -> tuple[Path, dict] | None:
    """(audit.json path, audit) of the newest saved audit with this fingerprint, or None."""
    root = ws.workspace(project) / "audits"
    if not root.exists():
        return None
    for path in sorted(root.glob("*/audit.json"), reverse=True):  # folders are named by sortable time
        try:
            audit = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if audit.get("fingerprint") == fingerprint:
            return path, audit
    return None
