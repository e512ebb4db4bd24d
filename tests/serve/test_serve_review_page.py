"""The review page in headless Chromium (Debian's chromium via Playwright): sign in, see
the query beside the candidates with keypoint lines, confirm, and see the trail."""

import os
import shutil
from pathlib import Path

import pytest

from tests.serve.conftest import match_form

CHROMIUM = os.environ.get("REID_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def test_review_page_confirms_a_candidate(world, served, held_out, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    record = next(v[0] for k, v in sorted(held_out.items()) if v[1] == "NPO")
    r = world.client.post("/v1/match", headers=world.auth("NPO", "contributor"),
                          data=match_form(side=record.side),
                          files={"image": ("q.jpg", Path(record.path).read_bytes(), "image/jpeg")})
    assert r.status_code == 200, r.text
    code, best = r.json()["sighting"], r.json()["candidates"][0]
    key = world.keys[("NPO", "reviewer", False)]
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        page.goto(f"{served}/review")
        page.fill("input[name=key]", key)
        with page.expect_navigation():
            page.click("button[type=submit]")
        assert code in page.content()  # the queue lists the proposed sighting
        page.goto(f"{served}/review/{code}")
        first = page.locator("section.candidate").first
        assert first.get_attribute("data-individual") == best["individual"]
        assert f"{best['probability']:.2f}" in first.inner_text()
        lines = first.locator("svg line.match").count()
        assert lines == best["evidence"][0]["inliers"] > 0
        # both images of the pair loaded (the thumbnails answer with the cookie's key)
        assert page.evaluate("""() => Promise.all([...document.querySelectorAll('svg image')]
            .map(i => fetch(i.href.baseVal).then(r => r.status)))""")[0] == 200
        shot = tmp_path / "review.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        if out := os.environ.get("REID_TEST_ARTIFACTS"):
            shutil.copy(shot, Path(out) / "review.png")
        with page.expect_navigation():  # the form posts and the page reloads; wait for it
            first.locator("button.confirm").click()
        page.wait_for_load_state()
        text = page.inner_text("body")
        assert "confirmed" in text and best["individual"] in text
        assert "key:" in page.inner_text("table.trail")
        browser.close()
    sig = world.client.get(f"/v1/sightings/{code}", headers=world.auth("NPO", "viewer")).json()
    assert sig["status"] == "confirmed" and sig["individual"] == best["individual"]


def test_review_page_needs_a_key(world):
    r = world.client.get(f"/review/{world.sightings['NPO']}")
    assert r.status_code == 401 and "Sign in" in r.text
    r = world.client.post("/review/login", data={"key": "bcr_nope_nope"})
    assert r.status_code == 401 and "unknown or revoked" in r.text
