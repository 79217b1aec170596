"""A plain-text corpus (task.type text): documents as token windows, and perplexity with its interval.

One way a document becomes what the model sees, in training and in scoring alike: its tokens, then the
EOS, cut into windows of at most ``train.max_length`` tokens that overlap by one token. So every token
after the document's first is predicted exactly once, from up to max_length - 1 tokens of context, and
none twice. Training takes the causal-LM loss on every predicted token (no prompt/answer split); scoring
sums each document's negative log-likelihood (NLL) over the same tokens, padding neither attended to
nor scored.

Perplexity is exp(Σ NLL / Σ tokens) over the test documents: the token-weighted mean NLL, so a long
document weighs by its tokens. Its 95% interval is a percentile bootstrap over documents (the unit
that was sampled; tokens of one document are not independent) of that token-weighted mean, mapped
through exp. The recommendation compares rungs on the same documents by each document's share of the
mean NLL (``n * NLL_i / Σ tokens``: their mean is log perplexity), lower being better
(``evaluate.score.LOWER_IS_BETTER``), so its margin is in nats per token (0.02 ≈ 2% of perplexity).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

MAX_BATCH_TOKENS = 4096
"""Most tokens in one scoring forward: the logits of a 49k vocabulary are 200 KB a token in fp32."""


def document_ids(tokenizer, text: str) -> list[int]:
    """A document's token ids, closed by the EOS (the boundary the model learns between documents)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids + ([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])


def windows(ids: list[int], max_length: int) -> list[list[int]]:
    """``ids`` cut into windows of at most ``max_length`` tokens overlapping by one: each window predicts
    its tokens after its first, so every token but the document's first is predicted exactly once."""
    if len(ids) <= max_length:
        return [ids]
    step, out, start = max_length - 1, [], 0
    while start < len(ids) - 1:
        out.append(ids[start:start + max_length])
        start += step
    return out


def corpus_windows(tokenizer, texts: list[str], max_length: int) -> tuple[list[list[list[int]]], int]:
    """Each text's windows, and how many texts were longer than ``max_length`` (cut into several)."""
    out = [windows(document_ids(tokenizer, t), max_length) for t in texts]
    return out, sum(len(w) > 1 for w in out)


def chunk_note(cut: int, total: int, max_length: int, windows_: int) -> str:
    """The one line that says long documents were cut (recorded with the run, shown in the report)."""
    return (f"task.type text: {cut} of {total} documents are longer than train.max_length={max_length} tokens and "
            f"were cut into windows overlapping by one token ({windows_} windows in all): every token is still "
            f"predicted once, with at most {max_length - 1} tokens of context")


@torch.inference_mode()
def window_nll(model, batch: list[list[int]], pad_id: int, batch_size: int,
               on_batch: Callable[[int], None] | None = None) -> list[float]:
    """Summed NLL of each window's tokens after its first, in right-padded batches of similar length;
    padded positions are masked out of attention and out of the sum."""
    model.eval()
    order = sorted(range(len(batch)), key=lambda i: len(batch[i]))
    out = [0.0] * len(batch)
    start = 0
    while start < len(order):
        size = batch_size  # shortest first: a chunk's last window is its widest
        while size > 1 and size * len(batch[order[min(start + size, len(order)) - 1]]) > MAX_BATCH_TOKENS:
            size -= 1
        chunk = order[start:start + size]
        width = max(len(batch[i]) for i in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            ids[row, : len(batch[i])] = torch.tensor(batch[i])
            mask[row, : len(batch[i])] = 1
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        taken = logp.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1) * mask[:, 1:]
        for row, i in enumerate(chunk):
            out[i] = float(-taken[row].sum())
        if on_batch:
            on_batch(len(chunk))
        start += len(chunk)
    return out


def evaluate_text(nll: np.ndarray, tokens: np.ndarray, bootstrap: int, seed: int) -> tuple[dict, dict[str, np.ndarray]]:
    """Perplexity of documents with summed NLLs ``nll`` over ``tokens`` predicted tokens each, its
    bootstrap interval over documents, and the per-document items the recommendation pairs."""
    nll, tokens = np.asarray(nll, dtype=float), np.asarray(tokens, dtype=float)
    total = tokens.sum()
    if not len(nll) or total <= 0:
        nan = float("nan")
        return {"perplexity": nan, "nll_per_token": nan, "tokens": 0, "documents": len(nll)}, {
            "perplexity": np.full(len(nll), np.nan)}
    from tunewise.evaluate.stats import bootstrap_ci

    mean = float(nll.sum() / total)
    lo, hi = bootstrap_ci(lambda n, t: n.sum() / max(t.sum(), 1), (nll, tokens), bootstrap, seed)
    metrics = {"perplexity": float(np.exp(mean)), "perplexity_ci": [float(np.exp(lo)), float(np.exp(hi))],
               "nll_per_token": mean, "nll_per_token_ci": [lo, hi], "tokens": int(total), "documents": len(nll)}
    # Each document's share of the mean NLL: their mean is log perplexity (lower is better).
    return metrics, {"perplexity": len(nll) * nll / total}
