"""Releases: safetensors + manifest + SHA-256 round trip, refusals, export, eval --model."""

import hashlib
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from reid.cli import app
from reid.embed import embed_records
from reid.errors import ReidError
from reid.methods import embedding as embedding_method
from reid.model import ModelConfig, build_model
from reid.release import (
    load_checkpoint_model,
    load_release,
    model_fingerprint,
    read_manifest,
    save_release,
    training_data_of,
)
from reid.synthetic.catalogue import write_catalogue

TINY = ModelConfig(
    backbone="test_efficientnet", embedding_dim=16, input_size=(32, 64), pretrained=None
)
runner = CliRunner()


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    out = tmp_path_factory.mktemp("catalogue")
    write_catalogue(out, species=("tiger",), individuals=2, images_per_side=2, seed=1, workers=1)
    return out


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = build_model(TINY)
    with torch.no_grad():  # make BN statistics and GeM p differ from a fresh model
        model.train()(torch.randn(8, 3, 32, 64))
        model.pool.p.fill_(2.5)
    return model.eval()


@pytest.fixture
def release(tmp_path, trained):
    return save_release(
        trained, tmp_path / "rel", name="tiny", training_data="synthetic", metrics={"mAP": 0.5}
    )


def test_round_trip_gives_identical_embeddings(release, trained, catalogue):
    from reid.data.load import load_catalogue

    records = load_catalogue(catalogue)
    # as trained: identical to the bit
    loaded, manifest = load_release(release, for_inference=False)
    assert not loaded.training
    assert loaded.config == TINY
    a = embed_records(trained, records, workers=0)
    b = embed_records(loaded, records, workers=0)
    assert np.array_equal(a, b)
    assert manifest["name"] == "tiny" and manifest["metrics"] == {"mAP": 0.5}
    # the default, batch norms folded for inference: the same to float rounding
    fused, _ = load_release(release)
    assert fused.fused_batchnorms > 0 and fused.config == TINY
    np.testing.assert_allclose(embed_records(fused, records, workers=0), a, atol=1e-5)


def test_release_files_get_the_mode_of_any_new_file(release, tmp_path):
    # Written through mkstemp (0600) and renamed: a shared model must stay readable.
    import os

    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    for f in ("model.safetensors", "manifest.json", "README.md"):
        assert os.stat(release / f).st_mode & 0o777 == os.stat(plain).st_mode & 0o777, f


def test_manifest_describes_the_model(release, trained):
    manifest = json.loads((release / "manifest.json").read_text())
    digest = hashlib.sha256((release / "model.safetensors").read_bytes()).hexdigest()
    assert manifest["sha256"] == digest == model_fingerprint(manifest)
    assert manifest["backbone"] == "test_efficientnet"
    assert manifest["input_size"] == [32, 64] and manifest["embedding_dim"] == 16
    assert manifest["parameters"] == sum(p.numel() for p in trained.parameters())
    assert manifest["created_at"].endswith("Z")
    assert {"format_version", "pooling", "mean", "std", "torch_version", "timm_version"} <= set(
        manifest
    )
    assert "tiny" in (release / "README.md").read_text()


def test_flipped_byte_is_refused_by_hash(release):
    weights = release / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(ReidError, match="SHA-256") as info:
        load_release(release)
    message = str(info.value)
    assert "model.safetensors" in message
    assert read_manifest(release)["sha256"] in message
    assert hashlib.sha256(bytes(data)).hexdigest() in message


def test_manifest_with_wrong_architecture_is_refused(release):
    path = release / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["embedding_dim"] = 32
    path.write_text(json.dumps(manifest))
    with pytest.raises(ReidError, match="do not fit the architecture") as info:
        load_release(release)
    assert "embedding_dim 32" in str(info.value) and "fc.weight" in str(info.value)


def test_missing_manifest_is_a_clear_error(release):
    (release / "manifest.json").unlink()
    with pytest.raises(ReidError, match="no manifest.json"):
        load_release(release)


def test_bad_json_manifest(release):
    (release / "manifest.json").write_text("{not json")
    with pytest.raises(ReidError, match="not a readable JSON manifest"):
        load_release(release)


def test_missing_weights_file(release):
    (release / "model.safetensors").unlink()
    with pytest.raises(ReidError, match="model.safetensors is missing"):
        load_release(release)


def test_missing_release_folder(tmp_path):
    with pytest.raises(ReidError, match="does not exist"):
        load_release(tmp_path / "nope")


def write_checkpoint(path, model):
    torch.save(
        {
            "model": model.state_dict(),
            "config": {"model": model.config.to_dict(), "data": "synth-train-v1"},
            "metrics": {"mAP": torch.tensor(0.25), "top1": 0.5},
            "epoch": 3,
        },
        path,
    )


