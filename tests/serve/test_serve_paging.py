"""GET /v1/sightings a page at a time: every visible sighting once, in order, whatever the
page size; the cursor (``after``) cannot be used to learn about hidden sightings."""

from __future__ import annotations

from datetime import timedelta

from tests.serve.conftest import T0


def _add_sightings(db_url: str) -> dict[str, list[str]]:
    """30 more confirmed sightings, three at each capture time (ties), at the three
    organisations' cameras in turn; codes by organisation."""
    from sqlalchemy import select

    from reid.registry import Registry, add_media, add_sighting, get_individual
    from reid.registry.models import Deployment

    reg = Registry(db_url)
    codes: dict[str, list[str]] = {"NPO": [], "INO": [], "BTO": []}
    with reg.session() as s:
        for k in range(30):
            org = ("NPO", "INO", "BTO")[k % 3]
            dep = s.scalar(select(Deployment).where(Deployment.code == f"dep-{org}"))
            media = add_media(s, dep, f"/nonexistent/p{k}.jpg", T0 + timedelta(days=20 + k // 3))
            sig = add_sighting(s, media, "tiger", side="left", status="confirmed",
                               individual=get_individual(s, f"T-{org}"), decided_by="test")
            codes[org].append(sig.code)
    reg.close()
    return codes


def test_pages_give_every_visible_sighting_once_in_order(world, db_url):
    codes = _add_sightings(db_url)
    auth = world.auth("NPO", "viewer")
    whole = world.client.get("/v1/sightings", params={"limit": 1000}, headers=auth)
    assert whole.status_code == 200, whole.text
    everything = [s["code"] for s in whole.json()]
    # NPO sees its own and INO's (INO shares with it), never BTO's
    assert set(codes["NPO"]) | set(codes["INO"]) <= set(everything)
    assert not set(codes["BTO"]) & set(everything)
    times = [s["captured_at"] for s in whole.json()]
    assert times == sorted(times)
    for size in (1, 3, 4, 7):
        got, after = [], None
        while True:
            params = {"limit": size} | ({"after": after} if after else {})
            page = world.client.get("/v1/sightings", params=params, headers=auth)
            assert page.status_code == 200, page.text
            page = [s["code"] for s in page.json()]
            got += page
            if len(page) < size:
                break
            after = page[-1]
        assert got == everything, size
    # the cursor keeps the other filters
    since = (T0 + timedelta(days=25)).isoformat()
    first = world.client.get("/v1/sightings", params={"since": since, "limit": 2},
                             headers=auth).json()  # fmt: skip
    rest = world.client.get("/v1/sightings", params={"since": since, "limit": 1000,
                                                     "after": first[-1]["code"]},
                            headers=auth).json()  # fmt: skip
    later = [s["code"] for s in whole.json() if s["captured_at"] >= since]
    assert [s["code"] for s in first + rest] == later
    # and the individual filter: a partner's tiger, two at a time
    theirs = world.client.get("/v1/sightings", params={"individual": "T-INO", "limit": 1000},
                              headers=auth).json()  # fmt: skip
    assert {s["code"] for s in theirs} >= set(codes["INO"])
    got, after = [], None
    while True:
        page = world.client.get("/v1/sightings", headers=auth, params={
            "individual": "T-INO", "limit": 2, **({"after": after} if after else {})}).json()
        got += [s["code"] for s in page]
        if len(page) < 2:
            break
        after = page[-1]["code"]
    assert got == [s["code"] for s in theirs]


def test_a_cursor_naming_a_hidden_sighting_answers_as_an_absent_one(world, db_url):
    codes = _add_sightings(db_url)
    auth = world.auth("NPO", "viewer")
    hidden = world.client.get("/v1/sightings", params={"after": codes["BTO"][0]}, headers=auth)
    absent = world.client.get("/v1/sightings", params={"after": "no-such-code"}, headers=auth)
    assert hidden.status_code == absent.status_code == 422
    assert hidden.json()["detail"].replace(codes["BTO"][0], "X") == absent.json()[
        "detail"
    ].replace("no-such-code", "X")
    # BTO itself may continue after its own sighting
    own = world.client.get("/v1/sightings", params={"after": codes["BTO"][0]},
                           headers=world.auth("BTO", "viewer"))  # fmt: skip
    assert own.status_code == 200
    assert [s["code"] for s in own.json()] == codes["BTO"][1:]
