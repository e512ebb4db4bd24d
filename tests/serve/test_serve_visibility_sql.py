"""What a caller may see, decided in SQL, against plain references: GET /v1/movements'
derivation and the visibility of individuals (GET /v1/individuals and every lookup of
one by code).

The API derives each caller's movements from the confirmed sightings that caller may see
(:func:`serve.records.visible_movements`, a ``LAG`` window in SQL). The reference below
does the same by hand in Python: order each individual's visible confirmed sightings by
time (then id), and record a movement wherever two consecutive ones are in different
countries. Random registries with hidden, unowned, unconfirmed and same-time sightings,
on SQLite and PostgreSQL.
"""

from __future__ import annotations

import random
from datetime import UTC, timedelta, timezone

import pytest
from sqlalchemy import select

from reid.registry import (
    add_individual,
    add_media,
    add_sighting,
    ensure_deployment,
    ensure_organisation,
    ensure_site,
    get_individual,
    list_individuals,
)
from serve.access import Scope
from serve.records import visible_individual, visible_individual_condition, visible_movements
from tests.registry.helpers import T0

# (site code, country, owner or None), each with one camera
SITES = (("a-np", "NP", "A"), ("b-in", "IN", "B"), ("c-np", "NP", "C"),
         ("free-in", "IN", None), ("a-bt", "BT", "A"))  # fmt: skip
SCOPES = ({"A"}, {"A", "B"}, {"A", None}, {"B", "C", None}, {"C"})


def _build(s, seed: int) -> list[dict]:
    rng = random.Random(seed)
    orgs = {c: ensure_organisation(s, c, country="NP") for c in ("A", "B", "C")}
    deps = []
    for k, (code, country, owner) in enumerate(SITES):
        site = ensure_site(s, code, country, 28.0 + k * 0.1, 81.0 + k * 0.1, code,
                           orgs.get(owner))  # fmt: skip
        deps.append((ensure_deployment(s, f"dep-{code}", site, 28.0 + k * 0.1 + 0.001,
                                       81.0 + k * 0.1 + 0.002), country, owner))  # fmt: skip
    inds = [add_individual(s, f"T-{i}", "tiger") for i in range(6)]
    # individuals of an organisation belong to it alone, whatever their sightings' sites
    inds += [add_individual(s, f"T-{o}", "tiger", organisation=orgs[o]) for o in ("A", "B")]
    rows = []
    for n in range(90):
        ind = rng.choice(inds)
        dep, country, owner = rng.choice(deps)
        day = rng.randrange(30)  # same-day (same-time) sightings of one tiger are common
        status = rng.choice(("confirmed", "confirmed", "confirmed", "proposed", "rejected"))
        media = add_media(s, dep, f"img/{n}.jpg", T0 + timedelta(days=day))
        sig = add_sighting(s, media, "tiger", side="left", individual=ind, status=status,
                           decided_by="tester")  # fmt: skip
        s.flush()
        rows.append({"id": sig.id, "ind": ind.code, "iid": ind.id,
                     "time": T0 + timedelta(days=day), "country": country, "owner": owner,
                     "site": dep.site.code, "status": status,
                     "ind_org": ind.organisation.code if ind.organisation else None})  # fmt: skip
    return rows


def _reference(rows, view, from_country=None, to_country=None, since=None, individual=None):
    seen = sorted((r for r in rows if r["status"] == "confirmed" and r["owner"] in view
                   and (individual is None or r["ind"] == individual)),
                  key=lambda r: (r["iid"], r["time"], r["id"]))  # fmt: skip
    out = []
    for a, b in zip(seen, seen[1:], strict=False):
        if (a["iid"] == b["iid"] and a["country"] != b["country"]
                and (from_country is None or a["country"] == from_country)
                and (to_country is None or b["country"] == to_country)
                and (since is None or b["time"] >= since)):  # fmt: skip
            out.append((b["ind"], a["country"], b["country"], a["time"].replace(tzinfo=UTC),
                        b["time"].replace(tzinfo=UTC), a["site"], b["site"]))  # fmt: skip
    return sorted(out, key=lambda m: m[4])  # stable: ties stay by individual, then id


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_visible_movements_equal_a_plain_derivation_per_caller(registry, seed):
    with registry.session() as s:
        rows = _build(s, seed)
    assert sum(r["status"] == "confirmed" for r in rows) > 40
    for view in SCOPES:
        scope = Scope(match=frozenset(view), view=frozenset(view),
                      precise=frozenset(view), own="A")  # fmt: skip
        for kwargs in ({}, {"from_country": "NP"}, {"to_country": "IN"},
                       {"since": T0 + timedelta(days=15)},  # naive UTC, as the API passes it
                       {"from_country": "IN", "to_country": "NP", "since": T0}):  # fmt: skip
            with registry.session() as s:
                got, exact = visible_movements(s, scope, **kwargs)
            want = _reference(rows, view, **kwargs)
            assert [(m.individual, m.start.country, m.end.country, m.from_time, m.to_time,
                     m.start.site, m.end.site) for m in got] == want, (view, kwargs)  # fmt: skip
            assert exact <= {o for o in view if o is not None}
            owned = {r["site"]: r["owner"] is not None for r in rows}
            # precise for every visible owner; an unowned site is never given exactly
            assert all(loc.exact == owned[loc.site] for m in got for loc in (m.start, m.end))
        for code in ("T-0", "T-3"):
            with registry.session() as s:
                got, _ = visible_movements(s, scope, individual=get_individual(s, code))
            assert [(m.individual, m.from_time, m.to_time) for m in got] == [
                (m[0], m[3], m[4]) for m in _reference(rows, view, individual=code)
            ]


