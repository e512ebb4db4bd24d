"""Regression tests of issue 26: the holes an attacker's probe of the API found.

One test (or a few) per hole; each failed on the code before its fix.
"""

import pytest

from tests.serve.conftest import PLACES, match_form, photo_bytes

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


# -- 9. job errors name the user's files, never the server's disk --------------------


def _share_whole_gallery(db_url):
    from reid.registry import Registry
    from serve.access import add_agreement

    with Registry(db_url).session() as s:  # BTO shares matching: the whole gallery is NPO's
        add_agreement(s, "BTO", "NPO", share_match=True, share_sightings=False,
                      share_precise=False, created_by="test")  # fmt: skip


def test_job_errors_do_not_expose_server_paths(world, db_url, held_out, monkeypatch):
    import io
    import time
    import zipfile

    from reid.errors import ReidError
    from serve.jobs import JobRunner

    _share_whole_gallery(db_url)
    jobs_dir = str(world.app.state.reid.settings.jobs_dir)
    h = world.auth("NPO", "contributor")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("pkg/datapackage.json", "{ not json")
    r = world.client.post("/v1/jobs", headers=h,
                          files={"files": ("season.zip", buf.getvalue(), "application/zip")})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "pkg/datapackage.json" in detail and jobs_dir not in detail, detail
    assert str(world.tmp) not in r.text

    def failing(self, job):  # the season runner failing on a file of the upload
        folder = self.root / job["id"]
        raise ReidError(f"{folder}/input/tiger/00000-left_0.jpg: cannot read the image header "
                        f"(index {self.state.settings.index})")

    monkeypatch.setattr(JobRunner, "_run", failing)
    record = next(v[0] for v in held_out.values())
    r = world.client.post("/v1/jobs", headers=h, data={"species": "tiger"},
                          files={"files": ("left_0.jpg", photo_bytes(record), "image/jpeg")})
    assert r.status_code == 202, r.text
    job = r.json()
    deadline = time.monotonic() + 60
    while job["state"] not in ("done", "failed") and time.monotonic() < deadline:
        time.sleep(0.2)
        job = world.client.get(f"/v1/jobs/{job['id']}", headers=h).json()
    assert job["state"] == "failed"
    assert "left_0.jpg" in job["error"], job["error"]
    assert str(world.tmp) not in job["error"] and "00000-" not in job["error"], job["error"]


# -- 8. a confirmation through the API updates movements at once ---------------------


def test_a_cross_border_confirmation_through_the_api_records_the_movement(world, held_out):
    h = world.auth("NPO", "reviewer")
    assert world.client.get("/v1/movements", params={"individual": "T-INO"},
                            headers=h).json() == []  # fmt: skip
    # T-INO was seen in India (seeded, day 1); NPO's camera in Nepal catches it later
    sighting = _match(world, _npo_query(held_out)).json()["sighting"]
    r = world.client.post(f"/v1/sightings/{sighting}/decision", headers=h,
                          json={"action": "confirm", "individual": "T-INO"})  # fmt: skip
    assert r.status_code == 200, r.text
    moves = world.client.get("/v1/movements", params={"individual": "T-INO"}, headers=h).json()
    assert [(m["start"]["country"], m["end"]["country"]) for m in moves] == [("IN", "NP")]
    ind = world.client.get("/v1/individuals/T-INO", headers=h).json()
    assert ind["last_seen"].startswith("2025-02-01")
    # a correction (rejecting it) takes the movement away again
    r = world.client.post(f"/v1/sightings/{sighting}/decision", headers=h,
                          json={"action": "reject", "reason": "not T-INO"})  # fmt: skip
    assert world.client.get("/v1/movements", params={"individual": "T-INO"},
                            headers=h).json() == []  # fmt: skip


# -- 6. a box on an EXIF-rotated photo crops the same region everywhere --------------


def _rotated_jpeg(box):
    """A JPEG stored landscape (240x120) with EXIF orientation 6, i.e. shown (and decoded)
    portrait, 120x240; ``box`` (x, y, w, h in the portrait image) is red, the rest grey."""
    import io

    import numpy as np
    from PIL import Image

    shown = np.full((240, 120, 3), 90, np.uint8)
    x, y, w, h = box
    shown[y : y + h, x : x + w] = (230, 20, 20)
    stored = Image.fromarray(shown).transpose(Image.Transpose.ROTATE_90)  # 90° anticlockwise
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to show"
    out = io.BytesIO()
    stored.save(out, "JPEG", quality=95, exif=exif.tobytes())
    return out.getvalue()