def test_load_checkpoint_model(tmp_path, trained):
    write_checkpoint(tmp_path / "ckpt.pt", trained)
    model, ckpt = load_checkpoint_model(tmp_path / "ckpt.pt")
    assert ckpt["epoch"] == 3
    x = torch.randn(2, 3, 32, 64)
    with torch.inference_mode():
        assert torch.allclose(model(x), trained(x), atol=1e-6)


def test_training_data_description():
    data = {"synthetic": "synth-train-v1", "manifest": None, "train_ratio": 0.8, "split_seed": 0}
    assert training_data_of({"config": {"data": data}}) == (
        "synthetic synth-train-v1 (train_ratio 0.8, split_seed 0)"
    )
    assert training_data_of({"config": {}}) == "unknown"


def test_checkpoint_with_wrong_config_is_refused(tmp_path, trained):
    torch.save(
        {
            "model": trained.state_dict(),
            "config": {"model": {**TINY.to_dict(), "embedding_dim": 8}},
        },
        tmp_path / "ckpt.pt",
    )
    with pytest.raises(ReidError, match="do not fit"):
        load_checkpoint_model(tmp_path / "ckpt.pt")


def test_export_then_eval_with_model_end_to_end(tmp_path, trained, catalogue):
    write_checkpoint(tmp_path / "ckpt.pt", trained)
    rel = tmp_path / "tiny-release"
    result = runner.invoke(app, ["export", str(tmp_path / "ckpt.pt"), "--out", str(rel)])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(rel)
    assert manifest["name"] == "tiny-release"
    assert manifest["training_data"] == "synth-train-v1"
    assert manifest["metrics"] == {"mAP": 0.25, "top1": 0.5}

    args = ["eval", str(catalogue), "--method", "embedding", "--model", str(rel), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output[result.output.index("{") :])
    assert data["images"] == 8 and data["queries"] == 8
    assert 0.0 <= data["mAP"] <= 1.0


