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
