import torch

from tunewise.config import TaskConfig
from tunewise.evaluate.decode import cache_prefix, common_prefix_length, label_token_ids, score_labels
from tunewise.models.chat import PromptBuilder
from tunewise.models.load import load


def naive(model, prompt, answer, prefix=()):
    ids = torch.tensor([list(prefix) + prompt + answer])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    start = len(prefix) + len(prompt) - 1
    return sum(logp[start + k, t].item() for k, t in enumerate(answer))


def test_batched_cached_scores_equal_one_by_one_scores(tiny_model_dir):
    model, tok, _ = load(str(tiny_model_dir))
    task = TaskConfig(type="classification", labels=["business", "sports", "tech", "x"], instruction="topic")
    b = PromptBuilder(task, tok)
    texts = ["market profit", "the match goal cup player team", "phone", "the vote of the party government minister"]
    prompts = [b.encode(t, None)[0] for t in texts]
    labels = label_token_ids(tok, b, task.labels)
    assert len({len(x) for x in labels}) > 1  # labels of different token lengths exercise padding
    scores = score_labels(model, prompts, labels, tok.pad_token_id, batch_size=3)
    for i, p in enumerate(prompts):
        for j, lab in enumerate(labels):
            assert abs(scores[i, j].item() - naive(model, p, lab)) < 1e-4
    prefix = tok("<|im_start|>system\nshared examples<|im_end|>\n", add_special_tokens=False)["input_ids"]
    cached = score_labels(model, prompts, labels, tok.pad_token_id, batch_size=2, prefix_cache=cache_prefix(model, prefix))
    for i, p in enumerate(prompts):
        for j, lab in enumerate(labels):
            assert abs(cached[i, j].item() - naive(model, p, lab, prefix)) < 1e-4


def test_template_check_and_eos_closing(tiny_model_dir):
    _, tok, _ = load(str(tiny_model_dir))
    b = PromptBuilder(TaskConfig(type="classification", labels=["a", "b"]), tok)
    b.check_template()
    assert b.answer("sports").endswith("<|im_end|>")


def test_common_prefix_leaves_every_prompt_a_token():
    assert common_prefix_length([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 9]]) == 2
    assert common_prefix_length([[1, 2], [1, 2]]) == 1
    assert common_prefix_length([]) == 0


def test_grouped_attention_without_copied_heads_gives_the_same_scores(tiny_model_dir, monkeypatch):
    """On a CPU, loading a model makes attention read grouped key/value heads in place (SDPA's enable_gqa,
    also with the padding mask): the scores are those of transformers' default, which copies each head."""
    from tunewise.models.load import GQA_SWITCH

    monkeypatch.delenv(GQA_SWITCH, raising=False)
    model, tok, _ = load(str(tiny_model_dir))
    assert model.config.num_key_value_heads < model.config.num_attention_heads  # grouped heads to exercise
    assert torch.cuda.is_available() or __import__("os").environ[GQA_SWITCH] == "1"
    task = TaskConfig(type="classification", labels=["business", "sports", "tech"], instruction="topic")
    b = PromptBuilder(task, tok)
    prompts = [b.encode(t, None)[0] for t in ["market profit", "the match goal cup player team", "phone"]]
    labels = label_token_ids(tok, b, task.labels)
    grouped = score_labels(model, prompts, labels, tok.pad_token_id, batch_size=3)
    monkeypatch.setenv(GQA_SWITCH, "0")
    copied = score_labels(model, prompts, labels, tok.pad_token_id, batch_size=3)
    torch.testing.assert_close(grouped, copied, rtol=1e-5, atol=1e-5)
