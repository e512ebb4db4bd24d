"""The API end to end: match, decide, the decision trail, enrol, health, metrics, keys."""

from sqlalchemy import func, select

from reid.registry import Registry
from reid.registry.access import ApiKey, AuditEntry
from tests.serve.conftest import match_form, photo_bytes


def _match(world, record, org="NPO", role="contributor", **extra):
    return world.client.post(
        "/v1/match", headers=world.auth(org, role), data=match_form(side=record.side, **extra),
        files={"image": ("q.png", photo_bytes(record), "image/png")},
    )  # fmt: skip


def _npo_query(held_out):
    return next(v[0] for k, v in sorted(held_out.items()) if v[1] == "NPO")


def test_match_returns_candidates_evidence_and_a_proposed_sighting(world, held_out):
    record = _npo_query(held_out)
    r = _match(world, record)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["decision"] in ("known", "new")
    assert 0 <= body["probability"] <= 1 and 0 <= body["new_probability"] <= 1
    # which flank galleries were searched is part of the answer (a side given: that one)
    assert body["searched"] in (["left"], ["right"], ["left", "right"])
    assert body["left_probability"] is None or 0 <= body["left_probability"] <= 1
    assert body["candidates"], "the gallery holds the query's flank"
    # only own (NPO) and partner (INO) galleries are searched, never BTO's
    assert {c["organisation"] for c in body["candidates"]} <= {"NPO", "INO"}
    assert all(c["side"] == record.side for c in body["candidates"])
    top = body["candidates"][0]
    assert top["evidence"] and top["evidence"][0]["image_url"].startswith("/v1/gallery/")
    ev = top["evidence"][0]
    assert len(ev["query_points"]) == len(ev["gallery_points"]) == ev["inliers"]
    assert "/" not in str(ev["image_url"]).removeprefix("/v1/gallery/").split("/")[0]
    assert "path" not in r.text and str(world.tmp) not in r.text  # no server paths leak
    sig = world.client.get(f"/v1/sightings/{body['sighting']}", headers=world.auth("NPO"))
    assert sig.status_code == 200
    assert sig.json()["status"] == "proposed"
    assert sig.json()["decisions"][0]["action"] == "propose"
    assert sig.json()["decisions"][0]["model_version"] == body["model_version"]
    thumb = world.client.get(body["query_image_url"], headers=world.auth("NPO", "viewer"))
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    g = world.client.get(ev["image_url"], headers=world.auth("NPO", "viewer"))
    assert g.status_code == 200 and g.content[:2] == b"\xff\xd8"


