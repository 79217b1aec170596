"""Reading request logs: the server's SQLite table and a JSONL of inputs; errors name line and field."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest

from tunewise.data.load import DataError
from tunewise.monitor.requestlog import read_log, read_sqlite


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
    read = read_log(db)
    rows, timed = read.rows, read.timed
    assert timed and [r.input for r in rows] == ["first", "second"]  # time order
    assert rows[1].probs == {"a": 0.25, "b": 0.75} and rows[1].model == "lora" and rows[1].latency_ms == 12.5
    assert rows[0].probs is None and rows[0].ts.tzinfo is not None
    assert [r.input for r in read_log(db, since="2026-01-02").rows] == ["second"]


def test_sqlite_without_the_requests_table(tmp_path):
    db = tmp_path / "other.db"
    sqlite3.connect(db).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(DataError, match="no table 'requests'"):
        read_log(db)


def test_jsonl_of_inputs_only_is_untimed(tmp_path):
    path = write_jsonl(tmp_path / "log.jsonl", [{"text": "hello"}, {"input": "world", "id": 7}])
    read = read_log(path)
    rows, timed = read.rows, read.timed
    assert not timed and [r.id for r in rows] == ["line-1", "7"]


@pytest.mark.parametrize(("row", "reason", "message"), [
    ({"input": ""}, "empty input", r"log.jsonl:2: field 'input'"),
    ({"input": "x", "ts": "yesterday"}, "bad ts", r"log.jsonl:2: field 'ts'"),
    ({"input": "x", "ts": "2026-01-01", "probs": "{bad"}, "bad probs", r"log.jsonl:2: field 'probs': not JSON"),
    ({"input": "x", "ts": "2026-01-01", "probs": {"a": -1}}, "bad probs", r"log.jsonl:2: field 'probs'"),
    ({"input": "x", "ts": "2026-01-01", "latency_ms": "fast"}, "bad latency_ms", r"log.jsonl:2: field 'latency_ms'"),
    ({"input": "x"}, "no ts", r"request line-2: no 'ts' while others have one"),
])
def test_a_bad_row_is_skipped_counted_and_named(tmp_path, row, reason, message):
    path = write_jsonl(tmp_path / "log.jsonl", [{"input": "ok", "ts": "2026-01-01"}, row])
    read = read_log(path)
    assert [r.input for r in read.rows] == ["ok"] and read.skipped == {reason: 1}
    assert re.search(message, read.examples[reason]) and "skipped 1 of 2 request(s)" in read.skipped_line()
    with pytest.raises(DataError, match=rf"1 usable request\(s\); monitoring needs at least 2; .*{reason}"):
        read_log(path, min_rows=2)


def test_a_log_with_5_percent_odd_rows_reports_on_the_rest(tmp_path):
    """Empty, cut-short (a crash mid-write) and another project's rows among 100: 95 are read."""
    from tunewise.serve.requestlog import RequestLog

    log = RequestLog(tmp_path / "requests.sqlite")
    for i in range(97):
        other = i in (10, 50)
        log.write("other/lora" if other else "bbc/lora", "chat", 200, "" if i in (3, 4) else f"request {i}",
                  "tech", 5.0)
    log.write("bbc/lora", "chat", 200, None, "tech", 5.0)  # nothing kept for this one
    log.close()
    read = read_log(tmp_path / "requests.sqlite", project="bbc", min_rows=30)
    assert len(read.rows) == 93 and read.skipped == {"another project": 2, "empty input": 2, "no input kept": 1}
    assert read.skipped_line().startswith("skipped 5 of 98 request(s) it cannot use: 2 empty input, 2 another project, 1 no input kept")

    lines = [json.dumps({"input": f"row {i}", "ts": f"2026-01-01T00:{i % 60:02d}:00"}) for i in range(95)]
    lines += [json.dumps({"input": ""}), '{"input": "cut sh', "[1, 2]", '{"input": "x", "ts": "soon"}', "{"]
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(lines) + "\n")
    read = read_log(path, min_rows=30)
    assert len(read.rows) == 95 and read.timed
    assert read.skipped == {"not JSON (cut short?)": 2, "empty input": 1, "not an object": 1, "bad ts": 1}


def test_the_log_tunewise_serve_writes_is_read_as_it_is(tmp_path):
    from tunewise.monitor.requestlog import read_sqlite
    from tunewise.serve.requestlog import RequestLog

    log = RequestLog(tmp_path / "requests.sqlite")
    log.write("bbc/embedding-classifier", "classify", 200, "the market rallied", "business", 12.5,
              {"business": 0.9, "tech": 0.1}, 1)
    log.write("bbc/embedding-classifier", "classify", 429, "refused request", None, 0.1)
    log.write("bbc/lora", "chat", 200, "a new phone", "tech", 30.0)
    log.close()
    rows = read_sqlite(tmp_path / "requests.sqlite").rows
    assert [r.input for r in rows] == ["the market rallied", "a new phone"]  # the refused one was never served
    assert rows[0].model == "embedding-classifier" and rows[0].probs == {"business": 0.9, "tech": 0.1}
    assert rows[0].ts is not None and rows[0].ts.tzinfo is not None and rows[1].output == "tech"


def test_a_server_log_without_inputs_is_one_clear_error(tmp_path):
    from tunewise.monitor.requestlog import read_sqlite
    from tunewise.serve.requestlog import RequestLog

    log = RequestLog(tmp_path / "requests.sqlite", log_inputs=False)
    log.write("bbc/lora", "chat", 200, "kept out", "tech", 30.0)
    log.close()
    with pytest.raises(DataError, match=r"0 usable request\(s\).*requests row 1: field 'input': the server kept no"):
        read_log(tmp_path / "requests.sqlite")


def test_since_past_every_request_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no requests at or after"):
        read_log(write_jsonl(tmp_path / "l2.jsonl", [{"input": "a", "ts": "2026-01-01"}]), since="2027-01-01")
