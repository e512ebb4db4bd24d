"""Authorisation matrix: every endpoint x every role x own / partner / foreign data.

The caller is always an NPO key. INO shares matching and sightings with NPO (not exact
coordinates); BTO shares nothing. Expected: a role below the endpoint's gets 403; data
of a foreign organisation does not exist (404) or is absent from lists; exact
coordinates appear only for NPO's own data and only with the precise-location key, and
not only in the lat/lon fields: no string of any answer (site codes, names, the review
pages' text) holds a number within 0.01° of a position the reader may not see.
"""

import itertools
import re
from pathlib import Path

import numpy as np
import pytest

from reid.geo import haversine_km
from tests.serve.conftest import PLACES, ROLES, jpeg, match_form

#: Cameras that the matrix's matches record, without a site code (so the API makes one
#: up from the coordinates), by organisation: exact positions.
CAMERAS = {"NPO": [(28.4312, 81.2871), (28.4501, 81.2702)], "INO": [(28.2623, 81.1956)],
           "BTO": [(27.4123, 90.4456)]}  # fmt: skip

OWNERS = {"own": "NPO", "partner": "INO", "foreign": "BTO"}
LEVEL = {r: i for i, r in enumerate(ROLES)}


def _gallery_id(world, org):
    entries = world.app.state.reid.matcher.index.entries()
    return min(i for i, e in entries.items() if e.organisation == org)


def _exact_strings(org):
    """The seeded camera's exact coordinates of ``org`` as they would print."""
    cc = {"NPO": "NP", "INO": "IN", "BTO": "BT"}[org]
    lat, lon = PLACES[cc]
    return [repr(lat + 0.0123), repr(lon + 0.0456)]


def _exact_values(org):
    """Every exact camera coordinate of ``org`` (seeded and matched), as numbers."""
    cc = {"NPO": "NP", "INO": "IN", "BTO": "BT"}[org]
    lat, lon = PLACES[cc]
    return [lat + 0.0123, lon + 0.0456, *itertools.chain(*CAMERAS[org])]


def _leaves(value, path="$"):
    """(json path, leaf) of every string and number in a JSON value."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, f"{path}[{i}]")
    elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
        yield path, value


def _fine_positions(response, hidden):
    """Where an answer carries a number within 0.01° (about 1 km) of one of the ``hidden``
    coordinates, in a string field (site codes, names, messages...), a number field, or
    the text of an HTML page. A generalised position is a 0.25° cell centre, at least
    0.03° from every camera of the test world, so it never counts."""
    if response.headers["content-type"].startswith(("application/json",
                                                    "application/problem+json")):
        leaves = list(_leaves(response.json()))
    elif response.headers["content-type"].startswith("text/html"):
        leaves = [("html", response.text)]
    else:
        return []
    found = []
    for path, leaf in leaves:
        numbers = ([float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", leaf)]
                   if isinstance(leaf, str) else [float(leaf)])  # fmt: skip
        for x in numbers:
            if any(abs(x - h) < 0.01 for h in hidden):
                found.append((path, leaf if isinstance(leaf, (int, float)) else leaf[:120]))
    return found


def _populate(world, held_out):
    """Matches without a site code in each organisation (sites made from coordinates);
    INO's and one of NPO's confirmed as T-INO, a cross-border movement IN -> NP between
    two such sites; NPO's second match stays proposed (the review queue)."""
    photos = {org: next(v[0] for k, v in sorted(held_out.items()) if v[1] == org)
              for org in ("NPO", "INO", "BTO")}  # fmt: skip
    country = {"NPO": "NP", "INO": "IN", "BTO": "BT"}
    made = {}
    for org in ("INO", "NPO", "BTO"):
        for lat, lon in CAMERAS[org]:
            record = photos[org]
            r = world.client.post(
                "/v1/match", headers=world.auth(org, "contributor"),
                data=match_form(side=record.side, country=country[org], lat=lat, lon=lon),
                files={"image": ("q.jpg", Path(record.path).read_bytes(), "image/jpeg")},
            )  # fmt: skip
            assert r.status_code == 200, r.text
            made.setdefault(org, []).append(r.json()["sighting"])
    for org, code in (("INO", made["INO"][0]), ("NPO", made["NPO"][0])):
        r = world.client.post(f"/v1/sightings/{code}/decision", headers=world.auth(org, "reviewer"),
                              json={"action": "confirm", "individual": "T-INO"})  # fmt: skip
        assert r.status_code == 200, r.text


