"""Bulk jobs through the API: submit images, poll progress, fetch results; owners only."""

import time
from pathlib import Path

from tests.serve.conftest import jpeg


def test_images_job_runs_to_results_for_its_organisation_only(world, held_out, db_url):
    from reid.registry import Registry
    from serve.access import add_agreement

    with Registry(db_url).session() as s:  # BTO shares matching too: the whole gallery is NPO's
        add_agreement(s, "BTO", "NPO", share_match=True, share_sightings=False,
                      share_precise=False, created_by="test")  # fmt: skip
    records = [v[0] for v in list(held_out.values())[:3]]
    files = [("files", (f"{r.side}_{n}.jpg", Path(r.path).read_bytes(), "image/jpeg"))
             for n, r in enumerate(records)]  # fmt: skip
    h = world.auth("NPO", "contributor")
    r = world.client.post("/v1/jobs", headers=h, files=files, data={"species": "tiger"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["state"] in ("queued", "running") and job["frames"] == 3
    deadline = time.monotonic() + 120
    while job["state"] not in ("done", "failed") and time.monotonic() < deadline:
        time.sleep(0.5)
        job = world.client.get(f"/v1/jobs/{job['id']}", headers=h).json()
    assert job["state"] == "done", job
    assert job["done"] == job["encounters"] >= 1
    res = world.client.get(job["results_url"], headers=world.auth("NPO", "viewer")).json()
    assert len(res["encounters"]) == job["encounters"]
    assert {e["decision"] for e in res["encounters"]} <= {"known", "new", "unreadable"}
    other = world.client.get(f"/v1/jobs/{job['id']}", headers=world.auth("INO", "admin"))
    assert other.status_code == 404


def test_bad_job_uploads_are_refused_and_leave_nothing(world, db_url):
    from reid.registry import Registry
    from serve.access import add_agreement

    with Registry(db_url).session() as s:
        add_agreement(s, "BTO", "NPO", share_match=True, share_sightings=False,
                      share_precise=False, created_by="test")  # fmt: skip
    h = world.auth("NPO", "contributor")
    bad_zip = world.client.post("/v1/jobs", headers=h,
                                files={"files": ("pkg.zip", b"not a zip", "application/zip")})
    assert bad_zip.status_code == 422 and bad_zip.json()["field"] == "files"
    blank = jpeg(__import__("numpy").zeros((32, 64, 3), "uint8"))
    no_species = world.client.post("/v1/jobs", headers=h,
                                   files={"files": ("x.jpg", blank, "image/jpeg")})  # fmt: skip
    assert no_species.status_code == 422 and no_species.json()["field"] == "files"
    jobs = world.app.state.reid.settings.jobs_dir
    assert not jobs.exists() or not any(jobs.iterdir())


def _package_zip(tmp, photos, lat, lon, file_path=None) -> bytes:
    """A Camtrap DP package (zip) of ``photos`` at one camera (lat, lon), as another
    installation would export it; ``file_path`` overrides the media's filePath."""
    import csv
    import io
    import zipfile
    from datetime import datetime, timedelta

    from reid.camtrap import write_package
    from reid.privacy import LOCAL_ADMIN
    from reid.registry import (
        Registry,
        add_media,
        add_sighting,
        ensure_deployment,
        ensure_organisation,
        ensure_site,
    )

    reg = Registry(f"sqlite:///{tmp / 'export.sqlite'}")
    with reg.session() as s:
        org = ensure_organisation(s, "BTO", country="NP")  # claims to be someone else's
        site = ensure_site(s, "site-BTO", "NP", lat, lon, organisation=org)
        dep = ensure_deployment(s, "dep-BTO", site, camera_id="cam-1")
        for n, path in enumerate(photos):
            media = add_media(s, dep, path, datetime(2025, 3, 1) + timedelta(hours=n))
            add_sighting(s, media, "tiger", side="left", decided_by="them")
        out = write_package(s, tmp / "pkg", LOCAL_ADMIN)
    reg.close()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for p in out.iterdir():
            if p.name == "media.csv":
                with p.open(newline="", encoding="utf-8") as f:
                    rows = list(csv.DictReader(f))
                for n, r in enumerate(rows):
                    z.write(photos[n], f"pkg/photos/{n}.jpg")
                    r["filePath"] = file_path or f"photos/{n}.jpg"
                text = io.StringIO()
                w = csv.DictWriter(text, list(rows[0]), lineterminator="\n")
                w.writeheader()
                w.writerows(rows)
                z.writestr("pkg/media.csv", text.getvalue())
            else:
                z.write(p, f"pkg/{p.name}")
    return buf.getvalue()


def test_a_package_job_records_proposed_sightings_of_the_caller(world, held_out, db_url):
    """As ``reid bulk --registry`` does, but every identifier of the package is mapped into
    the caller's organisation (the package claimed to be BTO's, at BTO's site code), and a
    filePath may not name a file of the server."""
    from reid.registry import Registry
    from serve.access import add_agreement

    with Registry(db_url).session() as s:
        add_agreement(s, "BTO", "NPO", share_match=True, share_sightings=False,
                      share_precise=False, created_by="test")  # fmt: skip
    photos = [Path(v[0].path) for k, v in sorted(held_out.items()) if v[1] == "NPO"][:2]
    h = world.auth("NPO", "contributor")
    tmp = world.tmp / "pkg-out"
    tmp.mkdir()
    outside = _package_zip(tmp, photos, 28.4312, 81.2871, file_path=str(photos[0]))
    r = world.client.post("/v1/jobs", headers=h,
                          files={"files": ("season.zip", outside, "application/zip")})
    assert r.status_code == 422 and r.json()["field"] == "files", r.text
    assert str(photos[0].parent) not in r.text
    tmp = world.tmp / "pkg-out-2"
    tmp.mkdir()
    data = _package_zip(tmp, photos, 28.4312, 81.2871)
    r = world.client.post("/v1/jobs", headers=h,
                          files={"files": ("season.zip", data, "application/zip")})
    assert r.status_code == 202, r.text
    job = r.json()
    deadline = time.monotonic() + 180
    while job["state"] not in ("done", "failed") and time.monotonic() < deadline:
        time.sleep(0.5)
        job = world.client.get(f"/v1/jobs/{job['id']}", headers=h).json()
    assert job["state"] == "done", job
    assert job["sightings"] == 2
    proposed = world.client.get("/v1/sightings", params={"status": "proposed"},
                                headers=world.auth("NPO", "viewer")).json()  # fmt: skip
    assert len(proposed) == 2
    for sig in proposed:
        assert sig["organisation"] == "NPO" and sig["location"]["country"] == "NP"
        assert sig["location"]["site"].startswith("NPO:NP:site-")
        thumb = world.client.get(sig["image_url"], headers=world.auth("NPO", "viewer"))
        assert thumb.status_code == 200
    # BTO's registry is untouched, and the job's sightings are in NPO's review queue
    theirs = world.client.get("/v1/sightings", headers=world.auth("BTO", "viewer")).json()
    assert [s["code"] for s in theirs] == [world.sightings["BTO"]]
    queue = world.client.get("/review", headers=world.auth("NPO", "reviewer")).text
    assert all(sig["code"] in queue for sig in proposed)
