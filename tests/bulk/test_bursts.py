"""Burst grouping: gap, deployment, side; stable unique ids; season fingerprint."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

from reid.bulk.bursts import group_bursts, season_fingerprint
from reid.bulk.sources import Capture

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def cap(key, dep, s, side="left", species="tiger"):
    when = None if s is None else T0 + timedelta(seconds=s)
    return Capture(key, Path(key), dep, when, species, side)


def test_gap_splits_bursts_per_deployment_and_side():
    caps = [
        cap("a", "c1", 0),
        cap("b", "c1", 50),
        cap("c", "c1", 200),
        cap("d", "c2", 10),
        cap("e", "c1", 60, side="right"),
        cap("f", "c1", None),
        cap("g", "c1", None),
    ]
    enc = group_bursts(caps, gap_s=60)
    frames = sorted(tuple(f.key for f in e.frames) for e in enc)
    assert frames == [("a", "b"), ("c",), ("d",), ("e",), ("f",), ("g",)]
    assert len({e.id for e in enc}) == len(enc)
    assert sum(len(e.frames) for e in enc) == len(caps)
    assert [e.id for e in group_bursts(list(reversed(caps)), 60)] == [e.id for e in enc]
    assert len(group_bursts(caps, gap_s=1000)) == 5  # a, b, c together


def test_same_second_encounters_get_distinct_ids():
    enc = group_bursts([cap("a", "c1", 0), cap("b", "c1", 0, species="leopard")])
    assert len(enc) == 2 and enc[0].id != enc[1].id


def test_fingerprint_changes_with_the_season():
    a = group_bursts([cap("a", "c1", 0), cap("b", "c1", 5)])
    b = group_bursts([cap("a", "c1", 0), cap("b", "c1", 500)])
    assert season_fingerprint(a) == season_fingerprint(
        group_bursts([cap("a", "c1", 0), cap("b", "c1", 5)])
    )
    assert season_fingerprint(a) != season_fingerprint(b)


def test_season_bursts_are_the_true_encounters(season):
    from reid.bulk.sources import read_source
    from reid.data.manifest import read_manifest

    truth = {r.path: r.encounter for r in read_manifest(season / "season.csv")}
    for e in group_bursts(read_source(season / "season").captures):
        assert len({truth[f.path] for f in e.frames}) == 1
    assert len(group_bursts(read_source(season / "season").captures)) == len(set(truth.values()))