def test_decisions_write_the_trail_and_audit(world, held_out):
    record = _npo_query(held_out)
    code = _match(world, record).json()["sighting"]
    h = world.auth("NPO", "reviewer")
    url = f"/v1/sightings/{code}/decision"
    r = world.client.post(url, headers=h, json={"action": "confirm", "individual":
                          record.individual_id, "reason": "stripes match"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "confirmed" and r.json()["individual"] == record.individual_id
    r = world.client.post(url, headers=h, json={"action": "new", "individual": "T-NEW-1"})
    assert r.json()["individual"] == "T-NEW-1"
    r = world.client.post(url, headers=h, json={"action": "new", "individual": "T-NEW-1"})
    assert r.status_code == 409 and r.json()["field"] == "individual"
    r = world.client.post(url, headers=h, json={"action": "reject", "reason": "blurred"})
    trail = r.json()["decisions"]
    assert [d["action"] for d in trail] == ["propose", "confirm", "confirm", "reject"]
    assert trail[1]["decided_by"].endswith("@NPO") and trail[1]["reason"] == "stripes match"
    with Registry(world.app.state.reid.settings.database_url).session() as s:
        actions = list(s.scalars(select(AuditEntry.action).where(AuditEntry.organisation == "NPO")))
    assert actions.count("decision.confirm") == 1 and "decision.new" in actions
    assert "decision.reject" in actions and "match" in actions


def test_unknown_individual_is_a_422_naming_the_field(world, held_out):
    code = _match(world, _npo_query(held_out)).json()["sighting"]
    for name in ("T-nobody", "T-BTO", "T-s3-0002"):  # absent, foreign registry, foreign gallery
        r = world.client.post(f"/v1/sightings/{code}/decision", headers=world.auth("NPO"),
                              json={"action": "confirm", "individual": name})  # fmt: skip
        assert r.status_code == 422, (name, r.text)
        assert r.json()["field"] == "individual"
        assert r.headers["content-type"] == "application/problem+json"


def test_enrol_then_match_finds_the_new_individual(world, held_out):
    record = next(v[0] for k, v in sorted(held_out.items()) if v[1] == "BTO")
    h = world.auth("NPO", "contributor")
    r = world.client.post("/v1/gallery", headers=h, data={
        "individual": "T-NPO-99", "species": "tiger", "side": record.side},
        files={"image": ("g.png", photo_bytes(record), "image/png")})  # fmt: skip
    assert r.status_code == 201, r.text
    assert r.json()["organisation"] == "NPO"
    body = _match(world, record).json()
    assert body["candidates"][0]["individual"] == "T-NPO-99"  # the very photo, enrolled
    assert body["candidates"][0]["local_score"] > 0
    assert body["candidates"][0]["refined"] is False  # a RootSIFT gallery never refines


def test_health_metrics_and_openapi(world):
    r = world.client.get("/v1/health")
    assert r.json()["status"] == "ok" and r.json()["matching"] and r.json()["gallery_vectors"] > 0
    world.client.get("/v1/individuals", headers=world.auth())
    m = world.client.get("/metrics").text
    assert "reid_http_requests_total" in m and 'route="/v1/individuals"' in m
    spec = world.client.get("/openapi.json").json()
    match = spec["paths"]["/v1/match"]["post"]
    assert {"401", "403", "413", "415", "422", "429"} <= set(match["responses"])
    assert match["security"] == [{"apiKey": []}]
    form = spec["components"]["schemas"][
        match["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"].split("/")[-1]]
    assert all(p.get("description") for p in form["properties"].values())
    for name, schema in spec["components"]["schemas"].items():
        if name.endswith("Out"):
            assert all(p.get("description") for p in schema["properties"].values()), name


def test_keys_are_hashed_revocable_and_rate_limited(world, db_url):
    from serve.access import RateLimiter, revoke_key

    key = world.keys[("NPO", "viewer", False)]
    with Registry(db_url).session() as s:
        stored = s.scalars(select(ApiKey.secret_sha256)).all()
        # the secret is base64url, so it may itself contain "_": split at most twice
        secret = key.split("_", 2)[2]
        assert len(secret) >= 40 and secret not in " ".join(stored)
        revoke_key(s, key.split("_")[1])
    r = world.client.get("/v1/individuals", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 401 and r.json()["field"] == "Authorization"
    assert world.client.get("/v1/individuals").status_code == 401
    bad = world.client.get("/v1/individuals", headers={"Authorization": "Basic abc"})
    assert bad.status_code == 401
    limiter = RateLimiter(per_minute=60, burst=2)
    assert [limiter.take("k") for _ in range(3)][:2] == [0.0, 0.0]
    assert limiter.take("k") >= 1 and limiter.take("other") == 0.0
    world.app.state.reid.limiter = RateLimiter(per_minute=1, burst=1)
    h = world.auth("NPO", "admin")
    assert world.client.get("/v1/individuals", headers=h).status_code == 200
    r = world.client.get("/v1/individuals", headers=h)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1


def test_keys_cli_create_list_revoke(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from reid.cli import app

    monkeypatch.setenv("REID_DATABASE_URL", f"sqlite:///{tmp_path / 'r.sqlite'}")
    runner = CliRunner()
    r = runner.invoke(app, ["keys", "create", "--org", "NPO", "--role", "reviewer",
                            "--precise-location", "--country", "NP"])  # fmt: skip
    assert r.exit_code == 0, r.output
    key = r.stdout.strip().splitlines()[0]
    assert key.startswith("bcr_")
    listed = runner.invoke(app, ["keys", "list"]).stdout
    key_id, secret = key.split("_", 2)[1:]
    assert key_id in listed and "precise" in listed and secret not in listed
    assert runner.invoke(app, ["keys", "revoke", key.split("_")[1]]).exit_code == 0
    assert "revoked" in runner.invoke(app, ["keys", "list"]).stdout
    bad = runner.invoke(app, ["keys", "create", "--org", "NPO", "--role", "boss"])
    assert bad.exit_code == 2 and "role 'boss'" in bad.output
    with Registry().session() as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry)) == 2
