"""Continuous batching and real streaming for generation: answers equal the rung's own (as the
ladder measured them), sequences join a running batch, and streamed tokens arrive as decoded."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from loopback import Server

from tunewise.core import Record
from tunewise.serve.engine import DecodeEngine, continuous

PROMPTS = ["the market shares news", "the match goal news", "the phone games news", "profit at the bank",
           "a new striker", "software update"]


def test_engine_serves_the_generation_rungs_that_use_the_plain_decoder(served):
    assert continuous(served["tiny-gen/zero-shot"])
    assert not continuous(served["tiny/lora"])  # classification scores labels in one pass


def test_concurrent_generations_equal_the_rungs_own_answers(served, server):
    rung = served["tiny-gen/zero-shot"].rung
    budgets = [1, 6, 3, 6, 2, 5]
    want = {}
    for p, n in zip(PROMPTS, budgets, strict=True):  # the batch-at-once path the ladder measured
        rung.config = rung.config.model_copy(update={"eval": rung.config.eval.model_copy(update={"max_new_tokens": n})})
        want[p] = rung.predict([Record("x", p, None)])[0].output
    rung.config = rung.config.model_copy(update={"eval": rung.config.eval.model_copy(update={"max_new_tokens": 6})})

    def one(pn):
        r = httpx.post(f"{server.url}/completions", json={"model": "tiny-gen/zero-shot", "prompt": pn[0],
                                                          "max_tokens": pn[1]}, timeout=120)
        return r.json()["choices"][0]["text"]

    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(one, zip(PROMPTS, budgets, strict=True)))
    assert got == [want[p] for p in PROMPTS]


class Words:
    """The tiny test model's tokens decode to nothing visible; this shows each as a word, so the
    stream has text to carry. Real text is streamed in tests/e2e with the bundled model."""

    def __init__(self, tok):
        self.tok = tok

    def decode(self, ids, skip_special_tokens=True):
        return "".join(f" w{i}" for i in ids)


def test_streamed_tokens_arrive_as_they_are_decoded(served, tmp_path, monkeypatch):
    """The decode is held at its second step until the client has the first content chunk: that
    chunk cannot have come from a finished answer. Synchronised on chunk arrival, not on time."""
    from tunewise.config import ServeConfig
    from tunewise.serve.app import create_app

    init, real_step = DecodeEngine.__init__, DecodeEngine.step

    def words_init(self, *a):
        init(self, *a)
        self.tok = Words(self.tok)

    gate, steps = threading.Event(), []

    def held(self):
        steps.append(1)
        if len(steps) == 2 and not gate.wait(60):  # prefill gave token 1, step 1 token 2
            raise AssertionError("the client never got the first chunk")
        return real_step(self)

    monkeypatch.setattr(DecodeEngine, "__init__", words_init)
    with Server(create_app(served, ServeConfig(), tmp_path / "log.sqlite")) as s:
        client = openai.OpenAI(base_url=s.url, api_key="x", max_retries=0, timeout=120)
        ask = {"model": "tiny-gen/zero-shot", "max_tokens": 6, "messages": [{"role": "user", "content": "the news"}]}
        whole = client.chat.completions.create(**ask).choices[0].message.content
        assert len(whole.split()) == 6  # six tokens, no stop: the stream must carry six words
        monkeypatch.setattr(DecodeEngine, "step", held)
        pieces, first_at = [], None
        for chunk in client.chat.completions.create(**ask, stream=True):
            delta = chunk.choices[0].delta.content if chunk.choices else None
            if delta:
                pieces.append(delta)
                if first_at is None:
                    first_at = len(steps)
                    gate.set()
        gate.set()
    # Streamed for real, the first word arrives while step 2 waits; cut from a finished answer, the
    # gate times out first and the first word comes after all six steps.
    assert first_at is not None and first_at <= 2, first_at
    assert len(pieces) >= 5 and "".join(pieces) == whole


class _Job:
    """What DecodeEngine reads of a batching.Job."""

    def __init__(self, text: str, max_tokens: int):
        from tunewise.rungs.saved import request_record

        self.record, self.max_tokens, self.stream, self.result = request_record(text), max_tokens, None, None
        self.future = self
        self.batch_size = 0

    def done(self) -> bool:
        return False


def _decode_all(served, reuse: bool) -> tuple[list[str], int]:
    """Requests joining a running batch at different steps, as the batcher drives them."""
    engine = DecodeEngine(served, lambda job, delta: None, reuse_prefix=reuse)
    engine.tok = Words(engine.tok)  # each token shown as w<id>: the outputs are the token ids
    jobs = [_Job(p, n) for p, n in zip(PROMPTS, [6, 3, 6, 1, 5, 6], strict=True)]
    for i, job in enumerate(jobs):
        engine.join(job)
        if i % 2:
            engine.step()
    while engine.active:
        engine.step()
    return [j.result.output for j in jobs], engine.prefix_hits


def _lively(served):
    """The tiny model answers one token over and over (its logits are near uniform), so a wrong cache
    would not show; a model of its shape with larger random weights (and none of the adapters that
    share the served base) answers differently per prompt and step."""
    import copy
    import dataclasses

    import torch
    from transformers import AutoModelForCausalLM

    rung = copy.copy(served.rung)
    torch.manual_seed(0)
    rung.model = AutoModelForCausalLM.from_config(rung.model.config)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in rung.model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.3, generator=gen)
    return dataclasses.replace(served, rung=rung, peft=None)


def test_the_shared_prefix_is_computed_once_and_changes_no_token(served):
    s = _lively(served["tiny-gen/zero-shot"])
    alone, none = _decode_all(s, reuse=False)
    shared, hits = _decode_all(s, reuse=True)
    assert none == 0 and hits == len(PROMPTS)  # every join started from the prefix's cache
    assert len({w for out in alone for w in out.split()}) > 3  # varied answers: a wrong cache shows
    assert shared == alone  # greedy: the same tokens with and without the reuse


def test_a_cache_the_engine_cannot_grow_in_place_is_said_once_and_changes_no_token(served, monkeypatch, caplog):
    """A model whose cache layers are not transformers' plain DynamicLayer (another layer type) is
    decoded with its own cache, copied each step: the same tokens, and a warning that says so, once."""
    import logging

    import transformers
    from transformers.cache_utils import DynamicLayer

    s = _lively(served["tiny-gen/zero-shot"])
    plain, _ = _decode_all(s, reuse=True)

    class OtherLayer(DynamicLayer):
        pass

    class OtherCache(transformers.DynamicCache):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.layers = [OtherLayer() for _ in self.layers]

    monkeypatch.setattr(transformers, "DynamicCache", OtherCache)
    with caplog.at_level(logging.WARNING, logger="tunewise.serve.engine"):
        other, _ = _decode_all(s, reuse=True)
    said = [r.getMessage() for r in caplog.records if "does not grow in place" in r.getMessage()]
    assert len(said) == 1 and "OtherLayer" in said[0], said
    assert other == plain


def test_a_few_shot_rung_decodes_its_whole_prompt(served_projects, tmp_path):
    """Random few-shot examples are the prompt's shared prefix, which prompt_ids sets as it renders:
    read before it, a lone request's prompt was its last token alone."""
    import shutil

    from tunewise.config import load_config
    from tunewise.ladder import run_ladder
    from tunewise.serve.registry import load_served

    project = shutil.copytree(served_projects[1], tmp_path / "gen")
    run_ladder(load_config(project, ["few_shot.k=2", "few_shot.sets=1"]), project, ["few-shot"])
    s = _lively(load_served([project])["tiny-gen/few-shot"])
    rung = s.rung
    rung.config = rung.config.model_copy(update={"eval": rung.config.eval.model_copy(update={"max_new_tokens": 4})})
    rung.tokenizer.decode = Words(None).decode  # this server's own copy: tokens shown as words, both paths
    want = [rung.predict([Record(str(i), t, None)])[0].output for i, t in enumerate(PROMPTS[:3])]
    engine = DecodeEngine(s, lambda job, delta: None)
    jobs = [_Job(t, 4) for t in PROMPTS[:3]]
    for job in jobs:
        engine.join(job)
    while engine.active:
        engine.step()
    assert [j.result.output for j in jobs] == want


