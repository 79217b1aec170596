"""Money from measured seconds and tokens: what a rung costs to train, per 1,000 requests, per month.

The model is deliberately simple, so a reader can check it by hand:

- training costs ``train_seconds`` of the machine at ``cost.usd_per_hour``, once;
- a request costs its measured inference time on the same machine, plus its prompt tokens at
  ``cost.usd_per_1m_prompt_tokens`` (non-zero only for a hosted model billed per token). Few-shot
  and RAG pay for their long prompts on every call; a fine-tuned model pays for its training once.
- the break-even volume is the number of requests after which a trained rung's cheaper requests
  have paid back its training cost, against a rung that needs no training.
"""

from __future__ import annotations

import math

from tunewise.config import CostConfig


def rung_cost(train_seconds: float, ms_per_example: float, prompt_tokens_per_request: float,
              prices: CostConfig) -> dict:
    usd_per_second = prices.usd_per_hour / 3600
    train_usd = train_seconds * usd_per_second
    per_1k = 1000 * (ms_per_example / 1000 * usd_per_second
                     + prompt_tokens_per_request * prices.usd_per_1m_prompt_tokens / 1e6)
    return {
        "train_usd": round(train_usd, 6),
        "usd_per_1k_requests": round(per_1k, 6),
        "usd_first_month": round(train_usd + per_1k * prices.requests_per_month / 1000, 6),
        "requests_per_month": prices.requests_per_month,
    }


def break_even_requests(trained: dict, reference: dict) -> int | None:
    """Requests after which ``trained`` (training + cheaper requests) costs less than ``reference``.

    Both dicts come from ``rung_cost``. None when the trained rung's requests are not cheaper, so
    its training never pays back; 0 when it costs nothing more to train than the reference.
    """
    extra_train = trained["train_usd"] - reference["train_usd"]
    saving_per_request = (reference["usd_per_1k_requests"] - trained["usd_per_1k_requests"]) / 1000
    if extra_train <= 0:
        return 0
    if saving_per_request <= 0:
        return None
    return math.ceil(extra_train / saving_per_request)
