"""One server holds every LLM rung of a ladder side by side: adapters of different PEFT types (LoRA,
DoRA, IA3, prefix, prompt tuning), full weights, DPO and KTO adapters and the prompting rungs, on
one base, each answering exactly what the ladder measured."""

from __future__ import annotations

import json

import httpx
import pytest
import torch
from loopback import Server
from tiny import write_tiny_project

from tunewise.config import ServeConfig, load_config
from tunewise.ladder import run_ladder
from tunewise.rungspec import QLORA, RUNGS
from tunewise.serve.app import softmax

# A high learning rate: two steps must move every adapter's scores well past the tolerance below, so a
# prompting rung that ran with an adapter switched on, or an adapter that ran as another, shows.
FAST = ["train.max_steps=2", "train.eval_steps=2", "train.batch_size=4", "train.max_val_examples=4",
        "train.max_train_examples=12", "train.learning_rate=0.3", "eval.max_test_examples=6", "eval.bootstrap=100",
        "eval.timing_examples=0"]
TOLERANCE = 1e-4


def llm_rungs() -> list[str]:
    """Every rung of the table on the base LLM but those that need documents (rag: its own test), and
    qlora where bitsandbytes cannot quantise on this machine. A new rung is served here without a change."""
    from tunewise.models.inspect import qlora_support

    out = [n for n, s in RUNGS.items() if s.llm and "documents" not in s.needs]
    return out if qlora_support()[0] else [n for n in out if n != QLORA]


@pytest.fixture(scope="module", params=["fp32", "bf16"])
def ladder(request, tmp_path_factory, tiny_model_dir):
    """(project, ladder.json, report folder, precision) of one ladder over every LLM rung, measured with fp32 or
    bf16 matmuls (eval.precision; bf16 autocast runs on any CPU, natively only on some: the check
    that refuses it elsewhere is switched off here, and by the served test below)."""
    torch.set_num_threads(1)
    project = write_tiny_project(tmp_path_factory.mktemp("every") / "tiny", tiny_model_dir)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("tunewise.evaluate.decode.native_bf16", lambda: True)
        yield _run_every_rung(project, request.param)


def _run_every_rung(project, precision: str):
    rows = [json.loads(line) for line in (project / "data" / "rows.jsonl").read_text().splitlines()]
    labels = ["business", "sports", "tech"]
    kto = [{"prompt": r["text"], "completion": r["label"] if i % 2 else labels[(labels.index(r["label"]) + 1) % 3],
            "label": bool(i % 2)} for i, r in enumerate(rows[::2])]
    (project / "kto.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kto))
    config = load_config(project, [*FAST, "train.dpo.pairs_from_labels=true", "train.kto.data=kto.jsonl",
                                   f"eval.precision={precision}"])
    report = run_ladder(config, project, llm_rungs())
    summary = json.loads((report / "ladder.json").read_text())
    assert summary["status"] == "complete", summary["failed"]
    return project, summary, report, precision


def test_one_server_answers_every_rung_as_the_ladder_measured_it(ladder, tmp_path):
    from tunewise.serve.app import create_app
    from tunewise.serve.registry import load_served, peft_type

    project, summary, report, precision = ladder
    served = load_served([project])
    names = [r["name"] for r in summary["rungs"]]
    assert sorted(served) == sorted(f"tiny/{n}" for n in names)
    # bf16 rungs' models keep their linear weights in bf16 (the same scores, checked below, without
    # autocast's cast per call); fp32 rungs' stay fp32. DoRA's base layers stay fp32 either way.
    stored = {p.dtype for e in served.values() for n, p in e.rung.model.named_parameters()
              if n.endswith(("q_proj.weight", "q_proj.base_layer.weight"))}
    assert (torch.bfloat16 in stored) == (precision == "bf16"), stored

    # One PEFT model per PEFT type on the base (LoRA and DoRA share one, IA3 has its own); the
    # prompting rungs run on the copy the first type wraps, with its adapters switched off.
    sharing = {n: served[f"tiny/{n}"] for n in names if RUNGS[n].shares_base}
    kinds = {n: peft_type(s.run_dir / "adapter") for n, s in sharing.items()}
    assert len(set(kinds.values())) > 1, kinds  # the case this test is for: several PEFT types at once
    for a, on_a in sharing.items():
        for b, on_b in sharing.items():
            assert (on_a.peft is on_b.peft) == (kinds[a] == kinds[b]), (a, b)
    for n in names:
        if RUNGS[n].prompting:
            assert served[f"tiny/{n}"].peft in [s.peft for s in sharing.values()]

    scores = {n: [json.loads(line)["scores"] for line in
                  (served[f"tiny/{n}"].run_dir / "predictions.jsonl").read_text().splitlines()] for n in names}
    for a in sharing:  # the check below can tell a rung from its base and from another adapter
        for b in [*sharing, *(n for n in names if RUNGS[n].prompting)]:
            if a != b:
                assert max(abs(x[k] - y[k]) for x, y in zip(scores[a], scores[b], strict=True) for k in x) > 10 * TOLERANCE

    tests = {r["id"]: r["input"] for r in map(json.loads, (report / "test.jsonl").read_text().splitlines())}
    with Server(create_app(served, ServeConfig(), tmp_path / "requests.sqlite")) as s:
        for r in summary["rungs"]:
            run_dir = served[f"tiny/{r['name']}"].run_dir
            measured = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
            answer = httpx.post(f"{s.url}/classify", timeout=300, json={
                "model": f"tiny/{r['name']}", "input": [tests[p["id"]] for p in measured]})
            assert answer.status_code == 200, (r["name"], answer.text)
            for want, got in zip(measured, answer.json()["data"], strict=True):
                assert got["label"] == want["output"], (r["name"], want["id"])
                for label, p in softmax(want["scores"]).items():
                    assert got["probabilities"][label] == pytest.approx(p, abs=TOLERANCE), (r["name"], want["id"], label)
