"""Near-duplicate groups: model-independent signatures, links only within an individual."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from reid.data.records import ImageRecord
from reid.near_duplicates import (
    NEAR_DUPLICATE_THRESHOLD,
    image_signature,
    link_groups,
    near_duplicate_groups,
    same_group,
    signatures,
)


def scene(seed: int, shift: int = 0, noise: float = 0.0, size=(160, 96)) -> np.ndarray:
    """A smooth random 'photo' (blobs of colour); ``shift`` moves it a few pixels, as the
    next frame of a walk would; ``noise`` adds sensor noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(6, 10, 3), dtype=np.uint8)
    image = np.asarray(
        Image.fromarray(coarse).resize((size[0] + 20, size[1]), Image.BICUBIC), np.float64
    )
    image = image[:, shift : shift + size[0]]
    if noise:
        image = image + np.random.default_rng(seed + 1000).normal(0, noise, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def save(folder: Path, name: str, pixels: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    Image.fromarray(pixels).save(path, quality=95)
    return path


def test_signature_is_unit_length_and_tells_frames_from_other_scenes():
    a = image_signature(scene(1))
    assert abs(float(np.linalg.norm(a)) - 1.0) < 1e-5
    next_frame = image_signature(scene(1, shift=2, noise=4.0))
    other = image_signature(scene(2))
    assert float(a @ next_frame) >= NEAR_DUPLICATE_THRESHOLD
    assert float(a @ other) < NEAR_DUPLICATE_THRESHOLD


def test_signature_of_a_file_equals_that_of_its_pixels_up_to_jpeg(tmp_path):
    path = save(tmp_path, "a.png", scene(3))
    assert np.allclose(image_signature(path), image_signature(scene(3)), atol=0.02)


def test_link_groups_are_connected_components():
    linked = np.zeros((5, 5), bool)
    for i, j in [(0, 1), (1, 2), (3, 4)]:
        linked[i, j] = linked[j, i] = True
    assert link_groups(linked).tolist() == [0, 0, 0, 1, 1]
    assert link_groups(np.zeros((3, 3), bool)).tolist() == [0, 1, 2]


def test_groups_link_transitively_within_an_individual_only():
    records = [
        ImageRecord(Path(f"{i}.jpg"), ind, "tiger")
        for i, ind in enumerate(["a", "a", "a", "b", None, None])
    ]
    # 0~1 and 1~2 are near-duplicates (0 and 2 are not: linked through 1); 3 is
    # identical to 0 but another individual; the unidentified 4 and 5 are identical.
    sig = np.array(
        [[1, 0, 0], [0.95, 0.31, 0], [0.8, 0.6, 0], [1, 0, 0], [0, 0, 1], [0, 0, 1]], float
    )
    sig /= np.linalg.norm(sig, axis=1, keepdims=True)
    groups = near_duplicate_groups(records, 0.9, signature=sig)
    assert groups[0] == groups[1] == groups[2]
    assert len({groups[0], groups[3], groups[4], groups[5]}) == 4
    mask = same_group(groups)
    assert mask[0, 2] and mask[2, 0] and not mask[0, 0] and not mask[0, 3] and not mask[4, 5]


def test_signatures_of_records_follow_their_order(tmp_path):
    paths = [save(tmp_path, f"{i}.jpg", scene(i)) for i in range(3)]
    records = [ImageRecord(p, "a", "tiger") for p in paths]
    sig = signatures(records, workers=2)
    assert sig.shape[0] == 3
    assert np.allclose(sig[1], image_signature(paths[1]))
    assert signatures([], workers=1).shape[0] == 0
