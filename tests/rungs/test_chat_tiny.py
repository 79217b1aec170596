"""A chat project through the ladder on the tiny model: few-shot shows whole example conversations as
turns, LoRA trains on chat rows, and every rung answers the last assistant turn."""

from __future__ import annotations

import json

from tunewise.config import load_config
from tunewise.ladder import load_splits, run_ladder
from tunewise.rungs.table import build_rung

SYSTEM = {"role": "system", "content": "you are the news desk"}


def _write(folder, model_dir):
    rows = []
    topics = [("business", "market shares"), ("sports", "match goal"), ("tech", "phone games")]
    for i, (topic, words) in enumerate(topics * 6):
        turns = [SYSTEM, {"role": "user", "content": f"the {words}"}, {"role": "assistant", "content": f"{topic} news"}]
        if i % 3 == 0:  # some multi-turn rows, content as parts
            turns += [{"role": "user", "content": [{"type": "text", "text": "the topic"}]},
                      {"role": "assistant", "content": topic}]
        rows.append({"id": str(i), "messages": turns})
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "data" / "chats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "tunewise.yaml").write_text(f"""name: tiny-chat
task: {{type: generation, instruction: answer}}
data: {{files: [data/chats.jsonl], split: {{train: 0.6, val: 0.2, test: 0.2}}, seed: 1}}
model: {{base: {model_dir}}}
rungs: [few-shot, lora]
train: {{epochs: 1, batch_size: 4, learning_rate: 0.01, max_length: 96, eval_steps: 2, max_steps: 2,
        lora: {{r: 4, alpha: 8, dropout: 0.0}}}}
eval: {{batch_size: 8, bootstrap: 100, max_new_tokens: 4}}
few_shot: {{k: 2}}
""")
    return folder


def test_chat_project_few_shot_turns_and_lora(tmp_path, tiny_model_dir):
    project = _write(tmp_path / "chat", tiny_model_dir)
    config = load_config(project)
    splits = load_splits(config, project)
    few = build_rung("few-shot", config, project, tmp_path / "few", lambda d, t: (lambda n, **f: None))
    few.fit(splits.train, splits.val)
    rec = splits.test[0]
    text = few.render_record(few.builder(), rec, few.fixed)
    assert text.startswith("<|im_start|>system\nyou are the news desk\n\nanswer<|im_end|>")
    assert text.count("<|im_start|>system") == 1 and "system: " not in text
    shots = [few.pool[i] for i in few.fixed]
    answers = [m["content"] for s in shots for m in s.meta["messages"] if m["role"] == "assistant"]
    earlier = sum(m["role"] == "assistant" for m in rec.meta["messages"][:-1])
    assert text.count("<|im_start|>assistant\n") == len(answers) + earlier + 1
    for a in answers:
        assert f"<|im_start|>assistant\n{a}<|im_end|>" in text
    question = rec.meta["messages"][-2]["content"]  # content parts are joined when the row loads
    assert text.endswith(f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n")

    report = run_ladder(config, project, ["zero-shot", "lora"])
    ladder = json.loads((report / "ladder.json").read_text())
    assert [r["name"] for r in ladder["rungs"]] == ["zero-shot", "lora"]
    lora_dir = project / ladder["rungs"][1]["run_dir"]
    preds = [json.loads(x) for x in (lora_dir / "predictions.jsonl").read_text().splitlines()]
    assert [p["id"] for p in preds] == [r.id for r in splits.test]


def test_rag_renders_chat_rows_as_real_turns_with_the_passages_in_the_last_user_turn(tmp_path, tiny_model_dir,
                                                                                    tiny_encoder_dir):
    project = _write(tmp_path / "chat", tiny_model_dir)
    (project / "docs").mkdir()
    (project / "docs" / "desk.md").write_text("the market shares news desk business page\n\nthe match goal sports page\n")
    config = load_config(project, ["data.documents=docs", f"encoder.model={tiny_encoder_dir}",
                                   "retrieval.top_k=1", "retrieval.chunk_words=12"])
    splits = load_splits(config, project)
    rag = build_rung("rag", config, project, tmp_path / "rag", lambda d, t: (lambda n, **f: None))
    rag.fit(splits.train, splits.val)
    rec = next(r for r in splits.test if len(r.meta["messages"]) > 3)  # a multi-turn row
    text = rag.tokenizer.decode(rag.prompt_ids([rec])[0])
    # The row's own system turn (with the instruction), its earlier turns, then the passages next to the
    # question in the last user turn; no flattened "role: text" transcript.
    assert text.startswith("<|im_start|>system\nyou are the news desk\n\nanswer<|im_end|>")
    assert text.count("<|im_start|>user") == 2 and "user: " not in text
    question = rec.meta["messages"][-2]["content"]
    assert text.endswith(f"{question}<|im_end|>\n<|im_start|>assistant\n")
    last_user = text.rsplit("<|im_start|>user\n", 1)[1]
    assert last_user.startswith("Passages (cite the ones you use as [n]):\n[1] ")
