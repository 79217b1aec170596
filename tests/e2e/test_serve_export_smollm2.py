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


def test_generation_streams_real_text_as_it_is_decoded(tmp_path):
    """A zero-shot headline rung on SmolLM2: the streamed chunks, joined, are the whole answer, and
    concurrent requests (continuous batching) get the rung's own answers, as the ladder measures them."""
    from concurrent.futures import ThreadPoolExecutor

    import openai
    from loopback import Server

    from tunewise.config import ServeConfig, dump_config, load_config
    from tunewise.core import Record
    from tunewise.rungs.state import write_manifest
    from tunewise.serve.app import create_app
    from tunewise.serve.registry import load_served

    gen = tmp_path / "headlines"
    (gen / "data").mkdir(parents=True)
    rows = [{"id": str(i), "input": t, "target": "x"} for i, t in enumerate(
        ["Shares in the bank fell sharply after it reported lower profits.",
         "The striker scored twice as the home side won the cup final.",
         "A new phone with a faster chip goes on sale next month.",
         "The minister announced a new tax on sugary drinks."] * 3)]
    (gen / "data" / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (gen / "tunewise.yaml").write_text("name: headlines\ntask: {type: generation, instruction: Write a one-line "
                                       "headline for this news article.}\ndata: {files: [data/rows.jsonl]}\n"
                                       "model: {base: smollm2-135m-instruct}\nrungs: [zero-shot]\n"
                                       "eval: {max_new_tokens: 12}\n")
    run = gen / ".tunewise" / "runs" / "zero-shot-e2e"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(dump_config(load_config(gen)))
    write_manifest(run, "zero-shot")
    served = load_served([run])
    texts = [r["input"] for r in rows[:4]]
    want = [p.output for p in (served["headlines/zero-shot"].rung.predict([Record(str(i), t, None)])[0]
                               for i, t in enumerate(texts))]
    with Server(create_app(served, ServeConfig(), tmp_path / "log.sqlite")) as s:
        client = openai.OpenAI(base_url=s.url, api_key="x", max_retries=0, timeout=300)

        def ask(text):
            return client.chat.completions.create(model="headlines/zero-shot", messages=[
                {"role": "user", "content": text}]).choices[0].message.content

        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(ask, texts)) == want
        chunks = [c.choices[0].delta.content for c in client.chat.completions.create(
            model="headlines/zero-shot", stream=True, messages=[{"role": "user", "content": texts[0]}])
            if c.choices and c.choices[0].delta.content]
    assert len(chunks) >= 3 and "".join(chunks) == want[0] and want[0].strip()
