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


def test_moot_keys_are_neither_written_nor_compared(tmp_path):
    """Keys that change nothing in a run (Journal.open's moot, dotted for nested ones) are
    left out of a new header and ignored in an old one."""
    header = {**HEADER, "flank_head": "h1", "settings": {"top": 5, "locate": False}}
    Journal.open(tmp_path, header).close()
    moot = ("flank_head", "settings.locate")
    with Journal.open(tmp_path, {**HEADER, "settings": {"top": 5}}, moot) as j:
        j.append({"id": "e1"})
    with Journal.open(tmp_path, {**header, "flank_head": "h2"}, moot) as j:
        assert set(j.done) == {"e1"}
    with pytest.raises(ReidError, match="another settings"):
        Journal.open(tmp_path, {**HEADER, "settings": {"top": 3}}, moot)
    with pytest.raises(ReidError, match="another flank_head"):
        Journal.open(tmp_path, {**header, "flank_head": "h2"})  # where they matter, held to
    fresh = tmp_path / "fresh"
    Journal.open(fresh, header, moot).close()
    first = json.loads((fresh / JOURNAL_FILE).read_text().splitlines()[0])
    assert "flank_head" not in first and first["settings"] == {"top": 5}
    assert header["settings"] == {"top": 5, "locate": False}  # the caller's is untouched
