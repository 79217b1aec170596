"""Near-duplicates and leakage on short texts: one inserted word, recasing and punctuation are caught;
distinct texts that share a template are not paired; the audit and prepare see the same."""

from __future__ import annotations

import json

import pytest

from tunewise.config import load_config
from tunewise.data import dedup
from tunewise.data.audit import audit_project
from tunewise.data.prepare import prepare_project


def _words(n: int, tag: str) -> list[str]:
    return [f"{tag}{i}" for i in range(n)]


@pytest.mark.parametrize("n", [10, 12, 15, 20, 25, 30])
def test_one_inserted_word_with_a_recase_and_a_comma_is_a_near_duplicate(n):
    words = _words(n, "w")
    edited = words[: n // 2] + ["inserted"] + words[n // 2 :]
    edited[1] = edited[1].upper()
    edited[3] += ","
    pairs = dedup.near_pairs([" ".join(words), " ".join(edited), " ".join(_words(n, "x"))], 0.8)
    assert [(i, j) for i, j, _ in pairs] == [(0, 1)]
    assert pairs[0][2] == pytest.approx((n - 1) / (n + 1), abs=1e-3)  # the documented (n-1)/(n+1)


def test_recasing_punctuation_and_spacing_are_invisible():
    assert dedup.tokens("Don't  STOP, believing!") == dedup.tokens("dont stop believing")
    assert dedup.tokens("dont stop believing") == ["dont", "stop", "believing"]
    assert dedup.near_pairs(["Where is my order?", "where is my order", "WHERE, is my... order!!"], 0.99) == [
        (0, 1, 1.0), (0, 2, 1.0), (1, 2, 1.0)]


def test_distinct_texts_sharing_a_template_are_not_paired():
    texts = ["What is the refund policy for shoes?", "What is the refund policy for jackets?",
             "Can I change the delivery address after my order has shipped?",
             "Can I change the billing address after my order has shipped?",
             "How long does shipping to Canada take for a standard parcel?",
             "How long does shipping to Mexico take for a standard parcel?"]
    assert dedup.near_pairs(texts, 0.8) == []


def test_scripts_without_spaces_compare_by_character():
    base = "我想退货因为鞋子太小了请问怎么办"
    assert dedup.tokens("東京に住む") == ["東", "京", "に", "住", "む"]
    pairs = dedup.near_pairs([base, base[:8] + "真" + base[8:], "今天的天气非常好我们去公园散步吧"], 0.8)
    assert [(i, j) for i, j, _ in pairs] == [(0, 1)]


def test_lsh_proposes_pairs_at_the_threshold_and_says_how_reliably():
    for threshold in (0.7, 0.8, 0.9):
        assert dedup.lsh_recall(threshold) >= 0.98
    assert "word and word-pair" in dedup.method(0.8) and "p=0.99" in dedup.method(0.8)
    assert dedup.lsh_recall(0.5) < 0.9  # below ~0.7 the audit line says so: it is not hidden


SHORT = {  # (label, text): distinct support questions of 10-14 words
    "b0": ("billing", "Why was I charged twice for the same order last month?"),
    "b1": ("billing", "Can I get an invoice with my company name and tax number?"),
    "b2": ("billing", "My card was declined but the money left my bank account anyway."),
    "b3": ("billing", "How do I switch from monthly billing to a yearly plan with a discount?"),
    "b4": ("billing", "Please cancel my subscription before the next payment is taken from my card."),
    "b5": ("billing", "Do you accept payment by bank transfer for orders from abroad?"),
    "b6": ("billing", "Can I change the billing address after my order has shipped?"),
    "b7": ("billing", "The discount code from your newsletter did not apply at checkout today."),
    "s0": ("shipping", "My parcel says delivered but nothing arrived at my front door yesterday."),
    "s1": ("shipping", "How long does shipping to Canada take for a standard parcel?"),
    "s2": ("shipping", "Can I change the delivery address after my order has shipped?"),
    "s3": ("shipping", "The courier left my package with a neighbour I have never met."),
    "s4": ("shipping", "Is express delivery available for addresses on the Scottish islands?"),
    "s5": ("shipping", "How long does shipping to Mexico take for a standard parcel?"),
    "s6": ("shipping", "My order has been stuck in customs for more than two weeks now."),
    "s7": ("shipping", "Can you ship two items from one order to different addresses?"),
}


@pytest.fixture
def short_project(tmp_path, tiny_model_dir):
    rows = [{"id": k, "text": t, "label": lab} for k, (lab, t) in SHORT.items()]
    # A near-duplicate: one word inserted, one word recased, a comma added (12 -> 13 words).
    rows.append({"id": "b0x", "label": "billing",
                 "text": "Why was I charged twice for the very same Order, last month?"})
    test = [  # t0 leaks s0 (one word inserted, a comma); t1 and t2 are new
        {"id": "t0", "label": "shipping",
         "text": "My parcel says delivered, but nothing ever arrived at my front door yesterday."},
        {"id": "t1", "text": "Why does the tracking page show a different courier than my email?", "label": "shipping"},
        {"id": "t2", "text": "I was billed in dollars although my account is set to euros.", "label": "billing"},
    ]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "data" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))
    (tmp_path / "tunewise.yaml").write_text(f"""name: short
task: {{type: classification, input_field: text, target_field: label, labels: [billing, shipping]}}
data: {{files: [data/train.jsonl], test_file: data/test.jsonl, seed: 1}}
model: {{base: {tiny_model_dir}}}
audit: {{mislabels: false, min_label_count: 2}}
""")
    return tmp_path


def test_short_near_duplicates_and_leaks_through_audit_and_prepare(short_project):
    audit, _, _ = audit_project(short_project)
    near, leak = audit["checks"]["near_duplicates"], audit["checks"]["leakage"]
    assert [(p["a"], p["b"]) for p in near["pairs"]] == [("b0", "b0x")]  # and no template pair (b6/s2, s1/s5)
    assert "word and word-pair" in near["method"]
    assert [(it["test_id"], it["train_id"], it["kind"]) for it in leak["items"]] == [("t0", "s0", "near")]

    folder, manifest = prepare_project(load_config(short_project), short_project)
    steps = {s["step"]: s for s in manifest["steps"]}
    assert steps["near_duplicates"]["dropped"] == 1 and "word and word-pair" in steps["near_duplicates"]["note"]
    assert steps["leakage"]["dropped"] == 1
    reasons = [json.loads(line)["reason"] for line in (folder / "rejects.jsonl").read_text().splitlines()]
    assert any(r.startswith("row b0x: near-duplicate of row b0") for r in reasons)
    assert any(r.startswith("row s0: leaks into test row t0") for r in reasons)
    kept = {json.loads(line)["id"] for name in ("train", "val")
            for line in (folder / f"{name}.jsonl").read_text().splitlines()}
    assert kept == set(SHORT) - {"s0"}
    assert "word and word-pair" in (folder / "DATACARD.md").read_text()