def error_line(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return result.output.strip().splitlines()[-1]


def test_model_option_with_sift_is_a_clear_error(release, catalogue):
    result = runner.invoke(
        app, ["eval", str(catalogue), "--method", "sift", "--model", str(release)]
    )
    assert "--model does not apply" in error_line(result)


def test_embedding_without_default_model_says_what_to_do(catalogue, tmp_path, monkeypatch):
    monkeypatch.setattr(embedding_method, "DEFAULT_MODEL", tmp_path / "models" / "bigcat-default")
    result = runner.invoke(app, ["eval", str(catalogue), "--method", "embedding"])
    line = error_line(result)
    assert "no default model is installed" in line and "--model" in line


def test_eval_with_a_tampered_release_is_refused(release, catalogue):
    weights = release / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    args = ["eval", str(catalogue), "--method", "embedding", "--model", str(release)]
    assert "SHA-256" in error_line(runner.invoke(app, args))


def test_release_served_at_another_size_than_trained(tmp_path, trained, catalogue):
    from reid.data.load import load_catalogue

    records = load_catalogue(catalogue)
    plain = save_release(trained, tmp_path / "plain", name="t", training_data="s", metrics={})
    big = save_release(
        trained, tmp_path / "big", name="t", training_data="s", metrics={}, input_size=(48, 96)
    )
    m_plain, m_big = read_manifest(plain), read_manifest(big)
    assert m_plain["input_size"] == m_plain["train_input_size"] == [32, 64]
    assert m_big["input_size"] == [48, 96] and m_big["train_input_size"] == [32, 64]
    # same weights, another size: other vectors, so another fingerprint (no shared index)
    assert m_big["sha256"] == m_plain["sha256"] == model_fingerprint(m_plain)
    assert model_fingerprint(m_big) == m_plain["sha256"] + "@48x96"
    assert "48 x 96, letterboxed (trained at 32 x 64)" in (big / "README.md").read_text()
    model, _ = load_release(big)
    assert model.config.input_size == (48, 96)
    at_48 = embed_records(model, records, workers=0)
    at_32 = embed_records(load_release(plain)[0], records, workers=0)
    assert at_48.shape == at_32.shape and not np.allclose(at_48, at_32, atol=1e-3)
    # the eval method's override embeds exactly like the release made at that size
    method = embedding_method.EmbeddingMethod(workers=0, model=plain, input_size=(48, 96))
    np.testing.assert_allclose(method.embeddings(records), at_48, atol=1e-6)
    assert method.fingerprint == model_fingerprint(m_big)
    # a gallery made at one size refuses the other, and says which size it is
    from reid.index import check_fingerprint

    with pytest.raises(ReidError, match=r"@48x96\), not with this model \(sha256 \w{12}\.\.\.\)"):
        check_fingerprint(model_fingerprint(m_big), model_fingerprint(m_plain), "gallery")


def test_export_input_size_option(tmp_path, trained):
    write_checkpoint(tmp_path / "ckpt.pt", trained)
    rel = tmp_path / "rel"
    args = ["export", str(tmp_path / "ckpt.pt"), "--out", str(rel), "--input-size", "48x96"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert read_manifest(rel)["input_size"] == [48, 96]
    for bad in ("48by96", "48x0", "48x96x2"):
        line = error_line(runner.invoke(app, args[:-1] + [bad]))
        assert "--input-size" in line and ("HEIGHTxWIDTH" in line or "positive" in line), line


def test_export_blend_averages_the_weights_with_the_release_it_started_from(
    tmp_path, trained, release
):
    torch.manual_seed(1)
    tuned = build_model(TINY).eval()  # another set of weights of the same architecture
    write_checkpoint(tmp_path / "ckpt.pt", tuned)
    out = tmp_path / "blended"
    result = runner.invoke(app, ["export", "model", str(tmp_path / "ckpt.pt"), "--out", str(out),
                                 "--blend", str(release), "--blend-weight", "0.25"])  # fmt: skip
    assert result.exit_code == 0, result.output
    blended, manifest = load_release(out, for_inference=False)
    a, b, c = tuned.state_dict(), trained.state_dict(), blended.state_dict()
    for k in c:
        if c[k].is_floating_point():
            assert torch.allclose(c[k], 0.25 * a[k] + 0.75 * b[k], atol=1e-6), k
        else:
            assert torch.equal(c[k], a[k]), k
    assert "0.25 x" in manifest["training_data"]
    assert manifest["training_data"].endswith("(weights averaged)")


def test_blend_refuses_another_architecture_and_a_weight_outside_0_1(trained):
    from reid.release import blend_weights

    other = build_model(ModelConfig(backbone="test_efficientnet", embedding_dim=8,
                                    input_size=(32, 64), pretrained=None))  # fmt: skip
    with pytest.raises(ReidError, match="architectures"):
        blend_weights(build_model(TINY), other, 0.5)
    with pytest.raises(ReidError, match="0..1"):
        blend_weights(build_model(TINY), trained, 1.5)


def test_only_atrw_layouts_are_taken_for_atrw(tmp_path):
    """ATRW's list is recognised by its name, its photos' names or the keypoints beside
    it; a header-less two-column numeric CSV of the user's own is not ATRW's."""
    import json as _json

    from reid.licence import ATRW, of_catalogue

    atrw = tmp_path / "atrw"  # the official layout: list, keypoints, train/
    (atrw / "train").mkdir(parents=True)
    (atrw / "reid_list_train.csv").write_text("0,002019.jpg\n0,002020.jpg\n1,000004.jpg\n")
    (atrw / "reid_keypoints_train.json").write_text(_json.dumps({"002019.jpg": [0] * 45}))
    (atrw / "train" / "002019.jpg").write_bytes(b"")
    assert of_catalogue(atrw) == ATRW == of_catalogue(atrw / "reid_list_train.csv")
    (atrw / "subset.csv").write_text("0,cropped_a.png\n1,cropped_b.png\n")
    assert of_catalogue(atrw / "subset.csv") == ATRW  # an ATRW list beside its keypoints
    elsewhere = tmp_path / "mine"
    elsewhere.mkdir()
    (elsewhere / "subset.csv").write_text("7,000123.jpg\n")
    assert of_catalogue(elsewhere / "subset.csv") == ATRW  # ATRW's photo names
    for name, text in (("numbers.csv", "1,2\n3,4\n"), ("counts.csv", "-5,17\n"),
                       ("ids.txt", "12,0.5\n"), ("photos.csv", "3,IMG_0001.JPG\n")):  # fmt: skip
        (elsewhere / name).write_text(text)
        assert of_catalogue(elsewhere / name) is None, name  # was ATRW for the numeric ones
    assert of_catalogue(elsewhere) is None


def test_licence_of_catalogues_and_combined_terms(tmp_path):
    from reid.licence import ATRW, Licence, combine, of_catalogue

    atrw = tmp_path / "atrw"
    atrw.mkdir()
    (atrw / "reid_list_train.csv").write_text("1,000001.jpg\n")
    assert of_catalogue(atrw) == ATRW == of_catalogue(atrw / "reid_list_train.csv")
    listing = tmp_path / "list.csv"
    listing.write_text("3,000002.jpg\n")
    assert of_catalogue(listing) == ATRW
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,individual_id,species,side\n")
    assert of_catalogue(manifest) is None and of_catalogue(None) is None
    other = Licence("CC BY 4.0 (partner data)", "terms\n")
    assert combine(None, ATRW, ATRW) == ATRW and combine(None) is None
    both = combine(ATRW, other)
    assert ATRW.summary in both.summary and other.summary in both.summary
    assert "Terms 2 of 2: CC BY 4.0" in both.text
    assert Licence.from_dict({"summary": " ", "text": "x"}) is None
