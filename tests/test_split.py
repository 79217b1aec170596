from collections import Counter

from tunewise.core import Record
from tunewise.data.split import records_hash, stratified_split, subsample


def make(n_per=(50, 30, 20)):
    recs = []
    for label, n in zip("abc", n_per, strict=True):
        recs += [Record(id=f"{label}{i}", input=f"text {label} {i}", target=label) for i in range(n)]
    return recs


def test_split_is_deterministic_exact_and_stratified():
    recs = make()
    fr = {"train": 0.8, "val": 0.1, "test": 0.1}
    one = stratified_split(recs, fr, seed=3)
    two = stratified_split(list(reversed(recs)), fr, seed=3)
    assert [r.id for r in one["test"]] == [r.id for r in two["test"]]
    assert sum(len(v) for v in one.values()) == len(recs)
    assert not {r.id for r in one["train"]} & {r.id for r in one["test"]}
    assert Counter(r.target for r in one["test"]) == {"a": 5, "b": 3, "c": 2}
    other = stratified_split(recs, fr, seed=4)
    assert records_hash(other["test"]) != records_hash(one["test"])


def test_hash_depends_on_content_not_order():
    recs = make()
    assert records_hash(recs) == records_hash(list(reversed(recs)))
    changed = [Record(r.id, r.input + "!", r.target) if r.id == "a0" else r for r in recs]
    assert records_hash(changed) != records_hash(recs)


def test_subsample_is_exact_and_proportional():
    recs = make()
    sub = subsample(recs, 10, seed=0)
    assert len(sub) == 10
    assert Counter(r.target for r in sub) == {"a": 5, "b": 3, "c": 2}
    assert subsample(recs, None, 0) == recs