@pytest.mark.parametrize("rung", ["lora", "few-shot"])
def test_a_classifiers_shared_prefix_runs_once_for_every_batch_and_changes_no_score(rung, served, served_projects,
                                                                                  tmp_path, monkeypatch):
    """The server scores labels from the rung's shared prefix (instruction, fixed few-shot examples),
    computed once for every batch, not once per batch as the ladder's one call does: the same labels
    and scores as the rung's own call on all the records at once."""
    import dataclasses
    import shutil

    from tunewise.config import load_config
    from tunewise.evaluate import decode
    from tunewise.ladder import run_ladder
    from tunewise.rungs.saved import request_record
    from tunewise.serve.batching import run_group
    from tunewise.serve.registry import load_served

    if rung == "few-shot":
        project = shutil.copytree(served_projects[0], tmp_path / "cls")
        run_ladder(load_config(project, ["few_shot.k=2", "few_shot.sets=1"]), project, ["few-shot"])
        s = load_served([project])["tiny/few-shot"]
    else:
        s = dataclasses.replace(served["tiny/lora"])  # its prefix not yet computed
    # The last request brings its own system turn: it does not start with the rung's prefix, and runs whole.
    turns = [{"role": "system", "content": "You sort news."}, {"role": "user", "content": PROMPTS[0]}]
    records = [request_record(t) for t in PROMPTS] + [request_record(PROMPTS[0], turns)]
    with s.context():
        want = s.rung.predict(records)
        own = s.rung.full_prompt_ids(records[-1:])[0]
    calls = []
    real = decode.cache_prefix
    monkeypatch.setattr(decode, "cache_prefix", lambda model, ids: calls.append(len(ids)) or real(model, ids))
    got = [p for batch in (records[:2], records[2:4], records[4:]) for p in run_group(s, batch, None)]
    ids = s.prefix()[0]
    assert len(ids) >= decode.MIN_SHARED_PREFIX and own[:len(ids)] != ids
    # once for every batch; the request that does not start with it alone (its prompt but the last token)
    assert calls == [len(ids), len(own) - 1], calls
    assert [p.output for p in got] == [p.output for p in want]
    for a, b in zip(got, want, strict=True):
        assert a.scores == pytest.approx(b.scores, abs=1e-5)
        assert a.prompt_tokens == b.prompt_tokens


