"""Bursts: the frames of one animal passing one camera, matched together as one encounter.

A camera trap fires a burst of frames when an animal walks past. Frames of one
deployment, of one species and flank side, that follow each other by at most ``gap``
seconds form one :class:`Encounter`; a longer pause starts the next one. Undated frames
are encounters of their own (nothing says they belong together).

An encounter's id is ``<deployment>@<first frame time>`` (``#2``, ``#3`` when two start
at the same second), stable across runs of the same source, which is what lets a run
resume.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from reid.bulk.sources import Capture

#: Default longest pause between two frames of one burst, in seconds.
DEFAULT_GAP_S = 60.0


@dataclass(frozen=True)
class Encounter:
    """Frames of one animal at one deployment, matched as one."""

    id: str
    deployment: str
    species: str
    side: str
    frames: tuple[Capture, ...]

    @property
    def start(self) -> datetime | None:
        return self.frames[0].captured_at

    @property
    def end(self) -> datetime | None:
        return self.frames[-1].captured_at

    @property
    def first(self) -> Capture:
        return self.frames[0]


def group_bursts(captures: list[Capture], gap_s: float = DEFAULT_GAP_S) -> list[Encounter]:
    """Encounters of ``captures`` (sorted by deployment and time), in that order."""
    if gap_s < 0:
        raise ValueError(f"burst gap {gap_s} s is negative")
    open_: dict[tuple[str, str, str], list[Capture]] = {}
    groups: list[list[Capture]] = []
    ordered = sorted(
        captures,
        key=lambda c: (c.deployment, c.captured_at is None, c.captured_at or datetime.min, c.key),
    )
    for c in ordered:
        k = (c.deployment, c.species, c.side)
        current = open_.get(k)
        if (
            current is not None
            and c.captured_at is not None
            and current[-1].captured_at is not None
            and (c.captured_at - current[-1].captured_at).total_seconds() <= gap_s
        ):
            current.append(c)
            continue
        current = [c]
        groups.append(current)
        open_[k] = current
    out: list[Encounter] = []
    used: dict[str, int] = {}
    for frames in groups:
        first = frames[0]
        stamp = first.captured_at.strftime("%Y%m%dT%H%M%SZ") if first.captured_at else first.key
        base = f"{first.deployment}@{stamp}"
        used[base] = used.get(base, 0) + 1
        ident = base if used[base] == 1 else f"{base}#{used[base]}"
        out.append(Encounter(ident, first.deployment, first.species, first.side, tuple(frames)))
    return out


def season_fingerprint(encounters: list[Encounter]) -> str:
    """SHA-256 of the encounters' ids and frames: a resumed run must see the same season."""
    h = hashlib.sha256()
    for e in encounters:
        h.update(e.id.encode())
        for f in e.frames:
            h.update(b"\x00" + f.key.encode())
        h.update(b"\n")
    return h.hexdigest()
