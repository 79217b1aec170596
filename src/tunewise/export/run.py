"""Export a trained run: merged safetensors (or the adapter itself) and optionally GGUF, each checked
by a round trip before it is kept, with DEPLOY.md and MODEL_CARD.md.

The checks, recorded in ``export.json``:
- the reloaded export gives the same greedy answers as the trained model on the test prompts, and
  logits within ``LOGIT_TOL`` (merging W + BA rounds differently than applying BA at run time);
- the exported tokenizer's chat template renders exactly the token ids training used for every
  test prompt (prompt and answer halves, as PromptBuilder encodes them for training).
An export that fails a check is not written.

Export never deletes what it did not write: ``--out`` must be new or empty, or with ``force`` only
the entries export writes (listed in export.json's ``files``) replace the same-named ones there.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch

from tunewise import locate
from tunewise import workspace as ws
from tunewise.config import ProjectConfig
from tunewise.core import Record
from tunewise.locate import Ladder
from tunewise.models.load import ModelError, load_model, load_tokenizer
from tunewise.rungs.state import project_of, read_manifest, run_config
from tunewise.rungspec import METHODS, QLORA

log = logging.getLogger(__name__)

LOGIT_TOL = 1e-3  # max |logit difference|, fp32 on CPU
N_PROMPTS = 8
GREEDY_TOKENS = 8
EXPORT_ENTRIES = "adapter/, model/, *.gguf, DEPLOY.md, MODEL_CARD.md, Modelfile, export.json"
PROBES = ["What is this about?", "The market closed higher today.", "Our team won the cup final."]


def ladder_of(run_dir: Path) -> tuple[Ladder, dict] | tuple[None, None]:
    """(the ladder, this run's entry) of the newest finished ladder that measured ``run_dir`` (tunewise.locate)."""
    found = locate.ladder_of_run(run_dir)
    return (found, found.lists(run_dir)) if found is not None else (None, None)


def probe_records(run_dir: Path, ladder: Ladder | None) -> tuple[list[Record], str]:
    """Up to N_PROMPTS records of the frozen test split the run was measured on, else fixed probes."""
    test = ws.resolve(ladder.project, ladder.data["dataset_dir"]) / "test.jsonl" if ladder else None
    if test is not None and test.exists():
        rows = test.read_text(encoding="utf-8").splitlines()[:N_PROMPTS]
        return [Record.from_json(json.loads(x)) for x in rows], "test split"
    return [Record(str(i), t, None) for i, t in enumerate(PROBES)], "fixed probes (no ladder lists this run)"


def reference_model(weights: Path):
    """The trained model as served, in fp32: base + adapter unmerged (qlora: on the fp32 base, which is
    what gets merged), or the full weights."""
    if not (weights / "adapter_config.json").exists():
        return load_model(weights)
    from peft import PeftModel

    base = json.loads((weights / "adapter_config.json").read_text())["base_model_name_or_path"]
    return PeftModel.from_pretrained(load_model(Path(base)), weights, is_trainable=False)


@torch.no_grad()
def compare(ref, other, prompts: list[list[int]], pad_id: int, eos_id: int) -> dict:
    from tunewise.evaluate.decode import generate

    ref.eval(), other.eval()
    diff = 0.0
    for ids in prompts:
        x = torch.tensor([ids])
        diff = max(diff, float((ref(input_ids=x).logits - other(input_ids=x).logits).abs().max()))
    a = generate(ref, prompts, pad_id, eos_id, GREEDY_TOKENS)
    b = generate(other, prompts, pad_id, eos_id, GREEDY_TOKENS)
    return {"max_abs_logit_diff": diff, "greedy_same": a == b, "n_prompts": len(prompts),
            "greedy_tokens": GREEDY_TOKENS, "ok": diff <= LOGIT_TOL and a == b}


def template_check(config: ProjectConfig, trained_tok, exported_tok, records: list[Record]) -> dict:
    from tunewise.models.chat import PromptBuilder

    want, got = PromptBuilder(config.task, trained_tok), PromptBuilder(config.task, exported_tok)
    same = [want.encode(r.input, r.target) == got.encode(r.input, r.target) for r in records]
    return {"same_token_ids": all(same), "n_prompts": len(same), "ok": all(same)}


def check_out(out: Path, force: bool) -> list[str]:
    """The entries already in ``out``; refuse a folder holding anything unless ``force``."""
    if out.exists() and not out.is_dir():
        raise ModelError(f"--out {out}: is a file, not a folder; nothing was written")
    there = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if there and not force:
        shown = ", ".join(there[:5]) + (", ..." if len(there) > 5 else "")
        raise ModelError(f"--out {out}: already holds {len(there)} entries ({shown}); export writes into a new or "
                         "empty folder, or with --force replaces only the files it writes itself "
                         f"({EXPORT_ENTRIES}) and keeps the rest; nothing was written")
    return there


def _fail(what: str, check: dict) -> None:
    if not check["ok"]:
        raise ModelError(f"export round trip failed ({what}): {check}; nothing was written")


def export_run(run_dir: Path, merge: bool = False, fmt: str = "safetensors", out: Path | None = None,
               force: bool = False) -> Path:
    """Write the export of ``run_dir`` to ``out`` (default ``run_dir/export``); return the folder.

    ``out`` must be new or empty; with ``force`` only the entries export writes are replaced there."""
    run_dir = Path(run_dir)
    manifest, config = read_manifest(run_dir), run_config(run_dir)
    name = manifest["rung"]
    if fmt not in ("safetensors", "gguf"):
        raise ModelError(f"--format: expected safetensors or gguf, got {fmt!r}")
    if name not in METHODS:
        raise ModelError(f"{run_dir}: the {name} rung has no trained LLM weights to export "
                         "(serve it as measured with `tunewise serve`)")
    weights = run_dir / manifest["weights"]
    adapter = (weights / "adapter_config.json").exists()
    if adapter and fmt == "gguf" and not merge:
        raise ModelError(f"{run_dir}: GGUF holds whole models; add --merge to merge the {name} adapter first")
    out = Path(out) if out is not None else run_dir / "export"
    there = check_out(out, force)
    ladder, result = ladder_of(run_dir)
    records, source = probe_records(run_dir, ladder)
    trained_tok = load_tokenizer(weights)
    report = {"run": ws.stored(project_of(run_dir), run_dir), "rung": name, "format": fmt,
              "merged": bool(merge and adapter), "ladder": ladder.record() if ladder else None,
              "prompts": source, "logit_tolerance": LOGIT_TOL}
    with ws.atomic_dir(out, keep_others=True) as tmp:
        if adapter and not merge:
            shutil.copytree(weights, tmp / "adapter")
            report["adapter"] = "adapter"
            report["template"] = template_check(config, trained_tok, load_tokenizer(tmp / "adapter"), records)
            _fail("chat template", report["template"])
        else:
            report.update(_merged(config, weights, tmp, fmt, records, trained_tok, name))
        if name == QLORA:
            report["note"] = ("the qlora adapter is merged into the fp32 base: the export does not reproduce the "
                              "quantised model the ladder measured exactly")
        from tunewise.export.card import write_deploy, write_model_card

        write_deploy(tmp, config, report, out, trained_tok)
        write_model_card(tmp, config, report, run_dir, ladder, result)
        report["files"] = sorted([p.name for p in tmp.iterdir()] + ["export.json"])
        report["replaced"] = sorted(set(there) & set(report["files"]))
        ws.write_json(tmp / "export.json", report)
    if report["replaced"]:
        log.warning("%s: replaced %s (export's own files); kept the %d other entries", out,
                    ", ".join(report["replaced"]), len(set(there) - set(report["files"])))
    return out


def _merged(config, weights: Path, tmp: Path, fmt: str, records, trained_tok, name: str) -> dict:
    from transformers import AutoModelForCausalLM

    from tunewise.models.chat import PromptBuilder
    from tunewise.train.merge import merge_adapter

    merge_adapter(weights, tmp / "model")
    builder = PromptBuilder(config.task, trained_tok)
    prompts = [builder.encode(r.input, None)[0] for r in records]
    ref = reference_model(weights)
    merged = AutoModelForCausalLM.from_pretrained(tmp / "model", dtype=torch.float32, local_files_only=True)
    pad, eos = trained_tok.pad_token_id, trained_tok.eos_token_id
    report = {"model": "model", "safetensors_round_trip": compare(ref, merged, prompts, pad, eos),
              "template": template_check(config, trained_tok, load_tokenizer(tmp / "model"), records)}
    _fail("merged safetensors", report["safetensors_round_trip"])
    _fail("chat template", report["template"])
    if fmt == "gguf":
        from transformers import AutoTokenizer

        from tunewise.export.gguf import write_gguf

        gguf_name = f"{config.name}-{name}.f32.gguf"
        write_gguf(merged, tmp / "model", tmp / gguf_name, f"{config.name}-{name}")
        reread = AutoModelForCausalLM.from_pretrained(tmp, gguf_file=gguf_name, dtype=torch.float32)
        gguf_tok = AutoTokenizer.from_pretrained(tmp, gguf_file=gguf_name)
        report["gguf"] = gguf_name
        report["gguf_round_trip"] = compare(merged, reread, prompts, pad, eos)
        report["gguf_template"] = template_check(config, trained_tok, gguf_tok, records)
        _fail("GGUF", report["gguf_round_trip"])
        _fail("GGUF chat template", report["gguf_template"])
    return report
