"""From image files to embeddings: letterbox preprocessing, workers, crops, bad images."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from reid.data.records import BBox
from reid.embed import (
    embed_images,
    embed_records,
    letterbox,
    letterbox_input,
    load_record_image,
    normalise_batch,
    preprocess,
)
from reid.errors import ImageError
from reid.images import crop, load_image
from reid.model import IMAGENET_MEAN, IMAGENET_STD, ModelConfig, build_model
from reid.synthetic.catalogue import write_catalogue

TINY = ModelConfig(
    backbone="test_efficientnet", embedding_dim=16, input_size=(32, 64), pretrained=None
)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    out = tmp_path_factory.mktemp("catalogue")
    return write_catalogue(
        out, species=("tiger",), individuals=2, images_per_side=2, seed=1, workers=1
    )


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(TINY).eval()


def test_letterbox_keeps_aspect_and_centres():
    white = np.full((100, 100, 3), 255, np.uint8)
    boxed = letterbox(white, (32, 64), fill=(1, 2, 3))
    assert boxed.shape == (32, 64, 3)
    assert (boxed[:, 16:48] == 255).all()  # square image: 32x32 in the middle
    assert (boxed[:, :16] == (1, 2, 3)).all() and (boxed[:, 48:] == (1, 2, 3)).all()


def test_letterbox_of_a_tall_image_pads_left_and_right_only():
    rng = np.random.default_rng(1)
    tall = rng.integers(0, 256, (64, 20, 3), dtype=np.uint8)
    boxed = letterbox(tall, (32, 64), fill=(7, 8, 9))
    assert (boxed[:, :27] == (7, 8, 9)).all() and (boxed[:, 37:] == (7, 8, 9)).all()
    inner = np.asarray(Image.fromarray(tall).resize((10, 32), Image.Resampling.BILINEAR))
    assert np.array_equal(boxed[:, 27:37], inner)


def test_letterbox_of_a_two_to_one_flank_has_no_border():
    rng = np.random.default_rng(0)
    flank = rng.integers(0, 256, (160, 320, 3), dtype=np.uint8)
    boxed = letterbox(flank, (32, 64), fill=(0, 0, 0))
    assert boxed.shape == (32, 64, 3) and boxed.mean() > 60  # no black border


def test_preprocess_normalises_and_pads_with_the_mean():
    white = np.full((100, 100, 3), 255, np.uint8)
    x = preprocess(white, (32, 64), IMAGENET_MEAN, IMAGENET_STD)
    assert x.shape == (3, 32, 64) and x.dtype == torch.float32
    expected = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(x[:, 16, 32], expected, atol=1e-5)
    assert x[:, :, :16].abs().max() < 0.01  # the border is ~0 after normalising


def test_batch_normalisation_is_bit_identical_to_preprocess_and_channels_last():
    """Bulk decoding stops at the uint8 letterbox and normalises whole batches; the inputs
    must be exactly those of preprocess (enrolment, training), or a season run would
    match on other numbers than the gallery was built with."""
    rng = np.random.default_rng(3)
    shapes = [(215, 437, 3), (100, 100, 3), (32, 64, 3), (9, 300, 3)]
    images = [rng.integers(0, 256, s, dtype=np.uint8) for s in shapes]
    boxed = np.stack([letterbox_input(im, (32, 64), IMAGENET_MEAN) for im in images])
    batch = normalise_batch(boxed, IMAGENET_MEAN, IMAGENET_STD)
    assert batch.shape == (4, 3, 32, 64) and batch.dtype == torch.float32
    assert batch.is_contiguous(memory_format=torch.channels_last)
    for x, im in zip(batch, images, strict=True):
        assert torch.equal(x, preprocess(im, (32, 64), IMAGENET_MEAN, IMAGENET_STD))
    with pytest.raises(ValueError, match="uint8"):
        normalise_batch(boxed.astype(np.float32), IMAGENET_MEAN, IMAGENET_STD)


def test_preprocess_refuses_non_rgb():
    with pytest.raises(ValueError, match="RGB"):
        preprocess(np.zeros((8, 8), np.uint8), (32, 64), IMAGENET_MEAN, IMAGENET_STD)


def test_embed_records_gives_unit_vectors_in_order(records, model):
    seen = []
    e = embed_records(model, records, batch_size=3, workers=0, progress=seen.append)
    assert e.shape == (len(records), 16) and e.dtype == np.float32
    assert np.isfinite(e).all()
    assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    assert sum(seen) == len(records)
    images = [load_record_image(r, TINY.input_size) for r in records]
    direct = embed_images(model, images, batch_size=5)
    assert np.allclose(e, direct, atol=1e-5)


def test_reduced_scale_decode_changes_little(records, model):
    # 320x160 photos for a 32x64 input are decoded at reduced scale; close to full decode.
    reduced = embed_records(model, records, workers=0)
    full = embed_images(model, [load_image(r.path) for r in records])
    assert (np.sum(reduced * full, axis=1) > 0.99).all()


def test_worker_processes_give_the_same_result(records, model):
    inline = embed_records(model, records, batch_size=3, workers=0)
    parallel = embed_records(model, records, batch_size=3, workers=2)
    assert np.allclose(inline, parallel, atol=1e-6)


def test_bbox_crop_is_honoured(records, model):
    rec = records[0]
    box = BBox(10, 20, 150, 100)
    boxed = replace(rec, bbox=box)
    e_box, e_full = embed_records(model, [boxed, rec], workers=0)
    expected = embed_images(model, [crop(load_image(rec.path), box)])[0]
    assert np.allclose(e_box, expected, atol=1e-5)
    assert not np.allclose(e_box, e_full, atol=1e-3)


@pytest.mark.parametrize("workers", [0, 2])
def test_bad_image_is_named_in_one_error(records, model, tmp_path, workers):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    with pytest.raises(ImageError, match="broken.jpg") as info:
        embed_records(model, [*records[:2], replace(records[2], path=bad)], workers=workers)
    assert "\n" not in str(info.value)


def test_training_mode_is_restored(records):
    net = build_model(TINY).train()
    embed_records(net, records[:2], workers=0)
    assert net.training


def test_empty_input(model):
    assert embed_records(model, [], workers=2).shape == (0, 16)
    assert embed_images(model, []).shape == (0, 16)