def test_requests_prefilled_together_answer_as_each_alone(served):
    """Requests that arrive together are prefilled in one forward (left-padded after the shared
    prefix, each row at its own positions, or packed with the step of a batch already decoding):
    the same first-token logits and the same tokens as each alone."""
    import torch

    s = _lively(served["tiny-gen/zero-shot"])
    from tunewise.serve.attention import PACKED

    firsts = []  # each prefill's last-position logits, row by row

    def first_logits(m, a, kw, out):
        if PACKED.get() is not None:  # prompts packed with the running batch's step: theirs come first
            firsts.extend(out.logits[0, : len(PACKED.get().segments)])
        elif kw["input_ids"].shape[1] > 1 and kw.get("attention_mask") is not None:
            firsts.extend(out.logits[:, -1])

    hook = s.rung.model.register_forward_hook(first_logits, with_kwargs=True)
    prompts = [p + " and more words" * (i % 3) for i, p in enumerate(PROMPTS)]  # different lengths
    budgets = [6, 3, 6, 1, 5, 6]
    import copy

    rung = s.rung
    rung.tokenizer = copy.copy(rung.tokenizer)  # not the session's: its tokens shown as words, both paths
    rung.tokenizer.decode = Words(None).decode
    want = []  # the ladder's batch-at-once path, one prompt at a time
    for p, n in zip(prompts, budgets, strict=True):
        rung.config = rung.config.model_copy(update={"eval": rung.config.eval.model_copy(update={"max_new_tokens": n})})
        want.append(rung.predict([Record("x", p, None)])[0].output)
    ref = DecodeEngine(s, lambda job, delta: None)
    with torch.inference_mode():  # each whole prompt alone, no cache, no padding
        alone_logits = [rung.model(input_ids=torch.tensor([ref._prompt(_Job(p, 1).record)])).logits[0, -1]
                        for p in prompts]
    firsts[:] = []
    engine = DecodeEngine(s, lambda job, delta: None)
    jobs = [_Job(p, n) for p, n in zip(prompts, budgets, strict=True)]
    engine.join_many(jobs[:2])
    engine.step()  # the first two decode while the other four arrive together
    engine.join_many(jobs[2:])  # packed with the running two's next step
    assert engine.prefix_hits == len(jobs) and engine.packed == 4
    while engine.active:
        engine.step()
    hook.remove()
    together = firsts[-len(prompts):]
    for a, b in zip(alone_logits, together, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)
    assert len({w for out in want for w in out.split()}) > 3  # varied answers
    assert [j.result.output for j in jobs] == want


