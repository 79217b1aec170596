"""DEPLOY.md (vLLM multi-LoRA, llama.cpp, Ollama) and MODEL_CARD.md (Hugging Face's format) for an export."""

from __future__ import annotations

import shutil
from pathlib import Path

from tunewise import workspace as ws
from tunewise.config import ProjectConfig

SENTINEL = "\u2063INPUT\u2063"  # an invisible separator no real input contains


def _engine(cmd: str) -> str:
    if shutil.which(cmd):
        return "found on this machine, not run by tunewise"
    return "untested: not installed on the machine that wrote this export"


def ollama_template(config: ProjectConfig, tok) -> tuple[str, str]:
    """(TEMPLATE, user-turn pattern): the exact training prompt with the input as ``{{ .Prompt }}``."""
    from tunewise.models.chat import PromptBuilder

    b = PromptBuilder(config.task, tok)
    return b.prompt(SENTINEL).replace(SENTINEL, "{{ .Prompt }}"), b.user_message(SENTINEL).replace(SENTINEL, "{input}")


def write_deploy(folder: Path, config: ProjectConfig, report: dict, out: Path, tok) -> None:
    """DEPLOY.md, written into ``folder`` (the export being built), its commands naming ``out``, the
    folder the export ends up in."""
    mid = f"{config.name}/{report['rung']}"
    template, user_turn = ollama_template(config, tok)
    stop = tok.eos_token or ""
    lines = [f"# Deploying {mid}", "",
             (f"Exported from `{report['run']}` (in project {config.name}) by `tunewise export`. "
             "Round-trip checks: `export.json`."), "",
             "## The prompt the model was trained on", "",
             "Send each input as the user turn, worded exactly as training rendered it:", "",
             "```text", user_turn, "```", "",
             ("The tokenizer's chat template (shipped with the weights, also inside the GGUF) wraps it; decoding "
             f"stops at `{stop}`. The ladder decoded greedily (temperature 0)."), ""]
    if report.get("adapter"):
        import json

        config_file = Path(folder) / "adapter" / "adapter_config.json"
        base = json.loads(config_file.read_text(encoding="utf-8"))["base_model_name_or_path"]
        lines += ["## vLLM, several adapters on one base (multi-LoRA)", "", f"Status: {_engine('vllm')}.", "",
                  "```bash", f"vllm serve {base} \\", "  --enable-lora --max-lora-rank 64 \\",
                  f"  --lora-modules {mid}={Path(out).resolve()}/adapter",
                  "# add more adapters of the same base as extra name=path pairs", "```", "",
                  "Requests then name the adapter: `\"model\": \"" + mid + "\"`.", "",
                  "For llama.cpp and Ollama, export again with `--merge --format gguf`.", ""]
    else:
        model = Path(out).resolve() / "model"
        lines += ["## vLLM", "", f"Status: {_engine('vllm')}.", "", "```bash",
                  f"vllm serve {model} --served-model-name {mid}", "```", ""]
        gguf = report.get("gguf")
        source = f"./{gguf}" if gguf else "./model"
        if gguf:
            lines += ["## llama.cpp", "", f"Status: {_engine('llama-server')}.", "", "```bash",
                      f"llama-server -m {Path(out).resolve() / gguf} --jinja --port 8080 --temp 0",
                      "```", "", "`--jinja` applies the chat template stored in the GGUF file.", ""]
        lines += ["## Ollama", "", f"Status: {_engine('ollama')}.", "",
                  ("`Modelfile` (written next to this file) carries the training prompt as its TEMPLATE, so "
                  "`ollama run` takes the bare input:"), "", "```bash",
                  f"cd {Path(out).resolve()} && ollama create {mid.replace('/', '-')} -f Modelfile",
                  f"ollama run {mid.replace('/', '-')} \"your input here\"", "```", ""]
        ws.write_text(Path(folder) / "Modelfile", "\n".join([
            f"FROM {source}", f'TEMPLATE """{template}"""', f'PARAMETER stop "{stop}"', "PARAMETER temperature 0", ""]))
    ws.write_text(Path(folder) / "DEPLOY.md", "\n".join(lines))


