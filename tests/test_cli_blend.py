"""reid export blend: two releases (or a release's backbone and ImageNet's) averaged."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from reid.cli import app
from reid.errors import ReidError
from reid.licence import ATRW, of_release
from reid.model import ModelConfig, build_model
from reid.release import blend_keys, blend_weights, load_release, save_release

TINY = ModelConfig(backbone="test_efficientnet", embedding_dim=16, input_size=(32, 64),
                   pretrained=None)  # fmt: skip
runner = CliRunner()


def release(tmp_path, name, seed, licence=None):
    torch.manual_seed(seed)
    return save_release(build_model(TINY).eval(), tmp_path / name, name=name,
                        training_data=f"data {name}", metrics={}, licence=licence)  # fmt: skip


def test_blend_of_two_releases_averages_the_chosen_part(tmp_path):
    a, b = release(tmp_path, "a", 0, licence=ATRW), release(tmp_path, "b", 1)
    for part in ("all", "backbone"):
        out = tmp_path / f"blend-{part}"
        result = runner.invoke(app, ["export", "blend", str(a), "--with", str(b), "--out",
                                     str(out), "--weight", "0.25", "--part", part])  # fmt: skip
        assert result.exit_code == 0, result.output
        ma = load_release(a, for_inference=False)[0].state_dict()
        mb = load_release(b, for_inference=False)[0].state_dict()
        mo, manifest = load_release(out, for_inference=False)
        so = mo.state_dict()
        for k, v in so.items():
            if not v.is_floating_point():
                continue
            blended = part == "all" or k.startswith("backbone.")
            want = 0.25 * ma[k] + 0.75 * mb[k] if blended else ma[k]
            assert torch.allclose(v, want, atol=1e-6), k
        assert manifest["training_data"].startswith("backbone: " if part == "backbone" else "0.25")
        assert of_release(out) == ATRW  # the licence of either side is inherited


def test_blend_refuses_what_cannot_be_blended(tmp_path):
    a = release(tmp_path, "a", 0)
    result = runner.invoke(app, ["export", "blend", str(a), "--with", "imagenet",
                                 "--out", str(tmp_path / "x")])  # fmt: skip
    assert result.exit_code != 0 and "--part backbone" in result.output
    result = runner.invoke(app, ["export", "blend", str(a), "--with", str(a), "--out", str(a)])
    assert result.exit_code != 0 and "the release itself" in result.output
    other = build_model(ModelConfig(backbone="test_efficientnet", embedding_dim=8,
                                    input_size=(32, 64), pretrained=None))  # fmt: skip
    mine = load_release(a, for_inference=False)[0]
    with pytest.raises(ReidError, match="different architectures"):
        blend_weights(mine, other, 0.5, "all")
    with pytest.raises(ReidError, match="part 'head'"):
        blend_weights(mine, mine, 0.5, "head")


def test_blend_weights_backbone_part_keeps_the_rest_and_integer_buffers():
    torch.manual_seed(0)
    mine = build_model(TINY)
    torch.manual_seed(1)
    theirs = build_model(TINY)
    # an embedding head of another width: only the backbone has to match for part=backbone
    narrow = build_model(ModelConfig(backbone="test_efficientnet", embedding_dim=8,
                                     input_size=(32, 64), pretrained=None))  # fmt: skip
    counts = [k for k, v in mine.state_dict().items() if not v.is_floating_point()]
    assert counts  # batch-norm num_batches_tracked
    for k in counts:
        theirs.state_dict()[k].fill_(7)
    a, b = mine.state_dict(), theirs.state_dict()
    a = {k: v.clone() for k, v in a.items()}
    blend_weights(mine, theirs, 0.25, "backbone")
    for k, v in mine.state_dict().items():
        if not v.is_floating_point():
            assert torch.equal(v, a[k]), k  # not averaged: RELEASE's step counts kept
        elif k.startswith("backbone."):
            assert torch.allclose(v, 0.25 * a[k] + 0.75 * b[k], atol=1e-6), k
        else:
            assert torch.equal(v, a[k]), k
    blend_weights(mine, narrow, 0.5, "backbone")  # the projection's width does not matter


def test_blend_keys_backbone_from_a_stage_on():
    keys = ["backbone.conv_stem.weight", "backbone.bn1.weight", "backbone.blocks.0.0.conv.weight",
            "backbone.blocks.4.1.bn1.weight", "backbone.blocks.6.0.conv_pwl.weight",
            "backbone.conv_head.weight", "backbone.bn2.running_mean",
            "fc.weight", "pool.p"]  # fmt: skip
    assert blend_keys(keys, "backbone:4") == keys[3:7]
    assert blend_keys(keys, "backbone:7") == [
        "backbone.conv_head.weight",
        "backbone.bn2.running_mean",
    ]
    assert blend_keys(keys, "backbone:0") == keys[2:7]
    assert blend_keys(keys, "backbone") == keys[:7]
    assert blend_keys(keys, "all") == keys
    for bad in ("backbone:", "backbone:x", "neck:3", "head"):
        with pytest.raises(ReidError, match="is not one of"):
            blend_keys(keys, bad)
    # another family's names (a ResNet's) are refused rather than mis-selected
    resnet = ["backbone.conv1.weight", "backbone.bn1.weight", "backbone.layer1.0.conv1.weight"]
    with pytest.raises(ReidError, match="EfficientNet-style"):
        blend_keys(resnet, "backbone:1")
    assert blend_keys(resnet, "backbone") == resnet


def test_blend_weights_late_stages_only():
    torch.manual_seed(0)
    mine = build_model(TINY)
    torch.manual_seed(1)
    theirs = build_model(TINY)
    a = {k: v.clone() for k, v in mine.state_dict().items()}
    b = theirs.state_dict()
    last = max(int(k.split(".")[2]) for k in a if k.startswith("backbone.blocks."))
    blend_weights(mine, theirs, 0.5, f"backbone:{last}")
    moved = {k for k, v in mine.state_dict().items() if not torch.equal(v, a[k])}
    assert moved and all(k.startswith((f"backbone.blocks.{last}.", "backbone.conv_head",
                                       "backbone.bn2")) for k in moved)  # fmt: skip
    k = next(k for k in moved if "conv_head" in k)
    assert torch.allclose(mine.state_dict()[k], 0.5 * a[k] + 0.5 * b[k], atol=1e-6)
