"""Every script: text metrics and near-duplicates score a wrong answer low and a right one high in
Chinese, Japanese, Korean, Thai, Arabic and Cyrillic (before, only ASCII words counted)."""

from __future__ import annotations

import pytest

from tunewise.config import ProjectConfig
from tunewise.core import Prediction, Record
from tunewise.data.audit import leakage, near_duplicates
from tunewise.evaluate.text_metrics import evaluate_generation
from tunewise.tokens import words

# (reference, a right answer worded a little differently, a wrong answer: "I don't know")
CASES = {
    "chinese": ("法国的首都是巴黎。", "巴黎是法国的首都", "我不知道。"),
    "japanese": ("日本の首都は東京です。", "首都は東京です", "わかりません。"),
    "korean": ("한국의 수도는 서울입니다.", "수도는 서울입니다", "잘 모르겠어요."),
    "thai": ("เมืองหลวงของไทยคือกรุงเทพ", "กรุงเทพคือเมืองหลวงของไทย", "ฉันไม่ทราบ"),
    "arabic": ("عاصمة مصر هي القاهرة", "القاهرة هي عاصمة مصر", "لا أعرف الجواب"),
    "cyrillic": ("Столица России — Москва.", "Москва — столица России", "Я не знаю ответа."),
}


def _config() -> ProjectConfig:
    return ProjectConfig.model_validate({"task": {"type": "generation"}, "data": {"files": ["x.jsonl"]},
                                         "model": {"base": "m"}, "eval": {"bootstrap": 100}})


@pytest.mark.parametrize("script", CASES)
def test_content_f1_and_rouge_tell_right_from_wrong(script):
    ref, right, wrong = CASES[script]
    recs = [Record("1", "q", ref), Record("2", "q", ref)]
    _, items = evaluate_generation(_config(), recs, [Prediction("1", right), Prediction("2", wrong)])
    for metric in ("content_f1", "rouge_l"):
        good, bad = items[metric].tolist()
        assert good >= 0.5 and bad <= 0.2, (metric, good, bad)


@pytest.mark.parametrize("script", CASES)
def test_near_duplicates_and_leakage_in_every_script(script):
    ref, _, wrong = CASES[script]
    copy = ref.rstrip("。.") + "!"  # punctuation changed only: a duplicate in any script
    ref, copy, wrong = (" ".join([t] * 3) for t in (ref, copy, wrong))
    recs = [Record("a", ref, "x"), Record("b", copy, "x"), Record("c", wrong, "x")]
    pairs = {(p["a"], p["b"]) for p in near_duplicates(recs, 0.8)["pairs"]}
    assert ("a", "b") in pairs and not {("a", "c"), ("b", "c")} & pairs
    found = leakage(recs[:1], [Record("t1", copy, "x"), Record("t2", wrong, "x")], 0.8)
    assert [i["test_id"] for i in found["items"]] == ["t1"]


def test_words_of_each_script():
    assert words("巴黎是首都") == ["巴", "黎", "是", "首", "都"]
    assert words("กรุงเทพ") == ["ก", "รุ", "ง", "เ", "ท", "พ"]  # vowel and tone marks stay with their consonant
    assert words("كَتَبَ") == words("كتب") == ["كتب"]  # optional Arabic vowel marks do not split or change a word
    assert words("Москва, РОССИЯ") == ["москва", "россия"]
    assert words("ＡＢＣ１２") == ["abc12"] and words("don't stop") == ["dont", "stop"]
