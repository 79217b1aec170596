"""A row's identity: its id field, else a hash of what it says, namespaced by file when there are several."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from tunewise.data.load import content_id, load_files
from tunewise.data.schemas import PLACEHOLDERS

# Text rows: a row holding a media placeholder ("<video>") is refused as multimodal, its file with it.
TEXT = st.text(min_size=1, max_size=12).filter(lambda t: t.strip() and not any(m in t for m in PLACEHOLDERS))
ROWS = st.lists(st.tuples(TEXT, st.sampled_from(["x", "y"])), min_size=1, max_size=12)


def _jsonl(path, rows, with_id=False):
    path.write_text("".join(json.dumps({**({"id": f"r{i}"} if with_id else {}), "input": t, "target": y}) + "\n"
                            for i, (t, y) in enumerate(rows)))


def _ids(project, files=("d.jsonl",)):
    return {(r.input, r.target): r.id for r in load_files(list(files), project, "input", "target").records}


@settings(max_examples=40, deadline=None)
@given(rows=ROWS, extra=st.tuples(TEXT, st.just("x")),
       order=st.randoms(use_true_random=False))
def test_inserting_or_reordering_lines_renames_no_row(tmp_path_factory, rows, extra, order):
    project = tmp_path_factory.mktemp("p")
    rows = list(dict.fromkeys(rows))  # distinct rows: a repeated row is named by its occurrence
    _jsonl(project / "d.jsonl", rows)
    before = _ids(project)
    shuffled = list(rows)
    order.shuffle(shuffled)
    _jsonl(project / "d.jsonl", [extra, *shuffled] if extra not in rows else shuffled)
    after = _ids(project)
    assert all(after[k] == v for k, v in before.items())
    assert len(set(after.values())) == len(after)


def test_content_ids_ignore_spacing_but_not_case(tmp_path):
    assert content_id("a  b\r\n", "x ") == content_id("a b", "x")
    assert content_id("A b", "x") != content_id("a b", "x")
    _jsonl(tmp_path / "d.jsonl", [("same", "x"), ("same", "x"), ("other", "x")])
    ids = [r.id for r in load_files(["d.jsonl"], tmp_path, "input", "target").records]
    assert ids[1] == f"{ids[0]}-2" and len(set(ids)) == 3


def test_ids_of_two_files_never_collide(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _jsonl(tmp_path / "a" / "train.jsonl", [("hello", "x")], with_id=True)
    _jsonl(tmp_path / "b" / "train.jsonl", [("hello", "x")], with_id=True)  # same stem, same id, same content
    _jsonl(tmp_path / "c.jsonl", [("hello", "x")])
    (tmp_path / "c.csv").write_text("input,target\nhello,x\n")
    recs = load_files(["a/train.jsonl", "b/train.jsonl", "c.jsonl", "./c.csv"], tmp_path, "input", "target").records
    assert [r.id for r in recs] == ["a/train.jsonl:r0", "b/train.jsonl:r0", f"c.jsonl:{content_id('hello', 'x')}",
                                    f"c.csv:{content_id('hello', 'x')}"]
