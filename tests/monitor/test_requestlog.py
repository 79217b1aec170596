"""Reading request logs: the server's SQLite table and a JSONL of inputs; errors name line and field."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tunewise.data.load import DataError
from tunewise.monitor.requestlog import read_log


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_sqlite_request_log(tmp_path):
    db = tmp_path / "requests.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE requests (ts TEXT, model TEXT, input TEXT, output TEXT, latency_ms REAL, probs TEXT)")
    con.executemany("INSERT INTO requests VALUES (?,?,?,?,?,?)", [
        ("2026-01-02T10:00:00Z", "lora", "second", "b", 12.5, json.dumps({"a": 1, "b": 3})),
        ("2026-01-01T10:00:00", "lora", "first", "a", 8.0, None),
    ])
    con.commit()
    con.close()
    rows, timed = read_log(db)
    assert timed and [r.input for r in rows] == ["first", "second"]  # time order
    assert rows[1].probs == {"a": 0.25, "b": 0.75} and rows[1].model == "lora" and rows[1].latency_ms == 12.5
    assert rows[0].probs is None and rows[0].ts.tzinfo is not None
    assert [r.input for r in read_log(db, since="2026-01-02")[0]] == ["second"]


def test_sqlite_without_the_requests_table(tmp_path):
    db = tmp_path / "other.db"
    sqlite3.connect(db).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(DataError, match="no table 'requests'"):
        read_log(db)


def test_jsonl_of_inputs_only_is_untimed(tmp_path):
    path = write_jsonl(tmp_path / "log.jsonl", [{"text": "hello"}, {"input": "world", "id": 7}])
    rows, timed = read_log(path)
    assert not timed and [r.id for r in rows] == ["line-1", "7"]


@pytest.mark.parametrize(("row", "message"), [
    ({"input": ""}, r"log.jsonl:2: field 'input'"),
    ({"input": "x", "ts": "yesterday"}, r"log.jsonl:2: field 'ts'"),
    ({"input": "x", "ts": "2026-01-01", "probs": "{bad"}, r"log.jsonl:2: field 'probs': not JSON"),
    ({"input": "x", "ts": "2026-01-01", "probs": {"a": -1}}, r"log.jsonl:2: field 'probs'"),
    ({"input": "x", "ts": "2026-01-01", "latency_ms": "fast"}, r"log.jsonl:2: field 'latency_ms'"),
])
def test_bad_rows_name_the_line_and_field(tmp_path, row, message):
    path = write_jsonl(tmp_path / "log.jsonl", [{"input": "ok", "ts": "2026-01-01"}, row])
    with pytest.raises(DataError, match=message):
        read_log(path)


def test_some_rows_timed_and_others_not_is_an_error(tmp_path):
    path = write_jsonl(tmp_path / "log.jsonl", [{"input": "a", "ts": "2026-01-01"}, {"input": "b"}])
    with pytest.raises(DataError, match="no 'ts' while others do"):
        read_log(path)
    with pytest.raises(DataError, match="no requests at or after"):
        read_log(write_jsonl(tmp_path / "l2.jsonl", [{"input": "a", "ts": "2026-01-01"}]), since="2027-01-01")


def test_the_log_tunewise_serve_writes_is_read_as_it_is(tmp_path):
    from tunewise.monitor.requestlog import read_sqlite
    from tunewise.serve.requestlog import RequestLog

    log = RequestLog(tmp_path / "requests.sqlite")
    log.write("bbc/embedding-classifier", "classify", 200, "the market rallied", "business", 12.5,
              {"business": 0.9, "tech": 0.1}, 1)
    log.write("bbc/embedding-classifier", "classify", 429, "refused request", None, 0.1)
    log.write("bbc/lora", "chat", 200, "a new phone", "tech", 30.0)
    log.close()
    rows = read_sqlite(tmp_path / "requests.sqlite")
    assert [r.input for r in rows] == ["the market rallied", "a new phone"]  # the refused one was never served
    assert rows[0].model == "embedding-classifier" and rows[0].probs == {"business": 0.9, "tech": 0.1}
    assert rows[0].ts is not None and rows[0].ts.tzinfo is not None and rows[1].output == "tech"


def test_a_server_log_without_inputs_is_one_clear_error(tmp_path):
    from tunewise.monitor.requestlog import read_sqlite
    from tunewise.serve.requestlog import RequestLog

    log = RequestLog(tmp_path / "requests.sqlite", log_inputs=False)
    log.write("bbc/lora", "chat", 200, "kept out", "tech", 30.0)
    log.close()
    with pytest.raises(DataError, match=r"requests row 1: field 'input': the server kept no inputs"):
        read_sqlite(tmp_path / "requests.sqlite")
