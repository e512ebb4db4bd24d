"""Flank side from the photo: the side head, its release file, the matcher's use of it."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from reid.cli import app
from reid.errors import ReidError
from reid.images import load_image
from reid.match import MatchConfig, Matcher, enroll
from reid.model import ModelConfig, build_model
from reid.release import load_release, save_release
from reid.side import (
    SIDE_FILE,
    SideHead,
    attach,
    decide_side,
    fit_side_head,
    half_pooled,
    head_of,
    save_to_release,
)
from reid.side import side_accuracy as accuracy
from reid.synthetic.catalogue import write_catalogue

TINY = ModelConfig(
    backbone="test_efficientnet", embedding_dim=16, input_size=(32, 64), pretrained=None
)
runner = CliRunner()


def test_half_pooled_keeps_where_things_are():
    x = torch.zeros(1, 2, 3, 5)
    x[0, 0, :, :2] = 1.0  # channel 0 on the left two columns
    x[0, 1, :, 3:] = 2.0  # channel 1 on the right two columns; the middle is in neither
    assert half_pooled(x).tolist() == [[1.0, 0.0, 0.0, 2.0]]
    assert half_pooled(x.flip(-1)).tolist() == [[0.0, 2.0, 1.0, 0.0]]


def facing_features(n, c=8, seed=0):
    """Half-pooled features where a left-facing animal has its 'head channel' on the left."""
    rng = np.random.default_rng(seed)
    left = rng.random(n) < 0.5
    x = rng.normal(size=(n, 2 * c)).astype(np.float32)
    x[left, 0] += 3.0  # head channel, left half
    x[~left, c] += 3.0  # head channel, right half
    return x, left.astype(np.float32)


def test_fit_learns_the_side_and_generalises():
    x, y = facing_features(400)
    head = fit_side_head(x, y)
    xt, yt = facing_features(400, seed=1)
    with torch.no_grad():
        p = torch.sigmoid(head.logit_of_pooled(torch.as_tensor(xt))).numpy()
    score = accuracy(p, ["left" if v else "right" for v in yt])
    assert score["accuracy"] > 0.95
    assert 0 < score["decided_share"] <= 1


def test_fit_refuses_one_sided_or_misshapen_data():
    x, _ = facing_features(10)
    with pytest.raises(ReidError, match="both sides"):
        fit_side_head(x, np.ones(10))
    with pytest.raises(ReidError, match="features"):
        fit_side_head(x[:, :3], np.r_[np.ones(5), np.zeros(5)])


@pytest.mark.parametrize(
    ("p", "threshold", "side"),
    [(0.99, 0.95, "left"), (0.01, 0.95, "right"), (0.9, 0.95, None), (0.5, 0.5, "left"),
     (0.97, 1.0, None), (1.0, 1.0, None), (0.0, 1.0, None)],  # fmt: skip
)
def test_decide_side(p, threshold, side):
    assert decide_side(p, threshold) == side


def test_decide_side_refuses_a_threshold_below_a_coin():
    with pytest.raises(ReidError, match="threshold"):
        decide_side(0.7, 0.3)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """3 leopards x 2 sides x 3 photos enrolled (without their last photo); a tiny model."""
    root = tmp_path_factory.mktemp("side")
    records = write_catalogue(
        root / "cat", species=("leopard",), individuals=3, images_per_side=3, seed=3, workers=1
    )
    torch.manual_seed(0)
    release = save_release(build_model(TINY).eval(), root / "model", name="tiny",
                           training_data="none", metrics={})  # fmt: skip
    flanks = {}
    for r in records:
        flanks.setdefault((r.individual_id, r.side), []).append(r)
    gallery = [r for rs in flanks.values() for r in rs[:-1]]
    held_out = {k: rs[-1] for k, rs in flanks.items()}
    enroll(gallery, root / "index", release, show_progress=False, workers=1)
    return root, release, records, held_out


def test_cli_fit_writes_a_head_that_the_release_loads_and_checks(setup, tmp_path):
    root, release, _, _ = setup
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(release, copy)
    result = runner.invoke(app, ["side", "fit", str(root / "cat"), "--model", str(copy),
                                 "--held-out", "0.34", "--workers", "0"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "held out" in result.output
    manifest = json.loads((copy / "manifest.json").read_text())
    assert manifest["side_head"]["file"] == SIDE_FILE
    assert manifest["side_head"]["held_out"][str(root / "cat")]["photos"] > 0
    model, _ = load_release(copy)
    assert isinstance(head_of(model), SideHead)
    # the embedding network is untouched: same weights, so the same index still opens
    assert manifest["sha256"] == json.loads((release / "manifest.json").read_text())["sha256"]
    Matcher.open(root / "index", copy)
    result = runner.invoke(app, ["side", "eval", str(root / "cat"), "--model", str(copy),
                                 "--workers", "0", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout)) == {"photos", "mirrored"}
    # a head fitted for other weights is refused
    edited = json.loads((copy / "manifest.json").read_text())
    edited["side_head"]["weights_sha256"] = "0" * 64
    (copy / "manifest.json").write_text(json.dumps(edited))
    with pytest.raises(ReidError, match="other weights"):
        load_release(copy)
    edited["side_head"]["weights_sha256"] = manifest["sha256"]
    (copy / "manifest.json").write_text(json.dumps(edited))
    # a modified head file is refused, not silently used
    with open(copy / SIDE_FILE, "ab") as f:
        f.write(b"x")
    with pytest.raises(ReidError, match="SHA-256"):
        load_release(copy)


def test_cli_fit_trains_crops_without_a_facing_cue_toward_a_coin(setup, tmp_path):
    root, release, _, _ = setup
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(release, copy)
    result = runner.invoke(app, ["side", "fit", str(root / "cat"), "--no-cue", str(root / "cat"),
                                 "--model", str(copy), "--held-out", "0.34",
                                 "--workers", "0"])  # fmt: skip
    assert result.exit_code == 0, result.output
    held = json.loads((copy / "manifest.json").read_text())["side_head"]["held_out"]
    assert set(held[f"{root / 'cat'} (no cue)"]) == {"photos", "decided_share"}


def test_cli_eval_without_a_head_says_so(setup):
    root, release, _, _ = setup
    result = runner.invoke(app, ["side", "eval", str(root / "cat"), "--model", str(release)])
    assert result.exit_code == 2
    assert "no side head" in result.output


def sure_head(num_features, p_left):
    head = SideHead(num_features)
    with torch.no_grad():
        head.linear.weight.zero_()
        head.linear.bias.fill_(float(np.log(p_left / (1 - p_left))))
    return head.eval()


def test_matcher_searches_the_side_the_photo_shows_only_when_sure(setup):
    root, release, _, held_out = setup
    matcher = Matcher.open(root / "index", release)
    (_, side), record = next((k, r) for k, r in held_out.items() if k[1] == "left")
    image = load_image(record.path)
    plain = matcher.match(image, top=10)
    assert plain.searched == ["left", "right"] and plain.left_probability is None

    attach(matcher.model, sure_head(matcher.model.num_features, 0.99))
    sure = matcher.match(image, top=10)
    assert sure.searched == ["left"]
    assert sure.left_probability == pytest.approx(0.99, abs=1e-4)
    assert {c.side for c in sure.candidates} == {"left"}

    attach(matcher.model, sure_head(matcher.model.num_features, 0.8))
    unsure = matcher.match(image, top=10)
    assert unsure.searched == ["left", "right"]
    assert {c.side for c in unsure.candidates} == {"left", "right"}

    given = matcher.match(image, side="right", top=10)  # a given side always wins
    assert given.searched == ["right"] and given.left_probability is None

    strict = Matcher.open(root / "index", release, config=MatchConfig(side_threshold=1.0))
    attach(strict.model, sure_head(strict.model.num_features, 0.99))
    assert strict.match(image, top=10).searched == ["left", "right"]
    attach(matcher.model, None)


def test_save_to_release_is_atomic_and_keeps_the_manifest(setup, tmp_path):
    _, release, _, _ = setup
    import shutil

    copy = tmp_path / "m"
    shutil.copytree(release, copy)
    before = json.loads((copy / "manifest.json").read_text())
    head = sure_head(build_model(TINY).num_features, 0.7)
    after = save_to_release(copy, head, {"fitted_on": "test"})
    assert {k: v for k, v in after.items() if k != "side_head"} == before
    assert not list(copy.glob(".*tmp"))
    from reid.paths import FILE_MODE

    assert (copy / SIDE_FILE).stat().st_mode & 0o777 == FILE_MODE


def test_cli_match_reports_the_side_from_the_photo_and_its_threshold(setup, tmp_path):
    root, release, _, held_out = setup
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(release, copy)
    save_to_release(copy, sure_head(build_model(TINY).num_features, 0.99), {"fitted_on": "t"})
    record = next(r for (_, s), r in held_out.items() if s == "left")
    base = ["match", str(record.path), "--index", str(root / "index"), "--model", str(copy)]
    table = runner.invoke(app, base)
    assert table.exit_code == 0, table.output
    assert "P(left) 0.99; searched left" in table.output
    both = runner.invoke(app, [*base, "--side-threshold", "1", "--json"])
    assert both.exit_code == 0, both.output
    assert json.loads(both.stdout)[0]["searched"] == ["left", "right"]
