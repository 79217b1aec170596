"""End to end on the real bundled SmolLM2-135M and BBC articles, at small scale."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tunewise import assets
from tunewise.core import Record
from tunewise.data.split import records_hash

pytestmark = pytest.mark.e2e


def cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-c", "from tunewise.cli import main; main()", *args],
        capture_output=True, text=True, timeout=1200, env=env,
    )


def test_bbc_ladder_small(tmp_path):
    project = tmp_path / "bbc"
    result = cli("init", str(project), "--example", "bbc-news")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (project / "data" / "articles.jsonl").read_text().splitlines()]
    assert len(rows) == 2225
    assert {r["label"] for r in rows} == {"business", "entertainment", "politics", "sports", "tech"}
    assert "licence" in (project / "data" / "SOURCE.md").read_text() or "research use" in (project / "data" / "SOURCE.md").read_text()

    result = cli(
        "ladder", str(project), "-q", "--rungs", "zero-shot,lora",
        "--set", "eval.max_test_examples=20", "--set", "train.max_train_examples=24",
        "--set", "train.max_val_examples=8", "--set", "train.max_steps=3", "--set", "train.eval_steps=2",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report_dir = sorted((project / ".tunewise" / "reports").iterdir())[-1]
    ladder = json.loads((report_dir / "ladder.json").read_text())
    assert ladder["n_test"] == 20
    assert [r["name"] for r in ladder["rungs"]] == ["zero-shot", "lora"]

    # The scored test rows on disk hash to the printed hash, and every rung scored exactly them.
    test_file = report_dir / ladder["test_file"]
    test = [Record.from_json(json.loads(line)) for line in test_file.read_text().splitlines()]
    assert records_hash(test) == ladder["test_hash"]
    ids = {r.id for r in test}
    for rung in ladder["rungs"]:
        run = project / rung["run_dir"]
        preds = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
        assert {p["id"] for p in preds} == ids
        assert (run / "config.yaml").exists() and (run / "metrics.json").exists()
        lo, hi = rung["metrics"]["accuracy_ci"]
        assert 0 <= lo <= rung["metrics"]["accuracy"] <= hi <= 1
    assert ladder["test_hash"] in (report_dir / "report.md").read_text()

    # LoRA's B matrices start at zero: non-zero ones prove the adapter was trained and saved.
    lora = next(r for r in ladder["rungs"] if r["name"] == "lora")
    weights = load_file(project / lora["run_dir"] / "adapter" / "adapter_model.safetensors")
    b_mats = [v for k, v in weights.items() if "lora_B" in k]
    assert b_mats and all(float(v.abs().max()) > 0 for v in b_mats)
    assert lora["train_tokens"] > 0 and lora["train_seconds"] > 0


def test_killed_conversion_leaves_no_cache_entry(tmp_path):
    """A GGUF conversion killed half-way must not leave a cache entry that looks complete."""
    env = {**os.environ, "TUNEWISE_HOME": str(tmp_path)}
    code = "from tunewise.models.load import resolve; resolve('smollm2-135m-instruct')"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.DEVNULL)
    models = tmp_path / "models"
    deadline = time.time() + 300
    # Kill as soon as the temporary folder exists, i.e. while weights are being written.
    while time.time() < deadline and proc.poll() is None:
        if models.exists() and any(p.name.startswith(".") for p in models.iterdir()):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    complete = [p for p in models.iterdir() if not p.name.startswith(".")] if models.exists() else []
    assert complete == []


def test_conversion_under_the_cli_draws_no_tqdm_bar(tmp_path):
    """The GGUF reader's own tqdm bar never shows (a stray line under the CLI); the conversion advances
    our progress bars instead: by stage, and by tensor while de-quantising."""
    env = {**os.environ, "TUNEWISE_HOME": str(tmp_path), "OMP_NUM_THREADS": "1"}
    code = """
import json
from tunewise.cli import _setup_logging
_setup_logging(True)
from tunewise.models.load import resolve
bars = {}
def progress(title, total):
    bars[title] = [total, 0]
    return lambda n, **fields: bars[title].__setitem__(1, bars[title][1] + n)
print(json.dumps({"folder": str(resolve("smollm2-135m-instruct", None, progress)), "bars": bars}))
"""
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "de-quantizing" not in done.stderr and "it/s" not in done.stderr
    out = json.loads(done.stdout)
    assert (Path(out["folder"]) / "model.safetensors").exists()
    tensors = out["bars"].pop("de-quantising GGUF tensors")
    assert tensors[0] == tensors[1] > 100  # SmolLM2-135M has 272 tensors
    assert list(out["bars"].values()) == [[4, 4]]  # tokenizer, weights, fp32 model, safetensors


def test_bundled_model_is_converted_once_then_reused(monkeypatch):
    import transformers

    from tunewise.models.load import resolve

    first = resolve("smollm2-135m-instruct")  # converts once if the cache is empty

    def refuse(*a, **k):
        raise AssertionError("a cached model was converted again")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
    assert resolve("smollm2-135m-instruct") == first
    assert (first / "model.safetensors").exists() and (first / "tunewise-source.json").exists()
    assert assets.asset_path(assets.SMOLLM2).name.endswith(".gguf")