# endpoint name -> (needed role, request(world, target org) -> response, own, partner, foreign)
ENDPOINTS = {
    "sighting": ("viewer", lambda w, o, h: w.client.get(f"/v1/sightings/{w.sightings[o]}",
                 headers=h), 200, 200, 404),
    "thumbnail": ("viewer", lambda w, o, h: w.client.get(
                  f"/v1/media/{w.sightings[o]}/thumbnail", headers=h), 200, 200, 404),
    "individual": ("viewer", lambda w, o, h: w.client.get(
                   f"/v1/individuals/{w.individuals[o]}", headers=h), 200, 200, 404),
    "individual-sightings": ("viewer", lambda w, o, h: w.client.get(
                             "/v1/sightings", params={"individual": w.individuals[o]},
                             headers=h), 200, 200, 404),
    "gallery-image": ("viewer", lambda w, o, h: w.client.get(
                      f"/v1/gallery/{_gallery_id(w, o)}/image", headers=h), 200, 200, 404),
    "decision": ("reviewer", lambda w, o, h: w.client.post(
                 f"/v1/sightings/{w.sightings[o]}/decision", headers=h,
                 json={"action": "reject", "reason": "matrix"}), 200, 403, 404),
    "movements-of": ("viewer", lambda w, o, h: w.client.get(
                     "/v1/movements", params={"individual": w.individuals[o]}, headers=h),
                     200, 200, 404),
    "review-page": ("viewer", lambda w, o, h: w.client.get(f"/review/{w.sightings[o]}",
                    headers=h), 200, 200, 404),
    # lists (the target organisation plays no part): own and partner data, never foreign
    "sightings": ("viewer", lambda w, o, h: w.client.get("/v1/sightings", headers=h),
                  200, 200, 200),
    "individuals": ("viewer", lambda w, o, h: w.client.get("/v1/individuals", headers=h),
                    200, 200, 200),
    "movements": ("viewer", lambda w, o, h: w.client.get("/v1/movements", headers=h),
                  200, 200, 200),
    "review-queue": ("viewer", lambda w, o, h: w.client.get("/review", headers=h),
                     200, 200, 200),
    "audit": ("admin", lambda w, o, h: w.client.get("/v1/audit", headers=h), 200, 200, 200),
}  # fmt: skip


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_matrix(world, endpoint, held_out):
    """One world per endpoint; every role x owner x precise-location key inside."""
    _populate(world, held_out)
    for role, whose, precise in itertools.product(ROLES, OWNERS, (False, True)):
        _check(world, endpoint, role, whose, precise)


def _check(world, endpoint, role, whose, precise):
    needed, call, *expected = ENDPOINTS[endpoint]
    org = OWNERS[whose]
    r = call(world, org, world.auth("NPO", role, precise))
    want = 403 if LEVEL[role] < LEVEL[needed] else dict(zip(OWNERS, expected, strict=True))[whose]
    case = (endpoint, role, whose, precise)
    assert r.status_code == want, (case, r.status_code, r.text[:300])
    # no position finer than the reader may see, in any field or on any page
    hidden = [*_exact_values("INO"), *_exact_values("BTO")]
    if not precise:
        hidden += _exact_values("NPO")
    leaks = _fine_positions(r, hidden)
    assert not leaks, f"{case}: positions finer than the reader may see: {leaks[:5]}"
    if r.status_code >= 400:
        assert r.headers["content-type"] == "application/problem+json"
        # nothing about foreign data beyond the id asked for: no owner, site, place
        assert '"BTO"' not in r.text and "site-BTO" not in r.text and '"BT"' not in r.text
        return
    text = r.text
    if r.headers["content-type"].startswith("application/json"):
        for other in ("NPO", "INO", "BTO"):
            exact_shown = all(s in text for s in _exact_strings(other))
            allowed = precise and other == "NPO"
            assert not exact_shown or allowed, f"{case}: exact coordinates of {other} leaked"
        assert '"BTO"' not in text and "T-BTO" not in text, case
        if precise and org == "NPO" and endpoint in ("sighting", "individual"):
            assert all(s in text for s in _exact_strings("NPO")), case


