"""Regression tests of issue 26: the holes an attacker's probe of the API found.

One test (or a few) per hole; each failed on the code before its fix.
"""

import pytest

from tests.serve.conftest import match_form, photo_bytes

EXTREME = "0001-01-01T00:00:00+14:00"


def _npo_query(held_out):
    return next(v[0] for k, v in sorted(held_out.items()) if v[1] == "NPO")


def _match(world, record, org="NPO", role="contributor", **extra):
    return world.client.post(
        "/v1/match", headers=world.auth(org, role), data=match_form(side=record.side, **extra),
        files={"image": ("q.png", photo_bytes(record), "image/png")},
    )  # fmt: skip


# -- 2. extreme UTC offsets are a 422 naming the field, not a 500 --------------------


@pytest.mark.parametrize(
    ("url", "field"), [("/v1/sightings", "since"), ("/v1/movements", "since")]
)
def test_extreme_utc_offset_in_a_query_is_a_422(world, url, field):
    r = world.client.get(url, params={"since": EXTREME}, headers=world.auth("NPO", "viewer"))
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field
    assert r.headers["content-type"] == "application/problem+json"


def test_extreme_utc_offset_of_a_capture_time_is_a_422(world, held_out):
    r = _match(world, _npo_query(held_out), captured_at=EXTREME)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "captured_at"


# -- 4. decision codes are validated like enrolment ----------------------------------


def test_decision_codes_are_validated(world, held_out):
    sighting = _match(world, _npo_query(held_out)).json()["sighting"]
    for code in ("", "a/b", "T 1", "../x", "x" * 129):
        for action in ("new", "confirm"):
            r = world.client.post(f"/v1/sightings/{sighting}/decision",
                                  headers=world.auth("NPO"),
                                  json={"action": action, "individual": code})  # fmt: skip
            assert r.status_code == 422, (code, action, r.text)
            assert r.json()["field"] == "individual"
    listed = world.client.get("/v1/individuals", headers=world.auth("NPO")).json()
    assert {i["code"] for i in listed} == {"T-NPO", "T-INO"}
