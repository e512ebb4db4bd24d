"""Issue 26, "also seen": agreements share what they say, owners see partners' reads of
their exact coordinates, failed keys are rate-limited, the guide's roles match the code."""

import re
from pathlib import Path

from serve.access import RateLimiter


def test_an_agreement_for_matching_does_not_share_sightings(world):
    r = world.client.post("/v1/agreements", headers=world.auth("BTO", "admin"),
                          json={"partner": "NPO", "share_match": True})  # fmt: skip
    assert r.status_code == 201, r.text
    assert r.json()["share_match"] and not r.json()["share_sightings"]
    h = world.auth("NPO", "viewer")
    assert world.client.get(f"/v1/sightings/{world.sightings['BTO']}", headers=h).status_code == 404
    assert "T-BTO" not in {i["code"] for i in world.client.get("/v1/individuals", headers=h).json()}


def test_an_owner_sees_partners_reads_of_its_exact_coordinates(world):
    r = world.client.post("/v1/agreements", headers=world.auth("INO", "admin"),
                          json={"partner": "NPO", "share_match": True, "share_sightings": True,
                                "share_precise": True})  # fmt: skip
    assert r.status_code == 201
    reader = world.auth("NPO", "viewer", True)
    body = world.client.get(f"/v1/sightings/{world.sightings['INO']}", headers=reader).json()
    assert body["location"]["exact"]
    log = world.client.get("/v1/audit", headers=world.auth("INO", "admin")).json()
    reads = [e for e in log if e["action"] == "read.precise"]
    assert len(reads) == 1 and reads[0]["organisation"] == "NPO" and reads[0]["owner"] == "INO"
    assert reads[0]["key_id"] == world.keys[("NPO", "viewer", True)].split("_")[1]
    # the reader's own admins see it as well; BTO's see nothing of it
    assert any(e["action"] == "read.precise" for e in
               world.client.get("/v1/audit", headers=world.auth("NPO", "admin")).json())
    bto = world.client.get("/v1/audit", headers=world.auth("BTO", "admin")).json()
    assert not [e for e in bto if e["action"] == "read.precise"]


def test_failed_key_attempts_are_rate_limited_per_address(world):
    world.app.state.reid.auth_failures = RateLimiter(per_minute=1, burst=3)
    bad = {"Authorization": "Bearer bcr_0123456789ab_guessed-secret"}
    codes = [world.client.get("/v1/individuals", headers=bad).status_code for _ in range(5)]
    assert codes[:3] == [401, 401, 401] and codes[3:] == [429, 429]
    r = world.client.get("/v1/individuals", headers=bad)
    assert int(r.headers["Retry-After"]) >= 1
    # the review page's sign-in counts too
    page = world.client.get("/review")
    assert page.status_code == 200
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = world.client.post("/review/login", data={"key": "bcr_x_y", "csrf": csrf},
                          headers={"Origin": "http://testserver"})  # fmt: skip
    assert r.status_code == 429


def test_the_operator_guide_role_table_matches_the_code(world):
    guide = (Path(__file__).parents[2] / "docs" / "operator.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| (.+) \|$", guide, flags=re.M))
    assert "enrol" in rows["contributor"] and "enrol photos" not in rows["reviewer"]
    spec = world.client.get("/openapi.json").json()
    assert "contributor** (+ match, enrol" in " ".join(spec["info"]["description"].split())
