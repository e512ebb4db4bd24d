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
