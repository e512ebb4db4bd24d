"""Chunks of work: bursts never split, sizes bounded, order kept; the local engine."""

from datetime import UTC, datetime
from pathlib import Path

from reid.bulk.bursts import Encounter
from reid.bulk.engines import LocalEngine, chunks
from reid.bulk.sources import Capture
from reid.bulk.work import JobSpec


def enc(name: str, n: int) -> Encounter:
    frames = tuple(
        Capture(
            f"{name}{i}", Path(f"{name}{i}.jpg"), "d", datetime(2024, 1, 1, tzinfo=UTC), "tiger"
        )
        for i in range(n)
    )
    return Encounter(name, "d", "tiger", "unknown", frames)


def test_chunks_keep_bursts_whole_and_in_order():
    es = [enc("a", 3), enc("b", 2), enc("c", 5), enc("d", 1), enc("e", 1)]
    parts = chunks(es, 4)
    assert [[e.id for e in p] for p in parts] == [["a"], ["b"], ["c"], ["d", "e"]]
    assert chunks([], 4) == []


def test_local_engine_matches_every_encounter_once(season, gallery, release):
    from reid.bulk.bursts import group_bursts
    from reid.bulk.sources import read_source

    encounters = group_bursts(read_source(season / "season").captures)
    from reid.match import Matcher

    matcher = Matcher.open(gallery, model=release)
    engine = LocalEngine(JobSpec(str(gallery), str(release), batch_size=3), matcher)
    try:
        rows = list(engine.run(chunks(encounters, 3)))
    finally:
        engine.close()
    assert [r["id"] for r in rows] == [e.id for e in encounters]
    assert all(r["decision"] in ("known", "new") and not r["skipped"] for r in rows)
    # Decoding ahead beside the network (the schedule for an accelerator) changes when
    # frames are decoded, never what is matched.
    ahead = LocalEngine(
        JobSpec(str(gallery), str(release), batch_size=3), matcher, decode_beside_network=True
    )
    try:
        assert list(ahead.run(chunks(encounters, 3))) == rows
    finally:
        ahead.close()


def test_rows_do_not_depend_on_the_match_threads(season, gallery, release):
    from reid.bulk.bursts import group_bursts
    from reid.bulk.sources import read_source
    from reid.match import Matcher

    encounters = group_bursts(read_source(season / "season").captures)
    matcher = Matcher.open(gallery, model=release)
    rows = {}
    for threads in (1, 3):
        spec = JobSpec(str(gallery), str(release), batch_size=8, match_threads=threads)
        engine = LocalEngine(spec, matcher)
        try:
            rows[threads] = list(engine.run(chunks(encounters, 8)))
        finally:
            engine.close()
    assert len(rows[1]) == len(encounters) and rows[3] == rows[1]


def test_matching_kernels_are_single_threaded_only_inside_the_block():
    import cv2
    from threadpoolctl import threadpool_info

    from reid.bulk.work import single_threaded_kernels

    def blas() -> list[int]:
        return [d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"]

    cv2.setNumThreads(2)
    before = blas()
    with single_threaded_kernels():
        assert cv2.getNumThreads() == 1
        assert blas() and all(n == 1 for n in blas())
    assert cv2.getNumThreads() == 2 and blas() == before


def test_unreadable_frames_are_skipped_and_named(season, gallery, release, tmp_path):
    from dataclasses import replace

    from reid.bulk.bursts import group_bursts
    from reid.bulk.sources import read_source
    from reid.match import Matcher

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    first, second = group_bursts(read_source(season / "season").captures)[:2]
    one_bad = replace(first, frames=(replace(first.frames[0], path=bad), *first.frames[1:]))
    all_bad = replace(second, frames=tuple(replace(f, path=bad) for f in second.frames))
    engine = LocalEngine(JobSpec(str(gallery), str(release)), Matcher.open(gallery, model=release))
    try:
        a, b = engine.run([[one_bad, all_bad]])
    finally:
        engine.close()
    assert a["decision"] in ("known", "new") and list(a["skipped"]) == [first.frames[0].key]
    assert "broken.jpg" in a["skipped"][first.frames[0].key]
    assert b["decision"] == "unreadable" and len(b["skipped"]) == len(second.frames)
