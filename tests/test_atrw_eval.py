"""ATRW train validation: a seeded entity split, near-duplicates out of each gallery."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_near_duplicates import save, scene
from typer.testing import CliRunner

from reid.atrw_eval import (
    ATRW_SPLIT_SEED,
    ATRW_TRAIN_RATIO,
    atrw_entity_split,
    atrw_validation_set,
    evaluate_atrw_validation,
    is_atrw_train,
    score_validation,
)
from reid.cli import app
from reid.data.load import load_catalogue
from reid.data.records import ImageRecord
from reid.near_duplicates import image_signature
from reid.splits import disjoint_split

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
runner = CliRunner()


def atrw_train_folder(root: Path, entities: int = 6) -> Path:
    """A tiny ATRW-train-like folder: per entity two consecutive frames of one walk
    (near-duplicates) and two photos of other scenes."""
    rows = []
    for e in range(entities):
        for k, pixels in enumerate(
            [scene(100 + e), scene(100 + e, shift=2, noise=3.0), scene(200 + e), scene(300 + e)]
        ):
            name = f"{e:03d}{k}.jpg"
            save(root, name, pixels)
            rows.append(f"{e},{name}")
    (root / "reid_list_train.csv").write_text("\n".join(rows) + "\n")
    return root


def tiny_release(path: Path) -> Path:
    """An untrained 16-d test model saved as a release (seeded)."""
    import torch

    from reid.model import ModelConfig, build_model
    from reid.release import save_release

    torch.manual_seed(0)
    tiny = ModelConfig(
        backbone="test_efficientnet", embedding_dim=16, input_size=(32, 64), pretrained=None
    )
    return save_release(build_model(tiny).eval(), path, name="tiny", training_data="none",
                        metrics={})  # fmt: skip


def frame_matcher(records):
    """A 'method' that matches frames, not tigers: the near-duplicate signature. It must
    never see a label."""
    assert all(r.individual_id is None for r in records)
    return np.stack([image_signature(r.path) for r in records])


def test_entity_split_is_reid_trains_disjoint_split():
    records = [
        ImageRecord(Path(f"{e}-{k}.jpg"), str(e), "tiger") for e in range(107) for k in (0, 1)
    ]
    train, held = atrw_entity_split(records)
    assert (ATRW_TRAIN_RATIO, ATRW_SPLIT_SEED) == (0.8, 0)
    assert len(train) == 86 and len(held) == 21
    assert not set(train) & set(held) and len(set(train) | set(held)) == 107
    split = disjoint_split(records, 0.8, 0)
    assert set(held) == {r.individual_id for r in split.test}
    assert atrw_entity_split(list(reversed(records))) == (train, held)  # order-free
    assert atrw_entity_split(records, 0.8, 1) != (train, held)
    assert train == sorted(train, key=int)


def test_validation_excludes_near_duplicates_from_each_gallery(tmp_path):
    folder = atrw_train_folder(tmp_path / "atrw")
    assert is_atrw_train(folder)
    records = load_catalogue(folder)
    validation = atrw_validation_set(records, 0.5, 0)
    n = len(validation.records)
    assert n == 12 and len(validation.heldout_entities) == 3
    assert {r.individual_id for r in validation.records} == set(validation.heldout_entities)
    # the two frames of each walk form a group; the other photos are alone
    names = [r.path.name for r in validation.records]
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            near = i != j and a[:3] == b[:3] and {a[3], b[3]} == {"0", "1"}
            assert validation.exclude[i, j] == (near or i == j), (a, b)
    result = evaluate_atrw_validation(validation, frame_matcher)
    assert result["excluded"] == 6 and result["excluded_per_query"] == 0.5
    assert result["queries"] == 12 and result["queries_without_positive"] == 0
    assert result["split"] == "entity split 0.5/0.5, seed 0"
    # without the exclusion the frame matcher looks perfect on the walk's frames
    unguarded = atrw_validation_set(records, 0.5, 0, threshold=1.01)
    flattered = evaluate_atrw_validation(unguarded, frame_matcher)
    assert flattered["excluded"] == 0
    assert flattered["top1"] > result["top1"]


def test_score_validation_checks_the_shape_and_counts_lonely_queries(tmp_path):
    folder = atrw_train_folder(tmp_path / "atrw", entities=4)
    validation = atrw_validation_set(folder, 0.5, 0, threshold=-1.0)  # everything linked
    with pytest.raises(ValueError, match="shape"):
        score_validation(validation, np.zeros((2, 2)))
    result = score_validation(validation, np.zeros((8, 8)))
    assert result["queries"] == 0 and result["queries_without_positive"] == 8


def test_method_objects_are_scored_without_labels(tmp_path):
    folder = atrw_train_folder(tmp_path / "atrw", entities=4)

    class Blind:
        name = "blind"

        def work(self, n):
            return n

        def similarity(self, records, progress=None):
            assert all(r.individual_id is None for r in records)
            return np.zeros((len(records), len(records)))

    result = evaluate_atrw_validation(folder, Blind(), train_ratio=0.5, seed=1)
    assert result["method"] == "blind" and result["top1"] == 0.0


def test_reid_eval_on_atrw_train_scores_the_held_out_entities(tmp_path):
    folder = atrw_train_folder(tmp_path / "atrw")
    result = runner.invoke(
        app, ["eval", str(folder), "--method", "sift", "--train-ratio", "0.5", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output[result.output.index("{") :])
    assert data["images"] == 12 and data["excluded"] == 6 and data["entities"] == 3
    assert data["split"] == "entity split 0.5/0.5, seed 0"
    text = runner.invoke(app, ["eval", str(folder), "--method", "sift", "--train-ratio", "0.5"])
    assert text.exit_code == 0, text.output
    assert "near-duplicates excluded from the galleries: 6" in text.output
    refused = runner.invoke(app, ["eval", str(folder), "--limit", "3"])
    assert refused.exit_code != 0 and "--limit" in refused.output


def test_default_split_of_the_real_atrw_train():
    folder = SHARED_DATA / "atrw-train"
    if not (folder / "reid_list_train.csv").is_file():
        pytest.skip(f"ATRW train not present at {folder}")
    train, held = atrw_entity_split(folder)
    assert len(train) == 86 and len(held) == 21
    assert not set(train) & set(held)
    assert atrw_entity_split(folder) == (train, held)


def test_fused_on_atrw_train_fits_its_weights_on_the_training_entities(tmp_path):
    folder = atrw_train_folder(tmp_path / "atrw")
    release = tiny_release(tmp_path / "model")
    result = runner.invoke(
        app, ["eval", str(folder), "--method", "fused", "--model", str(release),
              "--train-ratio", "0.5", "--workers", "1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "fused weights fitted on 12 images of the 3 training entities" in result.output
    assert "fused weights (cosine, log inliers, sqrt tentative)" in result.output
    assert "mAP" in result.output


@pytest.mark.parametrize("method", ["fused", "fused-rerank"])
def test_fused_on_the_atrw_test_fits_on_atrw_trains_held_out_entities(tmp_path, method):
    """--fusion-fit ATRW_TRAIN fits the weights on the entities reid train holds out (the
    shipped model never saw them, as it never saw the test's): 10 entities, 2 held out."""
    from test_atrw_official import _tiny_test_folder

    test = tmp_path / "test"
    test.mkdir()
    _tiny_test_folder(test, images_in_test=False)
    train = atrw_train_folder(tmp_path / "atrw", entities=10)
    _, held = atrw_entity_split(load_catalogue(train))
    assert len(held) == 2
    release = tiny_release(tmp_path / "model")
    result = runner.invoke(
        app, ["eval", str(test), "--method", method, "--model", str(release),
              "--fusion-fit", str(train), "--workers", "1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"method {method}" in result.output
    assert "fitted on ATRW train's 2 held-out entities" in result.output
    if method == "fused":
        # 2 entities x 4 photos (not all 40), their consecutive frames one photo each: 3 each
        assert "6 photos, one per near-duplicate group" in result.output
        assert "from 6 images" in result.output
        assert "fused weights (cosine, " in result.output
    else:  # re-ranking: the neighbourhoods keep the frames, the fit learns from no such pair
        assert "8 photos, consecutive frames kept as neighbours" in result.output
        assert "from 8 images" in result.output
        assert "fused weights (re-ranked similarity, " in result.output
    assert "single-camera mAP" in result.output


@pytest.mark.parametrize("method", ["fused", "fused-rerank"])
def test_fused_on_the_atrw_test_without_weights_from_elsewhere_is_refused(tmp_path, method):
    from test_atrw_official import _tiny_test_folder

    test = tmp_path / "test"
    test.mkdir()
    _tiny_test_folder(test, images_in_test=False)
    release = tiny_release(tmp_path / "model")
    result = runner.invoke(
        app, ["eval", str(test), "--method", method, "--model", str(release), "--workers", "1"]
    )
    assert result.exit_code == 2, result.output
    assert "needs weights fitted elsewhere" in result.output
    assert "Traceback" not in result.output
