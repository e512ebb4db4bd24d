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


def _login_form(client):
    import re

    page = client.get("/review")
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def test_review_page_needs_a_key(world):
    r = world.client.get(f"/review/{world.sightings['NPO']}")
    assert r.status_code == 401 and "Sign in" in r.text
    csrf = _login_form(world.client)
    r = world.client.post("/review/login", data={"key": "bcr_nope_nope", "csrf": csrf},
                          headers={"Origin": "http://testserver"})  # fmt: skip
    assert r.status_code == 401 and "unknown or revoked" in r.text


def test_review_page_session_cookie_csrf_and_headers(world):
    """The cookie holds a session, not the key; forms need this origin and the token; the
    pages may not be framed and run no script."""
    key = world.keys[("NPO", "reviewer", False)]
    page = world.client.get("/review")
    assert page.headers["x-frame-options"] == "DENY"
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert "script-src" not in csp  # so no script runs (default-src 'none')
    csrf = _login_form(world.client)
    here = {"Origin": "http://testserver"}
    # login CSRF: a form of another origin (another port of the same host) is refused
    for origin in ("http://testserver:9999", "http://evil.testserver", "null"):
        r = world.client.post("/review/login", data={"key": key, "csrf": csrf},
                              headers={"Origin": origin}, follow_redirects=False)
        assert r.status_code == 403, (origin, r.text)
    r = world.client.post("/review/login", data={"key": key, "csrf": "forged"}, headers=here,
                          follow_redirects=False)  # fmt: skip
    assert r.status_code == 403
    r = world.client.post("/review/login", data={"key": key, "csrf": csrf}, headers=here,
                          follow_redirects=False)  # fmt: skip
    assert r.status_code == 303
    cookies = " ".join(f"{c.name}={c.value}" for c in world.client.cookies.jar)
    assert key not in cookies and key.split("_", 2)[2] not in cookies
    assert "reid_session=" in cookies
    # the session reads the review page and its photos, but writes nothing through /v1
    code = world.sightings["NPO"]
    assert world.client.get(f"/review/{code}").status_code == 200
    assert world.client.get(f"/v1/sightings/{code}").status_code == 200
    r = world.client.post(f"/v1/sightings/{code}/decision", json={"action": "reject"})
    assert r.status_code == 401
    # a decision without the session's token, or from another origin, is refused
    r = world.client.post(f"/review/{code}/decision", data={"action": "reject"}, headers=here)
    assert r.status_code == 403
    import re

    token = re.search(r'name="csrf" value="([^"]+)"', world.client.get(f"/review/{code}").text)
    r = world.client.post(f"/review/{code}/decision", data={"action": "reject", "csrf":
                          token.group(1)}, headers={"Origin": "http://testserver:8080"})
    assert r.status_code == 403
    assert world.client.get(f"/v1/sightings/{code}").json()["status"] == "confirmed"
    r = world.client.post(f"/review/{code}/decision", data={"action": "reject", "csrf":
                          token.group(1)}, headers=here, follow_redirects=False)
    assert r.status_code == 303
    assert world.client.get(f"/v1/sightings/{code}").json()["status"] == "rejected"


ATTACK = """<!doctype html><html><body>
<form id="f" method="post" action="{target}">{fields}</form>
<script>document.getElementById('f').submit()</script></body></html>"""


def _attacker(pages: dict) -> tuple:
    """A web server on another port of the same host serving ``pages`` (path -> html)."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = pages.get(self.path, "").encode()
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def test_review_page_refuses_forms_from_another_port_of_the_same_host(world, served, held_out):
    """CSRF in a real browser: the reviewer is signed in; a page on another port of the same
    host (same site, so SameSite cookies go along) posts a decision and a sign-in."""
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    record = next(v[0] for k, v in sorted(held_out.items()) if v[1] == "NPO")
    r = world.client.post("/v1/match", headers=world.auth("NPO", "contributor"),
                          data=match_form(side=record.side),
                          files={"image": ("q.jpg", Path(record.path).read_bytes(), "image/jpeg")})
    code = r.json()["sighting"]
    key = world.keys[("NPO", "reviewer", False)]
    intruder = world.keys[("NPO", "viewer", False)]
    fields = '<input name="action" value="reject"><input name="reason" value="csrf">'
    login = f'<input name="key" value="{intruder}"><input name="csrf" value="x">'
    server, evil = _attacker({
        "/decide": ATTACK.format(target=f"{served}/review/{code}/decision", fields=fields),
        "/login": ATTACK.format(target=f"{served}/review/login", fields=login),
    })  # fmt: skip
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page()
            page.goto(f"{served}/review")
            page.fill("input[name=key]", key)
            with page.expect_navigation():
                page.click("button[type=submit]")
            assert "reviewer" in page.inner_text("header")
            cookies = page.context.cookies()
            assert cookies and all(key.split("_", 2)[2] not in c["value"] for c in cookies)
            page.goto(f"{evil}/decide")
            page.wait_for_load_state()
            page.wait_for_timeout(500)
            assert page.url.startswith(served)  # the form did post, with the cookie...
            page.goto(f"{evil}/login")  # login CSRF: sign the reviewer in as someone else
            page.wait_for_load_state()
            page.wait_for_timeout(500)
            page.goto(f"{served}/review")
            assert "reviewer" in page.inner_text("header")  # still the reviewer's session
            # framing is forbidden
            response = page.goto(f"{served}/review/{code}")
            assert response.headers["x-frame-options"] == "DENY"
            assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
            browser.close()
    finally:
        server.shutdown()
    sig = world.client.get(f"/v1/sightings/{code}", headers=world.auth("NPO", "viewer")).json()
    assert sig["status"] == "proposed"  # ...and was refused
    assert [d["action"] for d in sig["decisions"]] == ["propose"]
