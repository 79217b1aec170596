"""`tunewise serve` and `tunewise export` from the command line on the bundled SmolLM2-135M, small scale:
a BBC ladder (zero-shot, lora), the lora run exported merged to GGUF with its round trips, then
the project served and asked through the openai client."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.e2e


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-c", "from tunewise.cli import main; main()", *args],
                          check=False, capture_output=True, text=True, timeout=1200, **kw)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    project = tmp_path_factory.mktemp("bbc") / "bbc"
    assert cli("init", str(project), "--example", "bbc-news").returncode == 0
    result = cli("ladder", str(project), "-q", "--rungs", "zero-shot,lora",
                 "--set", "eval.max_test_examples=8", "--set", "train.max_train_examples=16",
                 "--set", "train.max_val_examples=4", "--set", "train.max_steps=2", "--set", "train.eval_steps=2")
    assert result.returncode == 0, result.stderr[-3000:]
    return project


def test_export_merged_gguf_round_trips_on_smollm2(project, tmp_path):
    run = next((project / ".tunewise" / "runs").glob("lora-*"))
    result = cli("export", str(run), "--merge", "--format", "gguf", "--out", str(tmp_path / "x"), "-q")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "x" / "export.json").read_text())
    assert report["safetensors_round_trip"]["ok"] and report["gguf_round_trip"]["ok"]
    assert report["template"]["same_token_ids"] and report["gguf_template"]["same_token_ids"]
    print(f"\nSmolLM2 export: merged max |dlogit| {report['safetensors_round_trip']['max_abs_logit_diff']:.2e}, "
          f"GGUF max |dlogit| {report['gguf_round_trip']['max_abs_logit_diff']:.2e}")
    modelfile = (tmp_path / "x" / "Modelfile").read_text()
    assert "<|im_start|>system" in modelfile and "{{ .Prompt }}" in modelfile  # SmolLM2's template adds a system turn


def test_serve_a_project_from_the_command_line(project):
    import openai

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", "from tunewise.cli import main; main()", "serve", str(project),
                             "--port", str(port), "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=120)
        deadline = time.monotonic() + 180
        while True:
            try:
                ids = {m.id for m in client.models.list()}
                break
            except openai.APIConnectionError:
                assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.5)
        assert ids == {"bbc-news/zero-shot", "bbc-news/lora"}
        r = client.chat.completions.create(model="bbc-news/lora", messages=[
            {"role": "user", "content": "The striker scored twice as the club won the cup final."}])
        assert r.choices[0].message.content in {"business", "entertainment", "politics", "sports", "tech"}
        assert (project / ".tunewise" / "serve" / "requests.sqlite").exists()
    finally:
        proc.terminate()
        proc.wait(30)
