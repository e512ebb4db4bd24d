"""The flank head: IoU, the torso box of ATRW keypoints, the head and its release file."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from reid.boxhead import (
    FlankBoxer,
    FlankHead,
    attach,
    coverage_grid,
    fit_flank_head,
    grid_box,
    head_of,
    iou,
    load_from_release,
    save_to_release,
    torso_box,
)
from reid.data.records import BBox
from reid.errors import ReidError
from reid.images import load_image
from reid.model import ModelConfig, build_model
from reid.release import load_release, save_release

TINY = ModelConfig(
    backbone="test_efficientnet", embedding_dim=16, input_size=(32, 64), pretrained=None
)


# ------------------------------------------------------------------ IoU


def test_iou_of_hand_computed_boxes():
    a = BBox(0, 0, 2, 2)
    assert iou(a, a) == 1.0
    assert iou(a, BBox(1, 0, 2, 2)) == pytest.approx(2 / 6)  # overlap 1x2, union 4+4-2
    assert iou(a, BBox(1, 1, 2, 2)) == pytest.approx(1 / 7)
    assert iou(a, BBox(2, 0, 2, 2)) == 0.0  # touching edges
    assert iou(a, BBox(5, 5, 1, 1)) == 0.0
    assert iou(a, BBox(0, 0, 4, 4)) == pytest.approx(4 / 16)  # one inside the other
    assert iou(a, BBox(1, 0, 2, 2)) == iou(BBox(1, 0, 2, 2), a)


# ------------------------------------------------------------------ torso from keypoints


def keypoints(**points):
    """15 ATRW keypoints, all unlabelled except ``points`` (index name -> (x, y))."""
    names = {"r_shoulder": 3, "l_shoulder": 5, "r_hip": 7, "l_hip": 10, "tail": 13,
             "centre": 14, "nose": 2, "r_paw": 4}  # fmt: skip
    kp = np.zeros((15, 3))
    for name, (x, y) in points.items():
        kp[names[name]] = (x, y, 2)
    return kp


def test_torso_box_spans_shoulder_to_tail_grown_by_the_margin():
    kp = keypoints(r_shoulder=(100, 50), l_shoulder=(110, 55), r_hip=(200, 60), tail=(220, 40),
                   centre=(150, 35), nose=(40, 30), r_paw=(105, 140))  # fmt: skip
    # points x 100..220 (w 120), y 35..60; grown by 12 each side; head and paws not used
    assert torso_box(kp) == BBox(88, 23, 144, 49)
    assert torso_box(kp, margin=0.0, min_height=0.0) == BBox(100, 35, 120, 25)


def test_torso_box_is_at_least_min_height_about_its_middle():
    kp = keypoints(r_shoulder=(0 + 100, 50), r_hip=(300, 50), centre=(200, 50))
    box = torso_box(kp, margin=0.0, min_height=0.4)  # flat: 0 high -> 80 high
    assert box == BBox(100, 10, 200, 80)


def test_torso_box_ignores_points_outside_the_photo_and_clips_to_it():
    kp = keypoints(r_shoulder=(100, 50), r_hip=(200, 60), tail=(220, 40), centre=(-30, 45))
    kp[5] = (500, 50, 2)  # a left shoulder beyond the right edge of a 300-wide photo
    box = torso_box(kp, image_wh=(300, 100), margin=0.0, min_height=0.0)
    assert box == BBox(100, 40, 120, 20)  # neither the negative centre nor x=500
    assert torso_box(kp, margin=0.0, min_height=0.0).w == 400  # no size: 500 counts
    wide = torso_box(kp, image_wh=(230, 100), margin=0.5, min_height=0.0)
    assert wide.x + wide.w == 230 and wide.y == 0  # clipped to the photo


def test_torso_box_needs_a_shoulder_a_rear_point_and_three_points():
    assert torso_box(keypoints(r_hip=(200, 60), tail=(220, 40), centre=(150, 35))) is None
    assert torso_box(keypoints(r_shoulder=(100, 50), l_shoulder=(110, 55), centre=(1, 2))) is None
    assert torso_box(keypoints(r_shoulder=(100, 50), r_hip=(200, 60))) is None  # two points
    kp = keypoints(r_shoulder=(100, 50), r_hip=(200, 60), tail=(220, 40))
    kp[13, 2] = 0  # the tail is not labelled
    assert torso_box(kp) is None
    assert torso_box(keypoints(r_shoulder=(100, 50), r_hip=(100, 60), tail=(100, 40))) is None
    with pytest.raises(ReidError, match="15"):
        torso_box(np.zeros((5, 3)))


# ------------------------------------------------------------------ grids and boxes


def test_coverage_grid_is_the_share_of_each_cell_in_the_box():
    grid = coverage_grid(BBox(32, 16, 48, 32), (3, 4))
    expected = np.zeros((3, 4))
    expected[0, 1], expected[0, 2] = 0.5, 0.25  # y 16..32 is half of row 0
    expected[1, 1], expected[1, 2] = 0.5, 0.25
    np.testing.assert_allclose(grid, expected)


def test_grid_box_is_the_largest_confident_region_in_image_pixels():
    prob = np.zeros((4, 6), np.float32)
    prob[1:3, 1:4] = 0.9  # a 3x2-cell region
    prob[0, 5] = 0.9  # a smaller one
    box = grid_box(prob, input_hw=(128, 192), image_hw=(256, 384), threshold=0.5)
    # cells 1..3 x 1..2 at stride 32 are pixels ~ 32..128 x 32..96, twice in the image
    assert abs(box.x - 64) <= 24 and abs(box.y - 64) <= 24
    assert abs(box.w - 192) <= 48 and abs(box.h - 128) <= 48
    unsure = grid_box(prob * 0.5, (128, 192), (256, 384), threshold=0.5)
    assert iou(unsure, box) > 0.8  # under the threshold: half the maximum instead
    flat = grid_box(np.zeros((4, 6)), (128, 192), (256, 384))
    assert flat == BBox(0, 0, 384, 256)


# ------------------------------------------------------------------ the head


def cells_with_a_torso(n=3000, c=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, c)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.float32)
    return x, y


def test_fit_learns_which_cells_are_torso_and_generalises():
    x, y = cells_with_a_torso()
    head = fit_flank_head(x, y, hidden=8, epochs=60, batch=256, lr=1e-2)
    xt, yt = cells_with_a_torso(seed=1)
    with torch.no_grad():
        p = torch.sigmoid(head.logits_of_cells(torch.from_numpy(xt))).numpy()
    assert ((p > 0.5) == (yt > 0.5)).mean() > 0.95
    grid = torch.from_numpy(xt[:12].T.reshape(1, 8, 3, 4).copy())  # (B, C, h, w)
    np.testing.assert_allclose(head(grid)[0].detach().numpy().ravel(), p[:12], atol=1e-5)


def test_fit_refuses_misshapen_data():
    with pytest.raises(ReidError):
        fit_flank_head(np.zeros((10, 4)), np.zeros(9))
    with pytest.raises(ReidError):
        fit_flank_head(np.zeros((0, 4)), np.zeros(0))


def test_head_round_trip_and_refusal_of_another_backbone(tmp_path):
    x, y = cells_with_a_torso(n=500)
    head = fit_flank_head(x, y, hidden=4, epochs=2, batch=256)
    head.save(tmp_path / "h.safetensors")
    back = FlankHead.load(tmp_path / "h.safetensors", 8)
    for k, v in head.state_dict().items():
        assert torch.equal(v, back.state_dict()[k])
    with pytest.raises(ReidError, match="do not fit"):
        FlankHead.load(tmp_path / "h.safetensors", 16)
    (tmp_path / "bad.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(ReidError, match="not readable"):
        FlankHead.load(tmp_path / "bad.safetensors", 8)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    torch.manual_seed(0)
    return save_release(build_model(TINY).eval(), tmp_path_factory.mktemp("m") / "model",
                        name="tiny", training_data="none", metrics={})  # fmt: skip


def sure_head(num_features: int, logit: float) -> FlankHead:
    head = FlankHead(num_features, hidden=2)
    with torch.no_grad():
        for p in head.parameters():
            p.zero_()
        head.out.bias.fill_(logit)
    return head.eval()


def test_release_stores_the_head_tied_to_its_weights(release, tmp_path):
    copy = tmp_path / "m"
    shutil.copytree(release, copy)
    model, manifest = load_release(copy)
    assert head_of(model) is None
    head = sure_head(model.num_features, 3.0)
    before = json.loads((copy / "manifest.json").read_text())
    after = save_to_release(copy, head, {"fitted_on": "test"})
    assert {k: v for k, v in after.items() if k != "flank_head"} == before
    assert after["flank_head"]["weights_sha256"] == before["sha256"]
    loaded, _ = load_release(copy)
    assert torch.equal(head_of(loaded).out.bias, head.out.bias)

    other = dict(after, flank_head=dict(after["flank_head"], weights_sha256="0" * 64))
    with pytest.raises(ReidError, match="fitted for other weights"):
        load_from_release(copy, other, model.num_features)
    tampered = dict(after, flank_head=dict(after["flank_head"], sha256="1" * 64))
    with pytest.raises(ReidError, match="SHA-256 mismatch"):
        load_from_release(copy, tampered, model.num_features)
    (copy / "manifest.json").write_text(json.dumps(other))
    with pytest.raises(ReidError, match="fitted for other weights"):
        load_release(copy)


def test_boxer_gives_a_box_inside_the_photo(release):
    model, _ = load_release(release)
    with pytest.raises(ReidError, match="no flank head"):
        FlankBoxer(model)
    image = np.random.default_rng(0).integers(0, 255, (90, 200, 3), dtype=np.uint8)
    everywhere = FlankBoxer(model, sure_head(model.num_features, 3.0), size=128)
    assert everywhere.box(image) == BBox(0, 0, 200, 90)  # every cell is torso
    attach(model, sure_head(model.num_features, -3.0))
    nowhere = FlankBoxer(model, size=128).box(image)  # half the max: still whole
    assert nowhere == BBox(0, 0, 200, 90)
    attach(model, None)


# ------------------------------------------------------------------ where photos arrive


def scene(rng, h=120, w=200):
    """Dark noise with a bright striped rectangle (the 'torso'); the image and its box."""
    image = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    bw, bh = int(rng.integers(70, 110)), int(rng.integers(40, 60))
    x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
    stripes = np.where((np.arange(bw) // 6) % 2 == 0, 250, 140).astype(np.uint8)
    image[y : y + bh, x : x + bw] = stripes[None, :, None]
    return image, BBox(x, y, bw, bh)


@pytest.fixture(scope="module")
def located(tmp_path_factory):
    """A tiny release whose flank head was fitted to find striped rectangles, a gallery
    enrolled with it, and a query photo with its true box."""
    from reid.boxhead import feature_map, fit_input
    from reid.match import enroll
    from reid.synthetic.catalogue import write_catalogue

    root = tmp_path_factory.mktemp("located")
    torch.manual_seed(0)
    release = save_release(build_model(TINY).eval(), root / "model", name="tiny",
                           training_data="none", metrics={})  # fmt: skip
    model, _ = load_release(release)
    rng = np.random.default_rng(0)
    cells, targets = [], []
    for _ in range(30):
        image, box = scene(rng)
        fitted = fit_input(image, 256)
        s = fitted.shape[1] / image.shape[1]
        f = feature_map(model, fitted).numpy()
        cells.append(f.reshape(f.shape[0], -1).T)
        targets.append(coverage_grid(BBox(box.x * s, box.y * s, box.w * s, box.h * s),
                                     f.shape[1:]).ravel())  # fmt: skip
    head = fit_flank_head(np.concatenate(cells), np.concatenate(targets), hidden=8,
                          epochs=150, batch=256, lr=1e-2)  # fmt: skip
    save_to_release(release, head, {"size": 256, "threshold": 0.5, "fitted_on": "test"})
    records = write_catalogue(
        root / "cat", species=("leopard",), individuals=2, images_per_side=2, seed=3, workers=1
    )
    enroll(records, root / "unboxed", release, show_progress=False, workers=1)
    boxed = []  # a gallery enrolled with boxes (here each photo's whole frame)
    for r in records:
        h, w = load_image(r.path).shape[:2]
        boxed.append(replace(r, bbox=BBox(0, 0, w, h)))
    enroll(boxed, root / "index", release, show_progress=False, workers=1)
    image, box = scene(np.random.default_rng(99))
    import cv2

    cv2.imwrite(str(root / "query.png"), image[..., ::-1])
    return root, release, image, box


def test_fitted_head_finds_the_torso_in_a_new_photo(located):
    _, release, image, box = located
    model, manifest = load_release(release)
    from reid.boxhead import boxer_of

    found = boxer_of(model, manifest).box(image)
    assert iou(found, box) > 0.5


def test_match_crops_a_photo_without_a_box_to_the_flank_found(located):
    from typer.testing import CliRunner

    from reid.cli import app
    from reid.images import crop
    from reid.match import Matcher

    root, release, image, box = located
    matcher = Matcher.open(root / "index", release)
    found = matcher.locate(image)
    assert found is not None and iou(BBox(*found), box) > 0.5
    runner = CliRunner()
    args = ["match", str(root / "query.png"), "--index", str(root / "index"), "--model",
            str(release), "--json"]  # fmt: skip
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    answer = json.loads(out.output)[0]
    assert answer["query_boxes"] == [list(found)]
    direct = matcher.match(crop(image, BBox(*found)), top=5)  # what was matched: the crop
    assert [c["global_score"] for c in answer["candidates"]] == pytest.approx(
        [c.global_score for c in direct.candidates], abs=1e-5
    )
    whole = json.loads(runner.invoke(app, [*args, "--no-locate"]).output)[0]
    assert whole["query_boxes"] is None
    assert [c["global_score"] for c in whole["candidates"]] == pytest.approx(
        [c.global_score for c in matcher.match(image, top=5).candidates], abs=1e-5
    )
    plain = runner.invoke(app, args[:-1])
    assert f"flank box (x, y, w, h) found by the model: {found[0]}, {found[1]}" in plain.output


def test_a_gallery_enrolled_without_boxes_is_matched_with_whole_photos(located):
    from reid.match import Matcher

    root, release, image, _ = located
    boxed, unboxed = Matcher.open(root / "index", release), Matcher.open(root / "unboxed", release)
    assert boxed.gallery_boxed() and not unboxed.gallery_boxed()
    assert unboxed.locate(image) is None and boxed.locate(image) is not None


def test_bulk_crops_frames_without_a_box_and_records_the_box(located):
    from reid.bulk.bursts import Encounter
    from reid.bulk.sources import Capture
    from reid.bulk.work import EncounterWorker, JobSpec
    from reid.match import Matcher

    root, release, image, box = located
    matcher = Matcher.open(root / "index", release)
    found = matcher.locate(image)
    given = BBox(10, 10, 60, 40)
    frames = (Capture("whole", root / "query.png", "d", None, "leopard"),
              Capture("boxed", root / "query.png", "d", None, "leopard", bbox=given))  # fmt: skip
    enc = Encounter("e1", "d", "leopard", "unknown", frames)
    worker = EncounterWorker(JobSpec(index_dir=str(root / "index"), model=str(release)), matcher)
    try:
        decoded = worker.decode([enc])
        row = worker.process(decoded)[0]
        h, w = image.shape[:2]
        expected = [found[0] / w, found[1] / h, found[2] / w, found[3] / h]
        assert row["located_boxes"] == {"whole": pytest.approx(expected, abs=1e-6)}
        assert decoded.images[0][0].shape[:2] == (found[3], found[2])  # cropped to it
        assert decoded.images[0][1].shape[:2] == (40, 60)  # its own box, not located
    finally:
        worker.close()
    off = EncounterWorker(JobSpec(index_dir=str(root / "index"), locate=False), matcher)
    try:
        decoded = off.decode([enc])
        row = off.process(decoded)[0]
        assert "located_boxes" not in row
        assert decoded.images[0][0].shape[:2] == image.shape[:2]
        assert off.spec.settings()["locate"] is False
    finally:
        off.close()


def test_cli_locate_writes_the_heads_boxes_and_refuses_a_release_without_one(located, tmp_path):
    from typer.testing import CliRunner

    from reid.boxhead import boxer_of
    from reid.cli import app
    from reid.data.manifest import read_manifest

    root, release, image, _ = located
    (tmp_path / "cat.csv").write_text(
        f"path,individual_id,species\n{root / 'query.png'},a,leopard\n"
    )
    runner = CliRunner()
    out = runner.invoke(app, ["locate", str(tmp_path / "cat.csv"), "--out",
                              str(tmp_path / "boxed.csv"), "--model", str(release)])  # fmt: skip
    assert out.exit_code == 0, out.output
    model, manifest = load_release(release)
    assert read_manifest(tmp_path / "boxed.csv")[0].bbox == boxer_of(model, manifest).box(image)
    bare = save_release(build_model(TINY).eval(), tmp_path / "bare", name="bare",
                        training_data="none", metrics={})  # fmt: skip
    args = ["locate", str(tmp_path / "cat.csv"), "--out", str(tmp_path / "b2.csv")]
    out = runner.invoke(app, [*args, "--model", str(bare), "--method", "head"])
    assert out.exit_code != 0 and "no flank head" in out.output
    assert "Traceback" not in out.output


def test_the_shipped_model_carries_a_flank_head_tied_to_its_weights():
    from reid.methods.embedding import DEFAULT_MODEL
    from reid.release import read_manifest

    if not (DEFAULT_MODEL / "manifest.json").is_file():
        pytest.skip("no default model installed")
    manifest = read_manifest(DEFAULT_MODEL)
    entry = manifest.get("flank_head")
    assert entry, "models/bigcat-default has no flank head"
    assert entry["weights_sha256"] == manifest["sha256"]
    head = load_from_release(DEFAULT_MODEL, manifest, 1280)
    assert head is not None and head.num_features == 1280
    assert 0 < entry["threshold"] < 1 and entry["size"] >= 64


def test_a_season_run_writes_the_boxes_it_found(located, tmp_path):
    import csv

    from reid.bulk import BulkOptions, run_bulk

    root, release, image, _ = located
    season = tmp_path / "season"
    season.mkdir()
    shutil.copy(root / "query.png", season / "q1.png")
    (season / "manifest.csv").write_text(
        "path,individual_id,species,captured_at,camera_id\n"
        "q1.png,,leopard,2025-01-01T00:00:00Z,cam-1\n"
    )
    opts = BulkOptions(model=release, show_progress=False, report=False, registry=None)
    summary = run_bulk(season, root / "index", tmp_path / "run", opts)
    assert summary.complete
    with (tmp_path / "run" / "encounters.csv").open() as f:
        row = next(csv.DictReader(f))
    key, box = row["located_boxes"].split(":")
    found = located_fraction(release, image)
    assert [float(v) for v in box.split(",")] == pytest.approx(found, abs=1e-4)
    off = run_bulk(season, root / "index", tmp_path / "run-off",
                   BulkOptions(model=release, show_progress=False, report=False,
                               registry=None, locate=False))  # fmt: skip
    assert off.complete
    with (tmp_path / "run-off" / "encounters.csv").open() as f:
        assert next(csv.DictReader(f))["located_boxes"] == ""


def located_fraction(release, image) -> list[float]:
    from reid.boxhead import boxer_of

    model, manifest = load_release(release)
    b = boxer_of(model, manifest).box(image)
    h, w = image.shape[:2]
    return [b.x / w, b.y / h, b.w / w, b.h / h]


def test_enroll_and_eval_locate_whole_photos_that_have_no_box(located, tmp_path):
    import cv2
    from typer.testing import CliRunner

    from reid.boxhead import boxer_of
    from reid.cli import app
    from reid.index import GalleryIndex
    from reid.match import Matcher

    root, release, _, _ = located
    rng = np.random.default_rng(7)
    truth, rows = {}, ["path,individual_id,species,side"]
    for k in range(6):  # 3 individuals x 2 photos, whole scenes without boxes
        image, box = scene(rng)
        name = f"p{k}.png"
        cv2.imwrite(str(tmp_path / name), image[..., ::-1])
        truth[str((tmp_path / name).resolve())] = box
        rows.append(f"{name},ind{k // 2},leopard,left")
    cv2.imwrite(str(tmp_path / "p6.png"), scene(rng)[0][..., ::-1])
    rows.append("p6.png,,leopard,left")  # unidentified: neither located nor enrolled
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    runner = CliRunner()
    args = ["enroll", str(tmp_path / "labels.csv"), "--index", str(tmp_path / "idx"),
            "--model", str(release), "--json", "--locate"]  # fmt: skip
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["added"] == 6
    entries = GalleryIndex.open(tmp_path / "idx").entries().values()
    model, manifest = load_release(release)
    boxer = boxer_of(model, manifest)
    overlaps = []
    for e in entries:  # every photo enrolled as the crop the flank head finds
        image = load_image(e.image)
        assert e.bbox is not None and BBox(*e.bbox) == boxer.box(image)
        assert e.bbox != (0, 0, image.shape[1], image.shape[0])
        overlaps.append(iou(BBox(*e.bbox), truth[str(e.image)]))
    assert np.mean(overlaps) > 0.5
    assert Matcher.open(tmp_path / "idx", release).gallery_boxed()
    assert json.loads(out.output)["located"] == 6
    for rerun in (args, args[:-1]):  # with or without --locate: nothing enrolled twice
        again = runner.invoke(app, rerun)
        assert again.exit_code == 0, again.output
        summary = json.loads(again.output)
        assert summary["added"] == 0 and summary["skipped"]["already enrolled"] == 6
        assert summary["located"] == 0
    plain_args = ["enroll", str(tmp_path / "labels.csv"), "--index", str(tmp_path / "plain"),
                  "--model", str(release), "--json"]  # fmt: skip
    plain = runner.invoke(app, plain_args)
    assert plain.exit_code == 0, plain.output
    assert all(e.bbox is None for e in GalleryIndex.open(tmp_path / "plain").entries().values())
    mixed = runner.invoke(app, [*plain_args, "--locate"])  # a gallery of whole photos
    assert mixed.exit_code != 0 and "holds whole photos" in mixed.output
    headless = save_release(build_model(TINY).eval(), tmp_path / "headless", name="tiny",
                            training_data="none", metrics={})  # fmt: skip
    refused = runner.invoke(app, ["enroll", str(tmp_path / "labels.csv"), "--index",
                                  str(tmp_path / "h"), "--model", str(headless), "--locate"])
    assert refused.exit_code != 0 and "no flank head" in refused.output

    ev = runner.invoke(app, ["eval", str(tmp_path / "labels.csv"), "--method", "embedding",
                             "--model", str(release), "--locate", "--workers", "1"])
    assert ev.exit_code == 0, ev.output
    assert "located the flank in 7 of 7 images" in ev.output
    ev_json = runner.invoke(app, ["eval", str(tmp_path / "labels.csv"), "--method", "embedding",
                                  "--model", str(release), "--locate", "--workers", "1", "--json"])
    assert json.loads(ev_json.output)["located"] == 7
    atrw = tmp_path / "atrw"
    atrw.mkdir()
    (atrw / "reid_list_train.csv").write_text("")
    refused = runner.invoke(app, ["eval", str(atrw), "--locate", "--model", str(release)])
    assert refused.exit_code != 0 and "--locate does not apply to ATRW" in refused.output
