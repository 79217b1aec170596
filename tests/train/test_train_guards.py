"""Correctness guards fail loudly before training, and their messages say what to fix."""

from __future__ import annotations

import json

import pytest
import torch

from tunewise.config import ConfigError, load_config
from tunewise.core import Record
from tunewise.models.chat import PromptBuilder, TemplateError
from tunewise.models.load import load, load_tokenizer
from tunewise.train.callbacks import HistoryCallback
from tunewise.train.common import TrainingGuardError, check_same_template
from tunewise.train.dpo import PreferenceDataError, preference_splits, read_preferences
from tunewise.train.methods import MethodError, check_precision
from tunewise.train.sft import (
    IGNORE,
    PackedCollator,
    PadCollator,
    check_loss_mask,
    shared_prefix_length,
    shared_prefix_loss,
    sparse_causal_loss,
    tokenize_examples,
    train_adapter,
)


@pytest.fixture
def builder(tiny_project, tiny_model_dir):
    return PromptBuilder(load_config(tiny_project).task, load_tokenizer(tiny_model_dir))


def _rec(i: int, text: str = "the market shares profit", target: str = "business") -> Record:
    return Record(id=f"r{i}", input=text, target=target, source=f"rows.jsonl:{i}")


def test_template_without_an_end_of_turn_token_fails_before_training(make_config, splits, tiny_model_dir, tmp_path):
    model, tok, _ = load(str(tiny_model_dir))
    tok.chat_template = tok.chat_template.replace("'<|im_end|>'", "'\\n\\n'")
    with pytest.raises(TemplateError, match="never learn to stop"):
        train_adapter(model, tok, make_config(), splits.train, splits.val, tmp_path)
    assert not (tmp_path / "checkpoints").exists()


def test_template_whose_end_of_turn_is_not_eos_trains_on_it(make_config, splits, tiny_model_dir, tmp_path):
    model, tok, _ = load(str(tiny_model_dir))
    tok.chat_template = tok.chat_template.replace("'<|im_end|>'", "'<|endoftext|>'")
    end = tok.convert_tokens_to_ids("<|endoftext|>")
    assert end != tok.eos_token_id
    builder = PromptBuilder(make_config().task, tok)
    rows = tokenize_examples(splits.train[:2], builder, 64)
    assert all([t for t in r["labels"] if t != IGNORE][-1] == end for r in rows)
    result = train_adapter(model, tok, make_config(), splits.train, splits.val, tmp_path)
    assert result.steps == 2


def test_serving_with_another_template_than_training_fails(tmp_path, tiny_model_dir):
    from tunewise.workspace import write_json

    tok = load_tokenizer(tiny_model_dir)
    write_json(tmp_path / "tunewise-train.json", {"chat_template_sha256": "0" * 64})
    with pytest.raises(TrainingGuardError, match="different chat template"):
        check_same_template(tmp_path, tok)


def test_loss_mask_covers_answer_and_eos_even_when_pad_is_eos(builder):
    rows = tokenize_examples([_rec(1), _rec(2, "the match")], builder, 64)
    eos = builder.tokenizer.eos_token_id
    for row in rows:
        answer = [t for t in row["labels"] if t != IGNORE]
        assert answer and answer[-1] == eos
        assert row["input_ids"][-len(answer):] == answer  # labels sit on the answer tokens only
    check_loss_mask(PadCollator(pad_id=eos)(rows), eos)  # pad == eos still trains the EOS


def test_empty_loss_mask_and_masked_eos_are_refused():
    ids = torch.tensor([[5, 6, 7]])
    with pytest.raises(TrainingGuardError, match="loss mask is empty"):
        check_loss_mask({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.full_like(ids, IGNORE)}, 2)
    with pytest.raises(TrainingGuardError, match="end-of-turn token"):
        check_loss_mask({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.tensor([[IGNORE, 6, 7]])}, 2)
    with pytest.raises(TrainingGuardError, match="padding positions"):
        check_loss_mask({"input_ids": ids, "attention_mask": torch.tensor([[1, 1, 0]]), "labels": torch.tensor([[IGNORE, 2, 2]])}, 2)


def test_answer_without_eos_is_refused(builder):
    class NoEos(PromptBuilder):  # a prompt format that forgets to close the answer
        end_of_answer = property(lambda self: "")

    with pytest.raises(TrainingGuardError, match="does not end with the end-of-turn token"):
        tokenize_examples([_rec(1)], NoEos(builder.task, builder.tokenizer), 64)