def test_exif_rotated_photo_with_a_box_is_cropped_right(world):
    import io

    import numpy as np
    from PIL import Image

    box = (10, 150, 100, 80)
    data = _rotated_jpeg(box)
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == (240, 120)  # stored landscape
    form = match_form(box_x=box[0], box_y=box[1], box_w=box[2], box_h=box[3])
    r = world.client.post("/v1/match", headers=world.auth("NPO", "contributor"), data=form,
                          files={"image": ("rotated.jpg", data, "image/jpeg")})  # fmt: skip
    assert r.status_code == 200, r.text
    code = r.json()["sighting"]
    thumb = world.client.get(f"/v1/media/{code}/thumbnail", headers=world.auth("NPO", "viewer"))
    assert thumb.status_code == 200
    crop = np.asarray(Image.open(io.BytesIO(thumb.content)).convert("RGB")).astype(int)
    assert crop.shape[:2] == (box[3], box[2])  # the box's own size (80 x 100)
    assert crop[..., 0].mean() > 200 and crop[..., 1].mean() < 60  # all of it the red box
    page = world.client.get(f"/review/{code}", headers=world.auth("NPO", "reviewer"))
    assert page.status_code == 200


# -- 10. re-deciding a decided sighting is a correction: code, OpenAPI, guide agree --


def test_redeciding_is_a_documented_correction(world, held_out):
    from pathlib import Path

    sighting = _match(world, _npo_query(held_out)).json()["sighting"]
    h = world.auth("NPO", "reviewer")
    url = f"/v1/sightings/{sighting}/decision"
    first = world.client.post(url, headers=h, json={"action": "confirm", "individual": "T-NPO"})
    again = world.client.post(url, headers=h, json={"action": "reject", "reason": "blurred"})
    assert first.status_code == again.status_code == 200, again.text
    assert [d["action"] for d in again.json()["decisions"]] == ["propose", "confirm", "reject"]
    log = world.client.get("/v1/audit", headers=world.auth("NPO", "admin")).json()
    assert any(e["action"] == "decision.reject" for e in log)
    op = world.client.get("/openapi.json").json()["paths"]["/v1/sightings/{code}/decision"]
    conflict = op["post"]["responses"]["409"]["description"]
    assert "already decided" not in conflict.replace("already decided is not", "")
    assert "correction" in op["post"]["description"] and "correction" in conflict
    guide = (Path(__file__).parents[2] / "docs" / "researcher.md").read_text()
    assert "correction" in guide and "never 409" in guide


# -- 7. enrolment is idempotent; the gallery and the registry stay consistent --------


def _vectors_of(world, path):
    entries = world.app.state.reid.matcher.index.entries().values()
    return [e for e in entries if e.image == str(path)]


def test_a_failed_decision_leaves_no_gallery_vector_and_a_resent_one_enrols_once(
    world, held_out, monkeypatch
):
    import serve.routers.sightings as sightings_router

    record = _npo_query(held_out)
    sighting = _match(world, record).json()["sighting"]
    h = world.auth("NPO", "reviewer")
    body = {"action": "new", "individual": "T-NPO-7", "enrol": True}
    url = f"/v1/sightings/{sighting}/decision"

    def crash(_session):  # the process fails after the gallery was saved, before the commit
        raise RuntimeError("crash before the registry commits")

    monkeypatch.setattr(sightings_router, "derive_movements", crash)
    with pytest.raises(RuntimeError):
        world.client.post(url, headers=h, json=body)
    monkeypatch.undo()
    media = world.app.state.reid.settings.media_dir
    (path,) = [p for p in media.rglob("*") if p.is_file()]
    assert _vectors_of(world, path) == []  # taken out again with the rollback
    assert world.client.get(f"/v1/sightings/{sighting}", headers=h).json()["status"] == "proposed"
    r = world.client.post(url, headers=h, json=body)  # the decision sent again
    assert r.status_code == 200, r.text
    r = world.client.post(url, headers=h, json=body | {"action": "confirm"})  # and once more
    assert r.status_code == 200, r.text
    assert [e.individual for e in _vectors_of(world, path)] == ["T-NPO-7"]
    # a correction to another individual takes the photo out of the gallery under the old one
    r = world.client.post(url, headers=h, json={"action": "confirm", "individual": "T-NPO"})
    assert r.status_code == 200, r.text
    assert _vectors_of(world, path) == []