def test_a_partners_end_of_a_crossing_is_generalised(registry):
    """A caller who may see B's sightings but not exactly: B's end of a crossing is
    generalised (not the camera's point); A's is exact, and only A is reported as shown
    exactly."""
    with registry.session() as s:
        rows = _build(s, 5)
    view = frozenset({"A", "B"})
    scope = Scope(match=view, view=view, precise=frozenset({"A"}), own="A")
    with registry.session() as s:
        got, exact = visible_movements(s, scope)
    assert got and exact <= {"A"}
    owner = {r["site"]: r["owner"] for r in rows}
    cameras = {code: (28.0 + k * 0.1 + 0.001, 81.0 + k * 0.1 + 0.002)
               for k, (code, _, _) in enumerate(SITES)}  # fmt: skip
    assert any(not loc.exact for m in got for loc in (m.start, m.end))
    for m in got:
        for loc in (m.start, m.end):
            assert loc.exact == (owner[loc.site] == "A")
            at_camera = (loc.lat, loc.lon) == pytest.approx(cameras[loc.site], abs=1e-9)
            assert at_camera == loc.exact


def _visible_codes(rows, view) -> set[str]:
    """Individuals the caller may see: its organisation's, or, for one without an
    organisation, the unowned registry's and those of its sightings' (owned) sites."""
    owners: dict[str, set] = {f"T-{i}": {None} for i in range(6)} | {"T-A": {"A"}, "T-B": {"B"}}
    for r in rows:
        if r["ind_org"] is None and r["owner"] is not None:
            owners[r["ind"]].add(r["owner"])  # any status counts
    return {code for code, orgs in owners.items() if orgs & set(view)}


@pytest.mark.parametrize("seed", [3, 4])
def test_visible_individuals_equal_a_plain_ownership_rule(registry, seed):
    with registry.session() as s:
        rows = _build(s, seed)
        add_individual(s, "T-none", "tiger")  # no organisation, never seen
    for view in (*SCOPES, {"B"}, {None}, set()):
        scope = Scope(match=frozenset(view), view=frozenset(view), precise=frozenset(),
                      own="A")  # fmt: skip
        want = _visible_codes(rows, view) | ({"T-none"} if None in view else set())
        with registry.session() as s:
            listed = list_individuals(s, None, visible_individual_condition(scope))
            assert {i.code for i in listed} == want, view
            for code in (*(f"T-{i}" for i in range(6)), "T-A", "T-B", "T-none"):
                found = visible_individual(s, scope, code)
                assert (found is not None) == (code in want), (view, code)


@pytest.mark.parametrize("seed", [6, 7])
def test_pages_of_sightings_either_way_equal_the_whole_visible_listing(registry, seed):
    """Keyset pages (oldest or newest first, with same-time ties, unowned sites, several
    statuses) give each visible sighting once, in the listing's order; the review queue's
    newest own proposed sightings are the last of the caller's own."""
    from reid.privacy import LOCAL_ADMIN
    from reid.registry import Organisation, Sighting, Site, sighting_views
    from serve.records import _owned_by, visible_sightings

    with registry.session() as s:
        rows = _build(s, seed)
    for view in ({"A"}, {"A", None}, {"B", "C"}, {None}):
        scope = Scope(match=frozenset(view), view=frozenset(view), precise=frozenset(),
                      own="A")  # fmt: skip
        with registry.session() as s:
            whole = [v.code for v, _ in sighting_views(s, LOCAL_ADMIN, where=_owned_by(scope))]
            codes = {s.scalar(select(Sighting.code).where(Sighting.id == r["id"])): r
                     for r in rows}  # fmt: skip
            assert sorted(whole) == sorted(c for c, r in codes.items() if r["owner"] in view)
            for newest in (False, True):
                for size in (1, 4, 7):
                    got, after = [], None
                    while True:
                        page = sighting_views(s, LOCAL_ADMIN, where=_owned_by(scope),
                                              limit=size, after=after, newest_first=newest)
                        got += [v.code for v, _ in page]
                        if len(page) < size:
                            break
                        after = (page[-1][0].captured_at, codes[page[-1][0].code]["id"])
                    assert got == (whole[::-1] if newest else whole), (view, newest, size)
            everything, _ = visible_sightings(s, scope, status="proposed")
            own = Site.organisation_id.in_(select(Organisation.id).where(Organisation.code == "A"))
            queue, _ = visible_sightings(s, scope, status="proposed", where=own, limit=5,
                                         newest_first=True)  # fmt: skip
            assert [x.code for x in queue[::-1]] == [
                x.code for x in everything if x.organisation == "A"
            ][-5:]


def test_movements_since_an_aware_time_is_taken_in_utc(registry):
    with registry.session() as s:
        rows = _build(s, 8)
    view = {"A", "B", "C", None}
    scope = Scope(match=frozenset(view), view=frozenset(view), precise=frozenset(), own="A")
    naive = T0 + timedelta(days=15)
    aware = (naive + timedelta(hours=5, minutes=45)).replace(
        tzinfo=timezone(timedelta(hours=5, minutes=45))
    )  # the same instant, Nepal time
    with registry.session() as s:
        a, _ = visible_movements(s, scope, since=naive)
        b, _ = visible_movements(s, scope, since=aware)
    assert a and [m.to_time for m in a] == [m.to_time for m in b]
    assert [m.to_time for m in a] == [m[4] for m in _reference(rows, view, since=naive)]