def test_length_policy_error_drop_and_truncate(builder):
    long_text = " ".join(["market shares profit"] * 30)
    recs = [_rec(1), _rec(2, long_text)]
    with pytest.raises(TrainingGuardError, match=r"1 training examples exceed train.max_length=40 .*length_policy"):
        tokenize_examples(recs, builder, 40)
    assert len(tokenize_examples(recs, builder, 40, "drop")) == 1
    rows = tokenize_examples(recs, builder, 40, "truncate-input")
    assert len(rows) == 2 and all(len(r["input_ids"]) <= 40 for r in rows)
    assert rows[1]["labels"][-1] == builder.tokenizer.eos_token_id


def test_sparse_logits_and_padding_free_give_the_same_loss(builder, tiny_model_dir):
    model = load(str(tiny_model_dir))[0]
    rows = tokenize_examples([_rec(1), _rec(2, "the match team goal cup player", "sports"), _rec(3, "the phone")],
                             builder, 64)
    padded = PadCollator(builder.tokenizer.pad_token_id)(rows)
    full = model(**padded).loss
    sparse = sparse_causal_loss(model, padded)
    packed = sparse_causal_loss(model, PackedCollator()(rows))
    torch.testing.assert_close(sparse, full, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(packed, full, rtol=1e-5, atol=1e-6)


def test_shared_prefix_gives_the_same_loss_and_gradients(builder, tiny_model_dir):
    """The instruction every row shares, run once per batch, trains exactly as running it per row."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = get_peft_model(load(str(tiny_model_dir))[0],
                           LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear"))
    for name, p in model.named_parameters():
        if "lora_B" in name:  # B starts at zero; non-zero B makes the prefix's gradient path count
            torch.nn.init.normal_(p, std=0.1)
    model.train()
    rows = tokenize_examples([_rec(1), _rec(2, "the match team goal cup player", "sports"), _rec(3, "the phone")],
                             builder, 64)
    batch = PadCollator(builder.tokenizer.pad_token_id)(rows)
    prefix = shared_prefix_length(batch)
    assert prefix >= 8 and bool((batch["labels"][:, : prefix + 1] == IGNORE).all())

    def loss_and_grads(fn):
        model.zero_grad()
        loss = fn()
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    ref, ref_grads = loss_and_grads(lambda: sparse_causal_loss(model, batch))
    got, got_grads = loss_and_grads(lambda: shared_prefix_loss(model, batch, prefix))
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    for name, g in ref_grads.items():
        torch.testing.assert_close(got_grads[name], g, rtol=1e-4, atol=1e-6, msg=name)
    # Rows that differ from their first token share nothing; a packed batch is left alone.
    other = PadCollator(builder.tokenizer.pad_token_id)([{"input_ids": [5, *r["input_ids"][1:]], "labels": r["labels"]}
                                                         if i else r for i, r in enumerate(rows)])
    assert shared_prefix_length(other) == 0
    assert shared_prefix_length(PackedCollator()(rows)) == 0


def test_val_loss_on_the_sparse_path_equals_the_dense_one(builder, tiny_model_dir, tmp_path):
    """The val evaluations that choose the checkpoint run the head on answer tokens only and the shared
    prefix once, as training does: the same val loss as transformers' dense evaluation, fewer tokens run."""
    from transformers import TrainingArguments

    from tunewise.train.sft import make_trainer

    model = load(str(tiny_model_dir))[0]
    rows = tokenize_examples([_rec(1), _rec(2, "the match team goal cup player", "sports"), _rec(3, "the phone"),
                              _rec(4, "a bank and its profit", "business"), _rec(5, "the goal", "sports")], builder, 64)
    args = TrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=3, report_to=[], use_cpu=True)

    def val_loss(sparse: bool):
        trainer = make_trainer(sparse, True, model=model, args=args, eval_dataset=rows,
                               data_collator=PadCollator(builder.tokenizer.pad_token_id))
        return trainer.evaluate()["eval_loss"], trainer

    dense, _ = val_loss(False)
    sparse, trainer = val_loss(True)
    assert sparse == pytest.approx(dense, rel=1e-5)
    assert trainer.evaluated_tokens == sum(len(r["input_ids"]) for r in rows)
    assert trainer.eval_shared_tokens > 0  # each val batch's shared prefix ran once


