"""Near-duplicates and leakage judged on what varies: a long system prompt and a tool list shared by
every row do not make paraphrased requests duplicates; one-word edits and leaks are still found."""

from __future__ import annotations

import json

from tunewise.core import Record
from tunewise.data.audit import leakage, near_duplicates, shared_boilerplate
from tunewise.data.load import load_file

SYSTEM = ("You are the flight controller of a consumer drone. You translate the pilot's spoken requests into "
          "exactly one call of the tools below. Never invent a tool, never ask a question back, keep the drone "
          "inside the geofence, refuse anything that endangers people, and answer with the tool call only.")
TOOLS = [{"type": "function", "function": {"name": n, "description": f"{n} the drone", "parameters": {}}}
         for n in ("land", "take_off", "hover", "return_home", "take_photo", "record_video", "rotate", "climb")]
REQUESTS = [  # (request, tool): paraphrases of one request share the answer and little wording
    ("Can you bring the drone down to where we are?", "land"), ("Let's get the drone to land right here", "land"),
    ("Put it down on the ground now please", "land"), ("Get the thing up into the air", "take_off"),
    ("Start flying and lift off the pad", "take_off"), ("Stay where you are for a moment", "hover"),
    ("Hold position in the air and wait", "hover"), ("Come back to the spot you started from", "return_home"),
    ("Fly home to the launch point", "return_home"), ("Snap a picture of the lake below us", "take_photo"),
    ("Grab a still shot of this view", "take_photo"), ("Start filming the river bank", "record_video"),
    ("Begin recording a clip of the crowd", "record_video"), ("Turn around to face the other way", "rotate"),
    ("Spin ninety degrees to the left", "rotate"), ("Go higher by about twenty metres", "climb"),
]


def _rows(requests: list[tuple[str, str]]) -> list[dict]:
    return [{"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": req},
                          {"role": "assistant", "content": None, "tool_calls": [
                              {"id": "c", "type": "function", "function": {"name": tool, "arguments": "{}"}}]}],
             "tools": TOOLS} for req, tool in requests]


def _records(tmp_path, rows, name="d.jsonl") -> list[Record]:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return load_file(path).records


def test_paraphrases_under_a_shared_system_prompt_and_tools_are_not_duplicates(tmp_path):
    recs = _records(tmp_path, _rows(REQUESTS))
    assert near_duplicates(recs, 0.8)["count"] == 0
    found = shared_boilerplate(recs)
    assert found["count"] == 1 and found["rows"] == len(REQUESTS) and found["share"] == 1.0
    assert found["words"] == len(SYSTEM.split()) + 1  # the "system:" role word too
    assert found["tools"] == {"rows": len(REQUESTS), "share": 1.0}
    assert "shared by 100% of rows" in found["note"]
    assert "without the 1 lines shared" in near_duplicates(recs, 0.8)["compared_on"]


def test_one_word_inserted_in_the_user_turn_is_still_a_near_duplicate(tmp_path):
    edited = ("Snap a quick picture of the lake below us", "take_photo")  # one word added to row 10
    recs = _records(tmp_path, _rows([*REQUESTS, edited]))
    pairs = [(p["a"], p["b"]) for p in near_duplicates(recs, 0.8)["pairs"]]
    assert pairs == [(recs[9].id, recs[-1].id)]


def test_leakage_on_the_varying_part_is_still_found(tmp_path):
    train = _records(tmp_path, _rows(REQUESTS))
    test = _records(tmp_path, _rows([("Snap a quick picture of the lake below us", "take_photo"),
                                      ("Fly slowly along the coastline heading north", "rotate")]), "t.jsonl")
    found = leakage(train, test, 0.8)
    assert [(i["test_id"], i["train_id"]) for i in found["items"]] == [(test[0].id, train[9].id)]


def test_rows_without_boilerplate_are_compared_whole():
    recs = [Record(str(i), t, "x") for i, t in enumerate(
        ["the cat sat on the mat today\nand slept", "the cat sat on the mat today\nand slept well", "a dog ran"])]
    assert shared_boilerplate(recs)["count"] == 0
    assert [(p["a"], p["b"]) for p in near_duplicates(recs, 0.8)["pairs"]] == [("0", "1")]


def test_prepare_keeps_the_paraphrases_and_says_what_it_compared(tmp_path):
    from tunewise.config import load_config
    from tunewise.data.prepare import prepare_project

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows(REQUESTS * 1)))
    (tmp_path / "tunewise.yaml").write_text("task: {type: generation}\ndata: {files: [data/d.jsonl]}\nmodel: {base: m}\n")
    _, manifest = prepare_project(load_config(tmp_path), tmp_path)
    step = next(s for s in manifest["steps"] if s["step"] == "near_duplicates")
    assert step["dropped"] == 0 and "without the 1 lines shared by at least 30% of rows" in step["note"]
