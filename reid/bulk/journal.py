"""The run's journal: append-only, one JSON line per finished encounter, fsync'd.

``RUN_DIR/journal.jsonl`` starts with a header line (what is being run: the season's
fingerprint, the model's and the gallery's, the settings); every later line is the
result of one encounter, written and ``fsync``'d as soon as it is known. A run killed at
any moment (even ``kill -9``, or a power cut) leaves at worst one torn last line, which
:meth:`Journal.open` cuts off; the same command then reads which encounters are done and
does only the others. No encounter is lost (nothing counts as done before its line is on
disk) or counted twice (a line repeating a done encounter is ignored on reading).

A run folder is used by one process at a time: :meth:`Journal.open` takes an exclusive
lock on ``RUN_DIR/.lock`` and refuses a second run while the first is alive (the lock
dies with its process, so a killed run never leaves a stale lock).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Collection, Iterator
from pathlib import Path

from reid.errors import ReidError

JOURNAL_FILE = "journal.jsonl"
LOCK_FILE = ".lock"
FORMAT = 1


class Journal:
    """Open with :meth:`open`; :attr:`done` maps encounter id -> its result record."""

    def __init__(self, path: Path, lock_fd: int, file, done: dict[str, dict]) -> None:
        self.path = path
        self._lock_fd = lock_fd
        self._file = file
        self.done = done

    @classmethod
    def open(cls, run_dir: Path | str, header: dict, moot: Collection[str] = ()) -> Journal:
        """Create ``run_dir/journal.jsonl`` with ``header``, or resume the one there.

        Resuming refuses a journal whose header differs from ``header`` in any key (a
        different season, model, gallery or setting would mix two runs' results), except
        the keys named in ``moot`` (dotted for one inside another: ``settings.locate``):
        they change nothing in this run's results, so they are left out of the header
        written and out of the comparison, and a journal that recorded them resumes.
        """
        run_dir = Path(run_dir)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ReidError(f"cannot create run folder {run_dir}: {e.strerror or e}") from None
        lock_fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise ReidError(
                f"{run_dir}: another run is using this folder (its lock {LOCK_FILE} is held)"
            ) from None
        path = run_dir / JOURNAL_FILE
        header = _without({"kind": "header", "format": FORMAT, **header}, moot)
        try:
            done = _resume(path, header, moot) if path.exists() else None
            file = path.open("ab")
            if done is None:
                done = {}
                _write_line(file, header)
                _fsync_dir(run_dir)
        except BaseException:
            os.close(lock_fd)
            raise
        return cls(path, lock_fd, file, done)

    def append(self, record: dict) -> None:
        """Write one encounter's result (a dict with an ``id``) durably; once it returns,
        the encounter is done for every later run."""
        ident = record["id"]
        if ident in self.done:
            return
        _write_line(self._file, {"kind": "encounter", **record})
        self.done[ident] = record

    def records(self) -> Iterator[dict]:
        yield from self.done.values()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            os.close(self._lock_fd)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _write_line(file, record: dict) -> None:
    data = json.dumps(record, separators=(",", ":"), sort_keys=True).encode() + b"\n"
    file.write(data)
    file.flush()
    os.fsync(file.fileno())


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _without(header: dict, moot: Collection[str]) -> dict:
    """``header`` less the (dotted) keys in ``moot``; the parts named are copied, not
    changed in place."""
    out = dict(header)
    for key in moot:
        *outer, last = key.split(".")
        part = out
        for name in outer:
            inner = part.get(name)
            if not isinstance(inner, dict):
                break
            part[name] = part = dict(inner)
        else:
            part.pop(last, None)
    return out


def _resume(path: Path, header: dict, moot: Collection[str] = ()) -> dict[str, dict] | None:
    """Done encounters of an existing journal (None when it is empty): a torn last line
    (no newline, or not JSON) is cut off the file first. The keys in ``moot`` of its
    header are not compared."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):  # a line cut by a crash: drop it
        with path.open("r+b") as f:
            f.truncate(end)
            f.flush()
            os.fsync(f.fileno())
        data = data[:end]
    lines = data.splitlines()
    if not lines:
        return None
    records = []
    for n, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise ReidError(
                f"{path}:{n}: not a journal line (the journal is damaged; move the run "
                "folder away to start over)"
            ) from None
    old = records[0]
    if old.get("kind") != "header":
        raise ReidError(f"{path}:1: the journal has no header line")
    old = _without(old, moot)
    changed = sorted(k for k in set(old) | set(header) if old.get(k) != header.get(k))
    if changed:
        key = changed[0]
        raise ReidError(
            f"{path}: this run folder holds a run with another {key} "
            f"({_short(old.get(key))} vs now {_short(header.get(key))}); resume it with the "
            "same source, gallery, model and options, or use a new --out folder"
        )
    done: dict[str, dict] = {}
    for r in records[1:]:
        if r.get("kind") == "encounter":
            r = {k: v for k, v in r.items() if k != "kind"}
            done.setdefault(r["id"], r)
    return done


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."
