"""Cross-border movements: derived from consecutive confirmed sightings, incrementally."""

from datetime import datetime

import pytest

from reid.movements import country_presence, derive_movements, movements, transboundary_individuals
from reid.privacy import LOCAL_ADMIN, PUBLIC
from reid.registry import confirm, get_individual, merge, reject, split
from reid.registry.models import Movement
from tests.registry.helpers import sight, tiger, world


def _pairs(s):
    return sorted(
        (m.individual, m.from_country, m.to_country, m.from_time.day, m.to_time.day)
        for m in movements(s, LOCAL_ADMIN)
    )


def test_movement_when_consecutive_confirmed_sightings_change_country(registry):
    with registry.session() as s:
        w = world(s)
        t = tiger(s, "T-001")
        for country, day in (("NP", 0), ("NP", 1), ("IN", 5), ("IN", 6), ("NP", 9)):
            sight(s, w, t, country, day)
        sight(s, w, t, "IN", 7, status="proposed")  # not confirmed: ignored
        stats = derive_movements(s)
    assert stats.movements == 2
    with registry.session() as s:
        got = movements(s, LOCAL_ADMIN)
        assert [(m.from_country, m.to_country) for m in got] == [("NP", "IN"), ("IN", "NP")]
        first = got[0]
        assert first.from_site == "bardia-1" and first.to_site == "katarniaghat-1"
        assert first.days == pytest.approx(4.0)  # day 1 -> day 5
        assert first.distance_km == pytest.approx(22.1, abs=0.2)  # hand-checked haversine
        assert first.from_lat == pytest.approx(28.4012)
        ind = get_individual(s, "T-001")
        assert (ind.first_seen.day, ind.last_seen.day) == (1, 10)
        assert [m.to_country for m in movements(s, LOCAL_ADMIN, from_country="IN")] == ["NP"]
        assert movements(s, LOCAL_ADMIN, since=datetime(2025, 1, 8)) == got[1:]


def test_derivation_is_idempotent_and_incremental(registry):
    with registry.session() as s:
        w = world(s)
        a, b = tiger(s, "T-A"), tiger(s, "T-B")
        sight(s, w, a, "NP", 0)
        wrong = sight(s, w, a, "IN", 2)
        sight(s, w, a, "NP", 4)
        sight(s, w, b, "IN", 1)
        derive_movements(s)
        before = _pairs(s)
        ids = sorted(s.scalars(__import__("sqlalchemy").select(Movement.id)))
    assert before == [("T-A", "IN", "NP", 3, 5), ("T-A", "NP", "IN", 1, 3)]
    with registry.session() as s:
        assert derive_movements(s).individuals == 0  # nothing stale: nothing done
        assert derive_movements(s, full=True).movements == 2
        assert _pairs(s) == before
        # Correct the Indian sighting: it was T-B all along. Only T-A and T-B recompute.
        confirm(s, s.merge(wrong), decided_by="reviewer", individual=get_individual(s, "T-B"))
        assert derive_movements(s).individuals == 2
        assert _pairs(s) == []  # T-A: NP, NP; T-B: IN, IN
        assert ids  # the old rows are gone, not duplicated
        assert s.query(Movement).count() == 0


def test_rejected_sighting_drops_its_movements(registry):
    with registry.session() as s:
        w = world(s)
        t = tiger(s, "T-1")
        sight(s, w, t, "NP", 0)
        bad = sight(s, w, t, "IN", 1)
        derive_movements(s)
        assert len(_pairs(s)) == 1
        reject(s, bad, decided_by="reviewer", reason="not a tiger")
        derive_movements(s)
        assert _pairs(s) == []


def test_merge_and_split_update_movements(registry):
    with registry.session() as s:
        w = world(s)
        a, b = tiger(s, "T-A"), tiger(s, "T-B")
        sight(s, w, a, "NP", 0)
        sight(s, w, b, "IN", 3)
        derive_movements(s)
        assert _pairs(s) == []
        merge(s, a, b, decided_by="curator", reason="same stripes")
        derive_movements(s)
        assert _pairs(s) == [("T-A", "NP", "IN", 1, 4)]
        assert transboundary_individuals(s) == {"T-A": ["IN", "NP"]}
        split(s, b, decided_by="curator", reason="wrong merge")
        derive_movements(s)
        assert _pairs(s) == []
        assert transboundary_individuals(s) == {}


def test_presence_and_generalised_movements(registry):
    with registry.session() as s:
        w = world(s)
        a, b = tiger(s, "T-A"), tiger(s, "T-B")
        sight(s, w, a, "NP", 0)
        sight(s, w, a, "IN", 10)
        sight(s, w, b, "IN", 12)
        derive_movements(s)
        assert country_presence(s) == {
            "IN": {"individuals": 2, "sightings": 2},
            "NP": {"individuals": 1, "sightings": 1},
        }
        assert country_presence(s, since=datetime(2025, 1, 5)) == {
            "IN": {"individuals": 2, "sightings": 2}
        }
        (m,) = movements(s, PUBLIC)
        assert (m.from_lat, m.from_lon) == (28.375, 81.375)  # 0.25-degree cell centre
        assert m.distance_km == 20.0  # rounded to 10 km
