"""Progress on every long wait (audit, mislabel embedding, prepare, review export), review export reusing
the newest matching audit, and option values refused before any work starts."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tunewise.cli import app
from tunewise.config import load_config
from tunewise.data import audit as au
from tunewise.data import mislabels
from tunewise.data.mislabels import suspected_mislabels, tfidf_embedder
from tunewise.data.prepare import export_project_review, prepare_project

NO_MISLABELS = ["audit.mislabels=false"]  # MiniLM is tested on its own below; these tests need no encoder


class Bars:
    """A progress function that records every bar: its title, total, steps advanced and step names."""

    def __init__(self):
        self.bars: list[dict] = []

    def __call__(self, description: str, total: int):
        bar = {"title": description, "total": total, "done": 0, "calls": 0, "names": []}
        self.bars.append(bar)

        def advance(n, **fields):
            bar["done"] += n
            bar["calls"] += 1
            if "description" in fields:
                bar["names"].append(fields["description"])

        return advance

    def titled(self, prefix: str) -> list[dict]:
        return [b for b in self.bars if b["title"].startswith(prefix)]


def audits(project) -> list:
    root = project / ".tunewise" / "audits"
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.exists() else []


def test_audit_bar_advances_once_per_check_and_names_each(tiny_project):
    bars = Bars()
    audit, _, _ = au.audit_project(tiny_project, embed=tfidf_embedder, progress=bars)
    (bar,) = bars.titled("audit (60 rows)")
    assert bar["total"] == len(audit["seconds"]) == bar["done"]
    assert [n.split(": ")[1] for n in bar["names"][::2]] == list(audit["seconds"])  # each check, in order
    assert set(audit["seconds"]) <= set(au.CHECK_NAMES) | {"chat"}


def test_mislabel_embedding_bar_counts_rows(monkeypatch):
    monkeypatch.setattr(mislabels, "EMBED_CHUNK", 8)  # several steps from 30 rows
    texts = [f"the striker scored a goal in the football match {i}" for i in range(10)] + \
            [f"the central bank raised interest rates and stocks fell {i}" for i in range(10)] + \
            [f"the new smartphone has a faster chip and better camera {i}" for i in range(10)]
    labels = ["sports"] * 10 + ["business"] * 10 + ["tech"] * 10
    bars = Bars()
    result = suspected_mislabels([str(i) for i in range(30)], texts, labels, progress=bars)
    (bar,) = bars.titled("audit: embedding")
    assert (bar["total"], bar["done"], bar["calls"]) == (30, 30, 4)
    assert result["count"] == 0  # consistent labels: the chunked embedding changed nothing


def test_every_check_the_audit_can_run_is_a_known_fail_on_name(tiny_project, tmp_path):
    audit, _, _ = au.audit_project(tiny_project, overrides=["data.annotator_field=annotator"], embed=tfidf_embedder)
    seen = set(audit["checks"])  # classification data, with annotators
    chat = tmp_path / "chat.jsonl"
    chat.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                             {"role": "assistant", "content": "hello"}]}) + "\n")
    audit, _, _ = au.audit_project(tmp_path, [str(chat)], json_path=tmp_path / "a.json", html_path=tmp_path / "a.html")
    seen |= set(audit["checks"])
    assert seen == set(au.CHECK_NAMES)


def test_prepare_bar_advances_once_per_cleaning_step(tiny_project):
    bars = Bars()
    _, manifest = prepare_project(load_config(tiny_project), tiny_project, progress=bars)
    (bar,) = bars.titled("prepare (60 rows)")
    assert bar["total"] == len(manifest["steps"]) == bar["done"]
    assert [n.split(": ")[1] for n in bar["names"][::2]] == [s["step"] for s in manifest["steps"]]
    (split,) = bars.titled("prepare: splitting")
    assert split["done"] == split["total"] == 1


def test_review_export_reuses_the_newest_matching_audit(tiny_project):
    _, first_json, _ = au.audit_project(tiny_project, overrides=NO_MISLABELS)  # what `tunewise audit` writes
    bars = Bars()
    path, n, used, reused = export_project_review(tiny_project, None, NO_MISLABELS, bars)
    assert (used, reused) == (first_json, True) and len(audits(tiny_project)) == 1
    assert bars.bars == [] and n > 0 and path.exists()  # no audit ran: no bar

    # Another config that changes the checks: audited again, once; then that audit is reused.
    stricter = [*NO_MISLABELS, "audit.near_duplicate_threshold=0.9"]
    bars = Bars()
    _, _, used, reused = export_project_review(tiny_project, None, stricter, bars)
    assert not reused and used != first_json and len(audits(tiny_project)) == 2
    (bar,) = bars.titled("audit (60 rows)")
    assert bar["done"] == bar["total"] > 0
    assert export_project_review(tiny_project, None, stricter)[2:] == (used, True)

    # The data changed: the saved audits no longer describe it.
    rows = tiny_project / "data" / "rows.jsonl"
    rows.write_text(rows.read_text() + json.dumps({"id": "new", "text": "the cup final", "label": "sports"}) + "\n")
    _, _, used, reused = export_project_review(tiny_project, None, NO_MISLABELS)
    assert not reused and len(audits(tiny_project)) == 3
    assert json.loads(used.read_text())["rows"] == 61


def test_cli_review_export_says_which_audit_it_used(tiny_project):
    runner = CliRunner()
    args = ["review", "export", str(tiny_project), "--set", "audit.mislabels=false", "-q"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "no audit matched this data and config; audited now:" in first.output
    second = runner.invoke(app, args)
    (folder,) = audits(tiny_project)
    assert second.exit_code == 0 and f"using the audit {folder / 'audit.json'}" in second.output


@pytest.mark.parametrize("command", [
    ["audit", "{p}", "--fail-on", "pii,piii"],
    ["train", "{p}", "--method", "lorra"],
    ["train", "{p}", "--strategy", "zero4"],
    ["sweep", "{p}", "--method", "lorra"],
    ["ladder", "{p}", "--rungs", "zero-shot,few-shoot"],
])
def test_a_bad_option_value_fails_in_one_line_before_any_work(tiny_project, monkeypatch, command):
    def no_work(*a, **k):
        raise AssertionError("the work started before the option was checked")

    monkeypatch.setattr(au, "audit_project", no_work)
    monkeypatch.setattr("tunewise.data.resolve.prepare_project", no_work)
    monkeypatch.setattr("tunewise.models.load.load", no_work)
    bad = command[-1].split(",")[-1]
    result = CliRunner().invoke(app, [c.replace("{p}", str(tiny_project)) for c in command])
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0 and bad in result.output and "Traceback" not in result.output
    for kind in ("audits", "datasets", "runs", "sweeps"):
        assert not (tiny_project / ".tunewise" / kind).exists()


@pytest.mark.parametrize("terminal", [True, False])
def test_cli_bars_draw_on_a_terminal_only_and_only_when_a_step_needs_one(monkeypatch, terminal):
    import io

    from rich.console import Console

    from tunewise import cli_common as cli

    screen = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=screen, force_terminal=terminal, width=100))
    with cli.progress_bars(False):
        pass  # a command that found its work done (a reused audit) draws nothing, not even a blank line
    assert screen.getvalue() == ""
    with cli.progress_bars(False) as progress:
        advance = progress("audit (3 rows)", 2)
        advance(1, description="audit (3 rows): pii")
        advance(1, description="audit (3 rows)")
    drawn = screen.getvalue()
    assert ("audit (3 rows)" in drawn and "2/2" in drawn) if terminal else drawn == ""


def test_gate_tells_an_unknown_check_from_one_that_did_not_run():
    from tunewise.config import ConfigError
    from tunewise.data.load import DataError

    audit = {"checks": {"pii": {"count": 0}}, "rejected": []}
    with pytest.raises(ConfigError, match="unknown check"):
        au.gate(audit, ["piii"])
    with pytest.raises(DataError, match="eos_coverage did not run on this data"):
        au.gate(audit, ["eos_coverage"])  # chat checks run on chat data only
    au.gate(audit, ["pii", "rejected"])
