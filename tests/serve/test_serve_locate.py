"""POST /v1/match with a model that has a flank head: a photo without a box is cropped to
the flank the head finds (the gallery's photos were enrolled with boxes), and the answer
says which box was matched; REID_SERVE_LOCATE=false matches the whole photo."""

import shutil
from dataclasses import replace

import pytest
import torch
from PIL import Image

from reid.boxhead import FlankHead, save_to_release
from reid.data.records import BBox
from tests.serve.conftest import match_form, photo_bytes, seed_registry


def everywhere_head(num_features: int) -> FlankHead:
    """A head sure that every cell is torso: its box is the whole photo."""
    head = FlankHead(num_features, hidden=2)
    with torch.no_grad():
        for p in head.parameters():
            p.zero_()
        head.out.bias.fill_(4.0)
    return head.eval()


@pytest.fixture(scope="module")
def boxed(records, release, tmp_path_factory):
    """A copy of the tiny release with a flank head, and a gallery of its photos enrolled
    with boxes (each photo's whole frame), all but the last photo of each flank."""
    from reid.match import enroll
    from reid.model import build_model
    from tests.serve.conftest import TINY

    root = tmp_path_factory.mktemp("serve-locate")
    model = shutil.copytree(release, root / "model")
    save_to_release(model, everywhere_head(build_model(TINY).num_features),
                    {"fitted_on": "test", "size": 128, "threshold": 0.5})  # fmt: skip
    flanks: dict = {}
    for r in records:
        w, h = Image.open(r.path).size
        flanks.setdefault((r.individual_id, r.side), []).append(replace(r, bbox=BBox(0, 0, w, h)))
    chosen = [r for rs in flanks.values() for r in rs[:-1]]
    enroll(chosen, root / "index", model, organisation="NPO", workers=1,
           calibration_sample=20, show_progress=False)  # fmt: skip
    return model, root / "index", [rs[-1] for rs in flanks.values()]


def served(boxed, db_url, tmp_path, **settings):
    from fastapi.testclient import TestClient

    from serve import create_app
    from serve.settings import Settings

    model, index, _ = boxed
    copy = shutil.copytree(index, tmp_path / "index")
    keys, _, _ = seed_registry(db_url, tmp_path / "seed")
    app = create_app(Settings(index=copy, model=model, database_url=db_url,
                              media_dir=tmp_path / "media", jobs_dir=tmp_path / "jobs",
                              _env_file=None, **settings))  # fmt: skip
    return TestClient(app), {"Authorization": f"Bearer {keys[('NPO', 'contributor', False)]}"}


def test_a_photo_without_a_box_is_cropped_to_the_flank_found(boxed, db_url, tmp_path):
    _, _, queries = boxed
    record = queries[0]
    w, h = Image.open(record.path).size
    client, auth = served(boxed, db_url, tmp_path)
    with client:
        r = client.post("/v1/match", headers=auth, data=match_form(side=record.side),
                        files={"image": ("q.png", photo_bytes(record), "image/png")})  # fmt: skip
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["box_located"] is True and body["box"] == [0, 0, w, h]
        form = match_form(side=record.side, box_x=2, box_y=3, box_w=20, box_h=10)
        files = {"image": ("q.png", photo_bytes(record), "image/png")}
        given = client.post("/v1/match", headers=auth, data=form, files=files)
        assert given.status_code == 200, given.text
        assert given.json()["box_located"] is False and given.json()["box"] == [2, 3, 20, 10]


def test_locate_false_matches_the_whole_photo(boxed, db_url, tmp_path):
    _, _, queries = boxed
    record = queries[0]
    client, auth = served(boxed, db_url, tmp_path, locate=False)
    with client:
        r = client.post("/v1/match", headers=auth, data=match_form(side=record.side),
                        files={"image": ("q.png", photo_bytes(record), "image/png")})  # fmt: skip
        assert r.status_code == 200, r.text
        assert r.json()["box_located"] is False and r.json()["box"] is None