def test_mixed_precision_without_hardware_is_a_clear_error(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    from tunewise.evaluate import decode

    monkeypatch.setattr(decode, "native_bf16", lambda: False)
    with pytest.raises(MethodError, match="bf16 needs a GPU with bf16 or a CPU with AVX512-BF16"):
        check_precision("bf16")
    with pytest.raises(MethodError, match="fp16 needs a CUDA GPU"):
        check_precision("fp16")
    monkeypatch.setattr(decode, "native_bf16", lambda: True)  # a CPU with AVX512-BF16: bf16 trains there
    check_precision("bf16")


def test_mlflow_file_store_is_refused_before_training(make_config, monkeypatch):
    from tunewise.train.methods import check_method

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(MethodError, match="train.mlflow_uri=file:///tmp/mlruns: MLflow 3 refuses file stores"):
        check_method(make_config("train.mlflow_uri=file:///tmp/mlruns"))


def test_save_steps_must_fall_on_an_eval(tiny_project):
    with pytest.raises(ConfigError, match="train.save_steps"):
        load_config(tiny_project, ["train.eval_steps=2", "train.save_steps=3"])
    with pytest.raises(ConfigError, match="train.method"):
        load_config(tiny_project, ["train.method=adapterfusion"])


def test_preference_file_errors_name_file_and_line(tmp_path, make_config):
    bad = tmp_path / "prefs.jsonl"
    bad.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": "q", "chosen": "a"}\n')
    with pytest.raises(PreferenceDataError, match=r"prefs.jsonl:2: missing field 'rejected'"):
        read_preferences(bad)
    with pytest.raises(PreferenceDataError, match="train.dpo.data"):
        preference_splits(make_config("train.method=dpo"), [], [], tmp_path)


def test_preference_file_in_message_form_as_a_json_array(tmp_path):
    rows = [{"prompt": [{"role": "system", "content": "be kind"}, {"role": "user", "content": f"q{i}"}],
             "chosen": [{"role": "assistant", "content": "good"}], "rejected": [{"role": "assistant", "content": "bad"}]}
            for i in range(3)]
    path = tmp_path / "prefs.json"
    path.write_text(json.dumps(rows))
    read = read_preferences(path)
    assert [(r["chosen"], r["rejected"]) for r in read] == [("good", "bad")] * 3
    assert read[0]["messages"][0] == {"role": "system", "content": "be kind"}


def test_overfitting_warning_when_the_gap_grows():
    from types import SimpleNamespace

    h = HistoryCallback(gap=0.5)
    for step, (train, val) in enumerate([(1.0, 1.1), (0.5, 1.2), (0.2, 1.5)], 1):
        state = SimpleNamespace(global_step=step, epoch=step)
        h.on_log(None, state, None, logs={"loss": train})
        h.on_log(None, state, None, logs={"eval_loss": val})
    assert len(h.warnings) == 2 and "overfitting" in h.warnings[0] and "step 2" in h.warnings[0]
    assert [p["loss"] for p in h.curves()["val"]] == [1.1, 1.2, 1.5]


def test_dpo_renders_message_rows_as_their_turns(tmp_path, tiny_project, tiny_model_dir):
    from tunewise.models.chat import PromptBuilder
    from tunewise.models.load import load_tokenizer
    from tunewise.train.dpo import _render

    rows = [{"prompt": [{"role": "system", "content": "be kind"}, {"role": "user", "content": "the market"}],
             "chosen": "good", "rejected": "bad"}, {"prompt": "the match", "chosen": "good", "rejected": "bad"}]
    path = tmp_path / "prefs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    builder = PromptBuilder(load_config(tiny_project).task, load_tokenizer(tiny_model_dir))
    first, second = _render(read_preferences(path), builder)
    assert "<|im_start|>system\nbe kind" in first["prompt"] and first["prompt"].endswith("<|im_start|>assistant\n")
    assert second["prompt"] == builder.prompt("the match") and first["chosen"] == "good" + builder.end_of_answer


def test_kto_data_errors_name_file_and_line(tmp_path, make_config):
    from tunewise.train.kto import kto_rows, read_unpaired

    only_good = tmp_path / "kto.jsonl"
    only_good.write_text('{"prompt": "p", "completion": "a", "label": true}\n{"prompt": "q", "completion": "b", "label": true}\n')
    with pytest.raises(PreferenceDataError, match="KTO needs desirable and undesirable answers.*found only desirable"):
        read_unpaired(only_good)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"prompt": "p", "completion": "a", "label": True}, {"prompt": "q", "completion": "b"}]))
    with pytest.raises(PreferenceDataError, match=r"bad.json:2: field 'label' must be true or false"):
        read_unpaired(bad)
    with pytest.raises(PreferenceDataError, match="set train.kto.data"):
        kto_rows(make_config("train.method=kto"), tmp_path)
