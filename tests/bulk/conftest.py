"""A tiny synthetic season, a tiny model release made on the fly and a gallery enrolled
with it: the real matcher end to end, in seconds on a CPU."""

from __future__ import annotations

import pytest
import torch

from reid.data.manifest import read_manifest
from reid.model import ModelConfig, build_model
from reid.release import save_release
from reid.synthetic.season import SeasonSpec, write_season

TINY = ModelConfig(
    backbone="test_efficientnet", embedding_dim=16, input_size=(32, 64), pretrained=None
)
#: 2 tigers in the gallery, 1 new: 3 x 2 passes x 2 sides = 12 bursts of 2 frames.
SPEC = SeasonSpec(
    species=("tiger",), known=2, new=1, passes=2, frames_per_burst=2, gallery_per_side=2, seed=5
)


@pytest.fixture(scope="session")
def spec() -> SeasonSpec:
    return SPEC


@pytest.fixture(scope="session")
def season(tmp_path_factory):
    out = tmp_path_factory.mktemp("season")
    write_season(out, SPEC, workers=1)
    return out


@pytest.fixture(scope="session")
def release(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(TINY).eval()
    return save_release(
        model, tmp_path_factory.mktemp("release"), name="tiny", training_data="none", metrics={}
    )


@pytest.fixture(scope="session")
def gallery(season, release, tmp_path_factory):
    from reid.match import enroll

    out = tmp_path_factory.mktemp("gallery") / "index"
    enroll(
        read_manifest(season / "gallery" / "manifest.csv"),
        out,
        release,
        workers=1,
        calibration_sample=50,
        new_prior=0.8,
        show_progress=False,
    )
    return out
