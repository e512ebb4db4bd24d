"""The neck stage (optim.freeze_backbone): only the neck moves, the run folder and resume
work as for any run, and what it refuses."""

import pytest
import torch

from reid.errors import ReidError
from reid.release import load_checkpoint_model, save_release
from training.config import load_config
from training.engine import fit
from training.neck import CELL_DROPOUT, MIN_WINDOW, augment_maps, batch_bounds
from training.optim import build_optimizer

NECK = ("optim.freeze_backbone=true", "loss.triplet_weight=0", "optim.loss_lr=1e-2",
        "optim.lr=1e-2")  # fmt: skip


class Killed(Exception):
    pass


def _release(tiny_config, tmp_path):
    fit(tiny_config("schedule.epochs=1"), tmp_path / "base", echo=lambda _: None)
    model, _ = load_checkpoint_model(tmp_path / "base" / "best.pt")
    return model, save_release(model, tmp_path / "release", name="base", training_data="t",
                               metrics={})  # fmt: skip


def test_the_neck_stage_moves_the_neck_and_not_the_backbone(tiny_config, tmp_path):
    model, release = _release(tiny_config, tmp_path)
    cfg = tiny_config("schedule.epochs=2", f"run.init={release}", *NECK,
                      "augment.flip_as_new_identity=true")  # fmt: skip
    lines = []
    summary = fit(cfg, tmp_path / "neck", echo=lines.append)
    assert any(line.startswith("neck stage: backbone frozen") for line in lines)
    # 2 training tigers x 2 flanks x 3 photos, and their mirrors
    assert any("train: 24 items of 8 flanks" in line for line in lines)
    assert summary["best"] is not None
    for name in ("config.yaml", "last.pt", "best.pt", "log.csv", "curves.png"):
        assert (tmp_path / "neck" / name).is_file(), name
    assert load_config(tmp_path / "neck" / "config.yaml").optim.freeze_backbone
    before, after = model.state_dict(), torch.load(tmp_path / "neck" / "last.pt",
                                                   weights_only=True)["model"]  # fmt: skip
    backbone = [k for k in before if k.startswith("backbone.")]
    assert backbone and all(torch.equal(before[k], after[k]) for k in backbone)
    assert not torch.equal(before["fc.weight"], after["fc.weight"])
    last = torch.load(tmp_path / "neck" / "last.pt", weights_only=True)
    assert last["loss"]["weight"].shape[0] == 8 * cfg.loss.subcenters
    # reid export reads it like any checkpoint
    tuned, _ = load_checkpoint_model(tmp_path / "neck" / "best.pt")
    assert tuned.embedding_dim == model.embedding_dim


def test_the_neck_stage_resumes_to_the_same_weights(tiny_config, tmp_path):
    _, release = _release(tiny_config, tmp_path)
    cfg = tiny_config("schedule.epochs=2", f"run.init={release}", *NECK)
    fit(cfg, tmp_path / "straight", echo=lambda _: None)

    def kill(line: str) -> None:
        if line.startswith("epoch 1/2"):
            raise Killed

    with pytest.raises(Killed):
        fit(cfg, tmp_path / "cut", echo=kill)
    fit(load_config(tmp_path / "cut" / "config.yaml"), tmp_path / "cut", resume=True,
        echo=lambda _: None)  # fmt: skip
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert [r["loss"] for r in a["history"]] == [r["loss"] for r in b["history"]]


def test_the_neck_stage_refuses_the_triplet_loss_when_the_config_is_read(tiny_config):
    with pytest.raises(ReidError, match="loss.triplet_weight must be 0 with optim.freeze"):
        tiny_config("optim.freeze_backbone=true", "loss.triplet_weight=1")


def test_resuming_the_neck_stage_applies_a_changed_learning_rate(tiny_config, tmp_path):
    _, release = _release(tiny_config, tmp_path)
    cfg = tiny_config("schedule.epochs=1", f"run.init={release}", *NECK)
    fit(cfg, tmp_path / "neck", echo=lambda _: None)
    lines = []
    resumed = load_config(tmp_path / "neck" / "config.yaml",
                          ["schedule.epochs=2", "optim.lr=0.005"])  # fmt: skip
    fit(resumed, tmp_path / "neck", resume=True, echo=lines.append)
    assert any(line.startswith("epoch 2/2") for line in lines)
    groups = torch.load(tmp_path / "neck" / "last.pt", weights_only=True)["optimizer"]
    heads = [g for g in groups["param_groups"] if g["name"] == "head"]
    assert heads and all(g["initial_lr"] == 0.005 for g in heads)
    assert all(g["initial_lr"] == 1e-2 for g in groups["param_groups"] if g["name"] == "loss")
    lines.clear()
    fit(resumed, tmp_path / "neck", resume=True, echo=lines.append)
    assert any("nothing to train" in line for line in lines)


def test_batch_bounds_never_leave_a_lone_item():
    assert batch_bounds(12, 11) == [(0, 12)]
    assert batch_bounds(12, 5) == [(0, 5), (5, 10), (10, 12)]
    assert batch_bounds(11, 5) == [(0, 5), (5, 11)]
    assert batch_bounds(3, 3) == [(0, 3)]


def test_loss_lr_is_a_group_of_its_own_and_frozen_parameters_are_left_out(tiny_config):
    from reid.model import EmbeddingModel
    from training.losses import SubCenterArcFace

    cfg = tiny_config("optim.loss_lr=0.05", "optim.lr=0.001", "optim.backbone_lr=0")
    model = EmbeddingModel(cfg.model)
    loss = SubCenterArcFace(model.embedding_dim, 3)
    lrs = {g["name"]: g["lr"] for g in build_optimizer(model, loss, cfg.optim).param_groups}
    assert lrs == {"backbone": 0.0, "head": 0.001, "loss": 0.05}
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    names = {g["name"] for g in build_optimizer(model, loss, cfg.optim).param_groups}
    assert names == {"head", "loss"}


def test_augment_maps_keeps_a_window_and_drops_some_cells():
    maps = torch.ones(64, 4, 10, 12, dtype=torch.float16)
    g = torch.Generator().manual_seed(0)
    shapes = set()
    for _ in range(20):
        out = augment_maps(maps, g)
        h, w = out.shape[-2:]
        assert MIN_WINDOW * 10 <= h <= 10 and MIN_WINDOW * 12 <= w <= 12
        shapes.add((h, w))
        dropped = float((out[:, 0] == 0).float().mean())
        assert 0.5 * CELL_DROPOUT < dropped < 2 * CELL_DROPOUT
        assert torch.equal(out[:, 0] == 0, out[:, 3] == 0)  # a cell is dropped in all channels
    assert len(shapes) > 1


def test_a_last_batch_of_one_map_joins_the_batch_before(tiny_config, tmp_path):
    _, release = _release(tiny_config, tmp_path)
    # 12 training photos in batches of 11: the second batch would hold one map, which a
    # batch norm in training mode cannot normalise
    cfg = tiny_config("schedule.epochs=1", f"run.init={release}", *NECK,
                      "sampler.identities=11", "sampler.images=1",
                      "sampler.rehearsal_identities=0")  # fmt: skip
    lines = []
    fit(cfg, tmp_path / "neck", echo=lines.append)
    assert any("1 batches of 11 maps" in line for line in lines)  # the 12th joins the first
    last = torch.load(tmp_path / "neck" / "last.pt", weights_only=True)
    assert last["epoch"] == 1 and last["global_step"] == 1