def test_the_engine_decodes_in_the_rungs_precision(served, monkeypatch):
    """A rung measured with bf16 matmuls (eval.precision) generates with them when served, and its
    decode steps (one token per sequence) run the engine's decode attention (serve/attention.py)."""
    import copy
    import dataclasses

    import torch

    from tunewise.serve.attention import DECODING, NAME

    s = served["tiny-gen/zero-shot"]
    rung = s.rung
    seen = []
    hook = rung.model.register_forward_pre_hook(
        lambda m, a, kw: seen.append((torch.is_autocast_enabled("cpu"), DECODING.get(), kw["input_ids"].shape[1])),
        with_kwargs=True)
    try:
        for precision in ("fp32", "bf16"):
            r = dataclasses.replace(s, rung=copy.copy(rung))
            r.rung.config = rung.config.model_copy(update={"eval": rung.config.eval.model_copy(update={"precision": precision})})
            engine = DecodeEngine(r, lambda job, delta: None)
            assert rung.model.config._attn_implementation == NAME
            engine.join(_Job("the market shares news", 3))
            while engine.active:
                engine.step()
            assert seen and all(auto == (precision == "bf16") for auto, _, _ in seen), (precision, seen)
            assert {(n == 1) for _, decoding, n in seen if decoding} == {True}  # steps, not prefills
            assert sum(decoding for _, decoding, _ in seen) == 2  # the 2nd and 3rd token
            seen.clear()
    finally:
        hook.remove()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_lora_generation_rung_decodes_with_its_adapter_as_the_ladder_did(tmp_path, tiny_model_dir, precision,
                                                                           monkeypatch):
    """A generation LoRA rung on the base it shares with zero-shot: the engine (prefills together,
    joins mid-batch) answers with the adapter on, as the rung's batch path does, and the zero-shot rung
    beside it with the adapter off; in bf16 too, on the weights the server keeps in bf16 (bf16 autocast
    runs on any CPU; the check that refuses it where it is not native is switched off)."""
    import copy

    import torch
    from serve_projects import FAST, _generation_project

    from tunewise.config import load_config
    from tunewise.ladder import run_ladder
    from tunewise.serve.registry import load_served

    project = _generation_project(tmp_path / "gen", tiny_model_dir)
    monkeypatch.setattr("tunewise.evaluate.decode.native_bf16", lambda: True)
    run_ladder(load_config(project, [*FAST, "train.learning_rate=0.3", f"eval.precision={precision}"]), project,
               ["zero-shot", "lora"])
    served = load_served([project])
    stored = {p.dtype for n, p in served["tiny-gen/lora"].rung.model.named_parameters() if "base_layer" in n}
    assert stored == {torch.bfloat16 if precision == "bf16" else torch.float32}
    outputs = {}
    for mid in ("tiny-gen/lora", "tiny-gen/zero-shot"):
        s = served[mid]
        rung = s.rung
        rung.tokenizer = copy.copy(rung.tokenizer)  # this server's own: tokens shown as words, both paths
        rung.tokenizer.decode = Words(None).decode
        want = []
        for p in PROMPTS:
            with s.context(), torch.inference_mode():
                want.append(rung.predict([Record("x", p, None)])[0].output)
        engine = DecodeEngine(s, lambda job, delta: None)
        jobs = [_Job(p, 6) for p in PROMPTS]
        engine.join_many(jobs[:3])  # the engine selects the rung's adapter itself
        engine.step()
        engine.join_many(jobs[3:])
        while engine.active:
            engine.step()
        assert [j.result.output for j in jobs] == want, mid
        outputs[mid] = want
    assert outputs["tiny-gen/lora"] != outputs["tiny-gen/zero-shot"]  # the adapter was on for one, off for the other