@pytest.mark.parametrize("role", ROLES)
def test_lists_hold_own_and_partner_data_only(world, role):
    h = world.auth("NPO", role, True)
    inds = {i["code"] for i in world.client.get("/v1/individuals", headers=h).json()}
    assert {"T-NPO", "T-INO"} <= inds and "T-BTO" not in inds
    sightings = world.client.get("/v1/sightings", headers=h).json()
    assert {s["organisation"] for s in sightings} == {"NPO", "INO"}
    for s in sightings:
        assert s["location"]["exact"] is (s["organisation"] == "NPO")
    moves = world.client.get("/v1/movements", headers=h).json()
    assert [(m["individual"], m["start"]["exact"], m["end"]["exact"]) for m in moves] == [
        ("T-NPO", True, False)
    ]
    # one end generalised: the distance between the ends as shown, rounded to 10 km (the
    # recorded one, even rounded, lets a caller who places its own end triangulate)
    start, end = moves[0]["start"], moves[0]["end"]
    shown = haversine_km(start["lat"], start["lon"], end["lat"], end["lon"])
    assert moves[0]["distance_km"] == float(round(shown / 10.0) * 10)


def test_partner_without_an_agreement_sees_nothing_of_npo(world):
    h = world.auth("INO", "admin", True)  # NPO shares nothing with INO
    assert world.client.get(f"/v1/sightings/{world.sightings['NPO']}", headers=h).status_code == 404
    assert world.client.get("/v1/movements", headers=h).json() == []
    inds = {i["code"] for i in world.client.get("/v1/individuals", headers=h).json()}
    assert inds == {"T-INO"}


@pytest.mark.parametrize("role", ROLES)
def test_role_gates_of_writing_and_admin_endpoints(world, role, held_out):
    h = world.auth("NPO", role)
    level = LEVEL[role]
    record = next(v[0] for v in held_out.values())
    image = {"image": ("q.jpg", Path(record.path).read_bytes(), "image/jpeg")}
    r = world.client.post("/v1/match", headers=h, data=match_form(), files=image)
    assert r.status_code == (200 if level >= LEVEL["contributor"] else 403)
    if r.status_code == 200:
        assert {c["organisation"] for c in r.json()["candidates"]} <= {"NPO", "INO"}
    r = world.client.post("/v1/gallery", headers=h, files=image,
                          data={"individual": "T-NPO", "species": "tiger", "side": "left"})
    assert r.status_code == (201 if level >= LEVEL["contributor"] else 403)
    r = world.client.post("/v1/gallery", headers=h, files=image,
                          data={"individual": "T-BTO", "species": "tiger", "side": "left"})
    # codes are per organisation: NPO's own T-BTO, BTO's is neither touched nor revealed
    assert r.status_code == (201 if level >= LEVEL["contributor"] else 403)
    for url in ("/v1/agreements", "/v1/audit"):
        assert world.client.get(url, headers=h).status_code == (200 if role == "admin" else 403)
    r = world.client.post("/v1/agreements", headers=h, json={"partner": "BTO"})
    assert r.status_code == (201 if role == "admin" else 403)
    blank = jpeg(np.zeros((32, 64, 3), np.uint8))
    r = world.client.post("/v1/jobs", headers=h, files={"files": ("a.jpg", blank, "image/jpeg")})
    # NPO may not match against BTO's gallery, so no bulk job against the whole of it
    assert r.status_code == 403


def test_audit_log_records_precise_reads_and_stays_in_the_organisation(world):
    world.client.get("/v1/sightings", headers=world.auth("NPO", "viewer", True))
    world.client.get("/v1/sightings", headers=world.auth("NPO", "viewer", False))
    world.client.get("/v1/sightings", headers=world.auth("INO", "viewer", True))
    log = world.client.get("/v1/audit", headers=world.auth("NPO", "admin")).json()
    reads = [e for e in log if e["action"] == "read.precise"]
    assert len(reads) == 1 and reads[0]["precise_location"]
    assert reads[0]["key_id"] == world.keys[("NPO", "viewer", True)].split("_")[1]
    assert {e["organisation"] for e in log} == {"NPO"}