def test_enrolling_the_same_photo_twice_adds_one_vector(world, held_out):
    record = _npo_query(held_out)
    h = world.auth("NPO", "contributor")
    form = {"individual": "T-NPO", "species": "tiger", "side": record.side}
    ids = []
    for _ in range(2):
        r = world.client.post("/v1/gallery", headers=h, data=form,
                              files={"image": ("g.png", photo_bytes(record), "image/png")})
        assert r.status_code == 201, r.text
        ids.append(r.json()["gallery_id"])
    assert ids[0] == ids[1]


def test_a_vector_orphaned_by_a_crash_is_removed_at_start_up(world, held_out):
    """kill -9 between saving the index and the registry commit: the index on disk holds a
    vector the registry never heard of; the next start removes it."""
    from fastapi.testclient import TestClient

    from reid.index import GalleryEntry
    from serve import create_app
    from serve.routers.gallery import add_to_gallery
    from serve.uploads import keep, read_upload

    record = _npo_query(held_out)
    state = world.app.state.reid

    class Upload:
        filename = "g.png"
        file = __import__("io").BytesIO(photo_bytes(record))

    photo = read_upload(Upload, 10_000_000, 10_000_000)
    path = keep(photo, state.settings.media_dir)
    entry = GalleryEntry(str(path), "T-NPO", "tiger", record.side, "NPO", None)
    add_to_gallery(state, None, photo.pixels, entry)  # saved; no registry transaction
    assert len(_vectors_of(world, path)) == 1
    kept = world.client.post("/v1/gallery", headers=world.auth("NPO", "contributor"),
                             data={"individual": "T-NPO", "species": "tiger",
                                   "side": "right" if record.side == "left" else "left"},
                             files={"image": ("g.png", photo_bytes(record), "image/png")})
    assert kept.status_code == 201  # a real enrolment of the same photo (other side) stays
    with TestClient(create_app(state.settings)) as client:  # the restart
        restarted = client.app.state.reid.matcher.index.entries().values()
        assert [e.side for e in restarted if e.image == str(path)] == [kept.json()["side"]]


# -- 1. no code, name or page carries a position finer than the reader may see -------


def _numbers(text):
    import re

    return [float(x) for x in re.findall(r"-?\d+\.\d+", text)]


def test_a_site_made_from_coordinates_does_not_carry_them(world, held_out):
    lat, lon = 28.4312, 81.2871  # an NPO camera in Nepal, exact
    r = _match(world, _npo_query(held_out), lat=lat, lon=lon)
    assert r.status_code == 200, r.text
    code = r.json()["sighting"]
    again = _match(world, _npo_query(held_out), lat=lat, lon=lon).json()["sighting"]
    body = world.client.get(f"/v1/sightings/{code}", headers=world.auth("NPO", "viewer")).json()
    site = body["location"]["site"]
    assert not body["location"]["exact"]
    assert all(abs(x - lat) > 0.01 and abs(x - lon) > 0.01 for x in _numbers(site)), site
    second = world.client.get(f"/v1/sightings/{again}", headers=world.auth("NPO", "viewer"))
    assert second.json()["location"]["site"] == site  # the same camera, the same site
    queue = world.client.get("/review", headers=world.auth("NPO", "reviewer")).text
    assert code in queue
    assert all(abs(x - lat) > 0.01 and abs(x - lon) > 0.01 for x in _numbers(queue))
    # a code chosen by the caller may not smuggle coordinates either
    r = _match(world, _npo_query(held_out), site="cam-28.4312-81.2871", lat=lat, lon=lon)
    assert r.status_code == 422 and r.json()["field"] == "site"
    r = _match(world, _npo_query(held_out), camera="at-28.43,81.28", lat=lat, lon=lon)
    assert r.status_code == 422 and r.json()["field"] == "camera"


# -- 3. individual codes are scoped per organisation: no blocking, no probing --------