def test_a_bf16_rung_sharing_its_model_with_an_fp32_rung_is_said(tmp_path, tiny_model_dir, monkeypatch, caplog):
    """bf16 weights only when every rung on a loaded model computes in bf16; otherwise the weights stay
    fp32 and the server says which rungs run slower for it."""
    import logging

    import torch
    from serve_projects import _generation_project

    from tunewise.config import load_config
    from tunewise.ladder import run_ladder
    from tunewise.serve.registry import load_served

    monkeypatch.setattr("tunewise.evaluate.decode.native_bf16", lambda: True)
    fast, slow = _generation_project(tmp_path / "a", tiny_model_dir), _generation_project(tmp_path / "b", tiny_model_dir)
    (slow / "tunewise.yaml").write_text((slow / "tunewise.yaml").read_text().replace("name: tiny-gen", "name: tiny-gen-fp32"))
    run_ladder(load_config(fast, ["eval.precision=bf16"]), fast, ["zero-shot"])
    run_ladder(load_config(slow), slow, ["zero-shot"])
    with caplog.at_level(logging.WARNING, logger="tunewise.serve.registry"):
        served = load_served([fast, slow])
    assert served["tiny-gen/zero-shot"].rung.model is served["tiny-gen-fp32/zero-shot"].rung.model
    assert {p.dtype for p in served["tiny-gen/zero-shot"].rung.model.parameters()} == {torch.float32}
    said = [r.getMessage() for r in caplog.records if "stay fp32" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("tiny-gen/zero-shot share") and "tiny-gen-fp32/zero-shot" in said[0]


def test_a_rung_off_the_engine_says_why_and_so_does_its_stream(served, tmp_path, monkeypatch, caplog):
    """A generation rung the engine cannot run answers a batch at once: said at start (with why) and in
    the notes of a stream, whose one chunk is the finished answer."""
    import logging

    from tunewise.config import ServeConfig
    from tunewise.serve.app import create_app
    from tunewise.serve.engine import batch_reason
    from tunewise.train.methods import PROMPT_LEARNING

    gen = served["tiny-gen/zero-shot"]
    assert batch_reason(gen) is None
    monkeypatch.setattr(gen.rung, "method", PROMPT_LEARNING[0], raising=False)  # as a prefix/prompt-tuned rung
    why = batch_reason(gen)
    assert why and PROMPT_LEARNING[0] in why and not continuous(gen)
    with caplog.at_level(logging.INFO, logger="tunewise.serve.app"), \
            Server(create_app(served, ServeConfig(), tmp_path / "log.sqlite")) as s:
        r = httpx.post(f"{s.url}/chat/completions", timeout=120, json={
            "model": "tiny-gen/zero-shot", "stream": True, "max_tokens": 3,
            "messages": [{"role": "user", "content": "the news"}]})
    assert r.status_code == 200 and f"streamed as one finished answer: {why}" in r.text
    assert "tiny-gen/zero-shot generates a batch at once" in caplog.text and why in caplog.text