def write_model_card(folder: Path, config: ProjectConfig, report: dict, run_dir: Path, found, result: dict | None) -> None:
    """MODEL_CARD.md from ``found``, the tunewise.locate ladder that measured the run (or None)."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    ladder = found.data if found is not None else None
    mid = f"{config.name}/{report['rung']}"
    evals, rows = [], []
    if ladder and result:
        for key, value in result["metrics"].items():
            if isinstance(value, int | float) and not key.endswith("_ci") and key != "n":
                evals.append(EvalResult(task_type=_task(config), dataset_type="tunewise-test-split",
                                        dataset_name=f"{config.name} test split", dataset_split="test",
                                        dataset_revision=ladder["test_hash"], metric_type=key, metric_value=value))
        for r in ladder["rungs"]:
            ci = r["metrics"].get(f"{r['primary']}_ci")
            rows.append(f"| {r['name']} | {r['metrics'][r['primary']]:.3f} | "
                        f"{f'{ci[0]:.3f} to {ci[1]:.3f}' if ci else 'n/a'} |")
    license_ = "apache-2.0" if "smollm2" in config.model.base.lower() else "other"
    data = ModelCardData(
        model_name=mid, base_model=config.model.base, license=license_, library_name="transformers" if not
        report.get("adapter") else "peft", datasets=[f"{config.name}-{ladder['test_hash'][:16]}"] if ladder else None,
        tags=["tunewise", report["rung"]], eval_results=evals or None, pipeline_tag="text-generation",
    )
    dataset = ws.resolve(found.project, ladder["dataset_dir"]) if ladder else None
    datacard = dataset / "DATACARD.md" if dataset else None
    t = config.train
    body = [
        f"# {mid}", "",
        (f"Fine-tuned from `{config.model.base}` with **{report['rung']}** by tunewise; exported "
        f"{'as a merged model' if report.get('merged') or report.get('model') else 'as a PEFT adapter'}."), "",
        "## Intended use", "", f"Task ({config.task.type}): {config.task.instruction.strip() or '(no instruction)'}",
        f"Labels: {', '.join(config.task.labels)}" if config.task.labels else "", "",
        ("Inputs must be rendered with the exported chat template and the instruction above (see DEPLOY.md); "
        "other prompt formats were not measured."), "",
        "## Data", "",
        f"Data card: `{ws.stored(found.project, datacard)}`" if datacard and datacard.exists() else "Data card: none written (run `tunewise prepare`).",
        f"Test split sha256: `{ladder['test_hash']}` ({ladder['n_test']} rows; train {ladder['n_train']}, "
        f"val {ladder['n_val']})." if ladder else "No ladder lists this run: no measured results.", "",
        "## Method and hyperparameters", "",
        (f"method {report['rung']}, epochs {t.epochs}, learning rate {t.learning_rate}, batch size {t.batch_size}, "
        f"max length {t.max_length}, seed {t.seed}, LoRA r {t.lora.r} / alpha {t.lora.alpha} / dropout {t.lora.dropout}."), "",
    ]
    if rows:
        body += ["## Ladder results (same frozen test split, 95% bootstrap CI)", "",
                 f"| rung | {ladder['primary']} | 95% CI |", "|---|---|---|", *rows, "",
                 f"Recommendation: **{ladder['recommendation'].get('rung')}** — {ladder['recommendation'].get('reason')}", ""]
    body += ["## Known limitations", "",
             (f"- Measured on {ladder['n_test'] if ladder else 'no'} test rows from one source; expect drift on other data "
             "(monitor the request log)."),
             "- Greedy decoding only was measured.",
             f"- {report['note']}" if report.get("note") else "- The export matched the trained model in the checks "
             "recorded in export.json.", "",
             f"Project: {config.name}; run: `{report['run']}`"
             + (f"; measured in ladder `{report['ladder']['report']}`." if report.get("ladder") else "."), ""]
    # Not from_template: user text (the instruction) may hold Jinja braces.
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body))
    ws.write_text(Path(folder) / "MODEL_CARD.md", str(card))


def _task(config: ProjectConfig) -> str:
    return {"classification": "text-classification", "extraction": "text-generation"}.get(config.task.type,
                                                                                           "text-generation")