def test_codes_of_other_organisations_can_be_neither_probed_nor_blocked(world, held_out):
    from tests.serve.conftest import PLACES

    npo = world.auth("NPO", "reviewer")
    # probing: BTO's registry code is invisible to NPO, so naming it is no conflict
    sighting = _match(world, _npo_query(held_out)).json()["sighting"]
    r = world.client.post(f"/v1/sightings/{sighting}/decision", headers=npo,
                          json={"action": "new", "individual": "T-BTO"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["individual"] == "T-BTO" and r.json()["organisation"] == "NPO"
    # a conflict is reported for the caller's own codes only
    again = _match(world, _npo_query(held_out)).json()["sighting"]
    r = world.client.post(f"/v1/sightings/{again}/decision", headers=npo,
                          json={"action": "new", "individual": "T-BTO"})  # fmt: skip
    assert r.status_code == 409 and "your organisation" in r.json()["detail"]
    bto = world.client.get("/v1/individuals/T-BTO", headers=world.auth("BTO", "viewer")).json()
    assert bto["organisation"] == "BTO"
    # blocking: NPO takes a code of BTO's gallery before it reaches the registry...
    (key, (record, _)) = next((k, v) for k, v in sorted(held_out.items()) if v[1] == "BTO")
    code = record.individual_id
    r = world.client.post(f"/v1/sightings/{again}/decision", headers=npo,
                          json={"action": "new", "individual": code})  # fmt: skip
    assert r.status_code == 200, r.text
    # ...and BTO still confirms its own animal under its own code
    lat, lon = PLACES["BT"]
    r = world.client.post("/v1/match", headers=world.auth("BTO", "contributor"),
                          data=match_form(side=record.side, country="BT", lat=lat, lon=lon),
                          files={"image": ("q.png", photo_bytes(record), "image/png")})
    assert r.status_code == 200, r.text
    r = world.client.post(f"/v1/sightings/{r.json()['sighting']}/decision",
                          headers=world.auth("BTO", "reviewer"),
                          json={"action": "confirm", "individual": code})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["individual"] == code and r.json()["status"] == "confirmed"
    mine = world.client.get(f"/v1/individuals/{code}", headers=world.auth("BTO")).json()
    assert mine["organisation"] == "BTO" and len(mine["sightings"]) == 1
    theirs = world.client.get(f"/v1/individuals/{code}", headers=world.auth("NPO")).json()
    assert theirs["organisation"] == "NPO"
    # enrolling a photo under a code another organisation uses is no probe either
    r = world.client.post("/v1/gallery", headers=world.auth("INO", "contributor"),
                          data={"individual": "T-BTO", "species": "tiger", "side": "left"},
                          files={"image": ("g.png", photo_bytes(record), "image/png")})
    assert r.status_code == 201, r.text


def test_naming_another_organisations_site_tells_nothing_and_records_nothing_there(
    world, held_out
):
    """BTO (no agreement with NPO) names NPO's site. It used to get a 403 naming the owner,
    against a 422 for a code nobody uses: an oracle of guessed codes and their owners."""
    record = _npo_query(held_out)
    lat, lon = PLACES["BT"]
    answers = [
        _match(world, record, org="BTO", site=code, country=None, lat=None, lon=None)
        for code in ("site-NPO", "site-nobody-has")
    ]
    assert [a.status_code for a in answers] == [422, 422]
    assert answers[0].json()["detail"] == answers[1].json()["detail"]
    assert "NPO" not in answers[0].text
    # with a place, BTO gets a site of its own under its prefix, never NPO's
    r = _match(world, record, org="BTO", site="site-NPO", country="BT", lat=lat, lon=lon)
    assert r.status_code == 200, r.text
    body = world.client.get(f"/v1/sightings/{r.json()['sighting']}",
                            headers=world.auth("BTO", "viewer")).json()  # fmt: skip
    assert body["location"]["site"] == "BTO:site-NPO"
    again = _match(world, record, org="BTO", site="site-NPO", country="BT", lat=lat, lon=lon)
    body = world.client.get(f"/v1/sightings/{again.json()['sighting']}",
                            headers=world.auth("BTO", "viewer")).json()  # fmt: skip
    assert body["location"]["site"] == "BTO:site-NPO"  # found again by the name it gave


def test_a_site_code_too_long_with_the_prefix_is_a_422_not_a_database_error():
    from serve.access import Caller
    from serve.problems import Problem
    from serve.records import SITE_CODE_MAX, caller_site_code

    caller = Caller("k1", "O" * 64, 1, "contributor", False)  # the longest organisation code
    assert caller_site_code(caller, "cam-1") == "O" * 64 + ":cam-1"
    assert caller_site_code(caller, "O" * 64 + ":cam-1") == "O" * 64 + ":cam-1"
    with pytest.raises(Problem) as e:
        caller_site_code(caller, "s" * 100)
    assert e.value.status == 422 and str(SITE_CODE_MAX) in e.value.detail


# -- a review of the site and movement changes (session 15) --------------------------


def _location(world, sighting, org="NPO"):
    r = world.client.get(f"/v1/sightings/{sighting}", headers=world.auth(org, "viewer"))
    assert r.status_code == 200, r.text
    return r.json()["location"]


def _registry_session(world):
    return world.app.state.reid.registry.session()


def test_site_and_camera_names_never_share_a_deployment(world, held_out):
    """Site ``a`` with camera ``b`` and site ``a:b`` once made the same deployment code
    (``api:NPO:a:b``): the second photo, sent from India, was recorded in Nepal."""
    record = _npo_query(held_out)
    first = _match(world, record, site="a", camera="b", country="NP", lat=28.40, lon=81.30)
    lat, lon = PLACES["IN"]
    second = _match(world, record, site="a:b", country="IN", lat=lat, lon=lon)
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert _location(world, first.json()["sighting"])["site"] == "NPO:a"
    where = _location(world, second.json()["sighting"])
    assert (where["site"], where["country"]) == ("NPO:a:b", "IN")
    # the same (site, camera) again is the same deployment
    third = _match(world, record, site="a", camera="b", country="NP", lat=28.40, lon=81.30)
    from sqlalchemy import func, select

    from reid.registry.models import Deployment

    with _registry_session(world) as s:
        codes = s.scalars(select(Deployment.code).where(Deployment.code.like("api:%"))).all()
        assert len(codes) == len(set(codes)) == 2
        assert s.scalar(select(func.max(func.length(Deployment.code)))) <= 128
    assert _location(world, third.json()["sighting"])["site"] == "NPO:a"


def test_the_longest_site_and_camera_names_are_stored(world, held_out):
    """A 120-character site and a 100-character camera made a 229-character deployment
    code: PostgreSQL refused it (a 500), SQLite stored it."""
    lat, lon = PLACES["NP"]
    r = _match(world, _npo_query(held_out), site="s" * 120, camera="c" * 100, country="NP",
               lat=lat, lon=lon)  # fmt: skip
    assert r.status_code == 200, r.text
    assert _location(world, r.json()["sighting"])["site"] == "NPO:" + "s" * 120


def test_a_site_without_an_owner_is_not_a_callers_site(world, held_out):
    """The operator's sites (no organisation: the command line, an import without one)
    were usable by any caller: naming one confirmed it existed (and its country, by the
    mismatch message), and the photo became a sighting its sender could not read."""
    from reid.registry import ensure_site

    with _registry_session(world) as s:
        ensure_site(s, "park-hq", "IN", *PLACES["IN"])
    record = _npo_query(held_out)
    answers = [
        _match(world, record, org="BTO", site=code, country=None, lat=None, lon=None)
        for code in ("park-hq", "nobody-has-it")
    ]
    assert [a.status_code for a in answers] == [422, 422]
    assert answers[0].json()["detail"].replace("park-hq", "X") == \
        answers[1].json()["detail"].replace("nobody-has-it", "X")  # fmt: skip
    lat, lon = PLACES["BT"]
    r = _match(world, record, org="BTO", site="park-hq", country="BT", lat=lat, lon=lon)
    assert r.status_code == 200, r.text
    where = _location(world, r.json()["sighting"], org="BTO")  # its own sighting, readable
    assert (where["site"], where["country"]) == ("BTO:park-hq", "BT")
    # a name the caller made keeps its site when the operator later imports the same code
    with _registry_session(world) as s:
        ensure_site(s, "trail", "IN", *PLACES["IN"])
    made = _match(world, record, site="trail", country="NP", lat=28.4, lon=81.3)
    again = _match(world, record, site="trail", country=None, lat=None, lon=None)
    assert made.status_code == again.status_code == 200, (made.text, again.text)
    assert _location(world, again.json()["sighting"])["site"] == "NPO:trail"


def test_a_name_held_in_the_callers_prefix_by_another_says_neither_whose_nor_why(
    world, held_out
):
    from reid.registry import ensure_organisation, ensure_site

    with _registry_session(world) as s:  # an administrator's import under NPO's prefix
        ensure_site(s, "NPO:secret", "BT", *PLACES["BT"],
                    organisation=ensure_organisation(s, "BTO", "BT"))  # fmt: skip
    lat, lon = PLACES["NP"]
    r = _match(world, _npo_query(held_out), site="secret", country="NP", lat=lat, lon=lon)
    assert r.status_code == 422 and r.json()["field"] == "site", r.text
    assert "BTO" not in r.text and "BT" not in r.json()["detail"] and "taken" not in r.text


def test_first_and_last_seen_are_of_the_sightings_the_caller_may_see(world, held_out):
    """NPO (sharing nothing with INO) confirms its photo as INO's T-INO: INO's view of
    T-INO used to move its last_seen to the date of a sighting INO may not read."""
    h = world.auth("INO", "viewer")
    before = world.client.get("/v1/individuals/T-INO", headers=h).json()
    sighting = _match(world, _npo_query(held_out)).json()["sighting"]  # 2025-02-01
    r = world.client.post(f"/v1/sightings/{sighting}/decision", headers=world.auth("NPO"),
                          json={"action": "confirm", "individual": "T-INO"})  # fmt: skip
    assert r.status_code == 200, r.text
    after = world.client.get("/v1/individuals/T-INO", headers=h).json()
    assert (after["first_seen"], after["last_seen"]) == (before["first_seen"],
                                                         before["last_seen"])  # fmt: skip
    assert after["last_seen"].startswith("2025-01-02")
    listed = {i["code"]: i for i in world.client.get("/v1/individuals", headers=h).json()}
    assert listed["T-INO"]["last_seen"] == after["last_seen"]
    # NPO sees both sightings
    npo = world.client.get("/v1/individuals/T-INO", headers=world.auth("NPO", "viewer")).json()
    assert npo["last_seen"].startswith("2025-02-01")
    # a hidden sighting before the first one does not move first_seen either
    earlier = _match(world, _npo_query(held_out), captured_at="2024-12-01T00:00:00Z")
    r = world.client.post(f"/v1/sightings/{earlier.json()['sighting']}/decision",
                          headers=world.auth("NPO"),
                          json={"action": "confirm", "individual": "T-INO"})  # fmt: skip
    assert r.status_code == 200, r.text
    again = world.client.get("/v1/individuals/T-INO", headers=h).json()
    assert (again["first_seen"], again["last_seen"]) == (before["first_seen"],
                                                         before["last_seen"])  # fmt: skip
    npo = world.client.get("/v1/individuals/T-INO", headers=world.auth("NPO", "viewer")).json()
    assert npo["first_seen"].startswith("2024-12-01")
    # an individual with no sighting the caller may see: null, not the registry's dates
    from reid.registry import add_individual, ensure_organisation

    with _registry_session(world) as s:
        add_individual(s, "T-QUIET", "tiger", organisation=ensure_organisation(s, "INO", "IN"))
    quiet = world.client.get("/v1/individuals/T-QUIET", headers=h).json()
    assert quiet["first_seen"] is None and quiet["last_seen"] is None


def test_a_hidden_sighting_between_two_visible_ones_leaves_no_gap_in_movements(world):
    """T-NPO: Nepal on day 0 (NPO's), India on day 9 (INO's, shared with NPO). A sighting
    in Bhutan on day 5 (BTO's, shared with nobody) split the registry's movement in two,
    neither visible to NPO: the missing crossing told NPO that someone saw it between."""
    from datetime import timedelta

    from reid.movements import derive_movements
    from reid.registry import add_media, add_sighting, get_individual
    from reid.registry.models import Deployment
    from tests.serve.conftest import T0

    h = world.auth("NPO", "viewer")
    before = world.client.get("/v1/movements", params={"individual": "T-NPO"}, headers=h).json()
    assert [(m["start"]["country"], m["end"]["country"]) for m in before] == [("NP", "IN")]
    from sqlalchemy import select

    with _registry_session(world) as s:
        dep = s.scalar(select(Deployment).where(Deployment.code == "dep-BTO"))
        media = add_media(s, dep, "/nonexistent/bhutan.jpg", T0 + timedelta(days=5))
        add_sighting(s, media, "tiger", side="left", individual=get_individual(s, "T-NPO"),
                     status="confirmed", decided_by="seed")  # fmt: skip
        derive_movements(s)
    after = world.client.get("/v1/movements", params={"individual": "T-NPO"}, headers=h).json()
    assert after == before
    everything = world.client.get("/v1/movements", headers=h).json()
    assert [m for m in everything if m["individual"] == "T-NPO"] == before
    # BTO sees its own sighting of T-NPO only: no movement at all
    assert world.client.get("/v1/movements", headers=world.auth("BTO", "viewer")).json() == []
    # filters apply to the caller's movements
    assert world.client.get("/v1/movements", params={"from_country": "NP", "to_country": "IN"},
                            headers=h).json() == before  # fmt: skip
    assert world.client.get("/v1/movements", params={"from_country": "IN"},
                            headers=h).json() == []  # fmt: skip
    assert world.client.get("/v1/movements", params={"since": "2025-01-11T00:00:00Z"},
                            headers=h).json() == []  # fmt: skip


def test_a_partners_site_code_that_may_spell_its_place_is_opaque(world):
    """An imported site named by its position (``valmiki_27_4387_84_1942``: decimals
    behind underscores, which the new-code check does not refuse) is shown to a reader
    who sees that place generalised under an opaque name; to its owner, exactly."""
    from datetime import timedelta

    from reid.registry import (
        add_media,
        add_sighting,
        ensure_deployment,
        ensure_organisation,
        ensure_site,
        get_individual,
    )
    from tests.serve.conftest import T0

    with _registry_session(world) as s:
        site = ensure_site(s, "valmiki_27_4387_84_1942", "IN", 27.4387, 84.1942,
                           organisation=ensure_organisation(s, "INO", "IN"))  # fmt: skip
        dep = ensure_deployment(s, "dep-valmiki", site)
        media = add_media(s, dep, "/nonexistent/v.jpg", T0 + timedelta(days=20))
        code = add_sighting(s, media, "tiger", side="left", individual=get_individual(s, "T-INO"),
                            status="confirmed", decided_by="seed").code  # fmt: skip
    partner = _location(world, code, org="NPO")  # INO shares sightings, not exact places
    assert not partner["exact"] and partner["site"].startswith("site-")
    assert "4387" not in partner["site"]
    listed = world.client.get("/v1/sightings", headers=world.auth("NPO", "viewer")).text
    assert "4387" not in listed and "1942" not in listed
    owner = world.client.get(f"/v1/sightings/{code}", headers=world.auth("INO", "viewer", True))
    assert owner.json()["location"]["site"] == "valmiki_27_4387_84_1942"


def test_a_new_individual_code_that_holds_coordinates_is_refused(world, held_out):
    """Individual codes reach every reader, like site codes: ``T-27.5123`` is refused
    where a new individual is named (a decision, an enrolment), as a site code would be."""
    record = _npo_query(held_out)
    sighting = _match(world, record).json()["sighting"]
    r = world.client.post(f"/v1/sightings/{sighting}/decision", headers=world.auth("NPO"),
                          json={"action": "new", "individual": "T-27.5123"})  # fmt: skip
    assert r.status_code == 422 and r.json()["field"] == "individual", r.text
    r = world.client.post("/v1/gallery", headers=world.auth("NPO", "contributor"),
                          data={"individual": "T-84.2611", "species": "tiger",
                                "side": record.side},
                          files={"image": ("g.png", photo_bytes(record), "image/png")})
    assert r.status_code == 422 and r.json()["field"] == "individual", r.text
    listed = {i["code"] for i in world.client.get("/v1/individuals",
                                                  headers=world.auth("NPO")).json()}
    assert not listed & {"T-27.5123", "T-84.2611"}
    ok = world.client.post(f"/v1/sightings/{sighting}/decision", headers=world.auth("NPO"),
                           json={"action": "new", "individual": "T-NPO-7"})  # fmt: skip
    assert ok.status_code == 200, ok.text
