"""The journal: durable appends, resume, torn last line, header checks, one run at a time."""

import json

import pytest

from reid.bulk.journal import JOURNAL_FILE, Journal
from reid.errors import ReidError

HEADER = {"season": "abc", "model": "m1"}


def test_append_and_resume(tmp_path):
    with Journal.open(tmp_path, HEADER) as j:
        j.append({"id": "e1", "x": 1})
        j.append({"id": "e2", "x": 2})
        j.append({"id": "e1", "x": 9})  # already done: ignored
    with Journal.open(tmp_path, HEADER) as j:
        assert j.done == {"e1": {"id": "e1", "x": 1}, "e2": {"id": "e2", "x": 2}}
    assert len((tmp_path / JOURNAL_FILE).read_text().splitlines()) == 3


def test_torn_last_line_is_cut(tmp_path):
    with Journal.open(tmp_path, HEADER) as j:
        j.append({"id": "e1"})
    path = tmp_path / JOURNAL_FILE
    with path.open("ab") as f:
        f.write(b'{"kind":"encounter","id":"e2","x":')  # killed mid-write
    with Journal.open(tmp_path, HEADER) as j:
        assert list(j.done) == ["e1"]
        j.append({"id": "e2"})
    lines = path.read_text().splitlines()
    assert [json.loads(x).get("id") for x in lines] == [None, "e1", "e2"]


def test_another_run_is_refused(tmp_path):
    Journal.open(tmp_path, HEADER).close()
    with pytest.raises(ReidError, match="another model"):
        Journal.open(tmp_path, {**HEADER, "model": "m2"})


def test_one_process_at_a_time(tmp_path):
    with Journal.open(tmp_path, HEADER), pytest.raises(ReidError, match="another run"):
        Journal.open(tmp_path, HEADER)


def test_damaged_middle_line_is_an_error(tmp_path):
    Journal.open(tmp_path, HEADER).close()
    with (tmp_path / JOURNAL_FILE).open("a") as f:
        f.write("garbage\n{}\n")
    with pytest.raises(ReidError, match=":2: not a journal line"):
        Journal.open(tmp_path, HEADER)
