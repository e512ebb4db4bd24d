"""reid.local.recall: mutual nearest neighbours among local descriptors, and the
shortlist they give (``reid eval --shortlist-local``)."""

import numpy as np
import pytest

from reid.local.recall import (
    descriptor_shortlist,
    mutual_neighbour_counts,
    mutual_neighbour_counts_to,
)
from reid.verify import LocalFeatures


def unit(*rows) -> np.ndarray:
    a = np.asarray(rows, np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def feats(desc: np.ndarray) -> LocalFeatures:
    return LocalFeatures(np.zeros((len(desc), 2), np.float32), desc, 1.0)


E = np.eye(4, dtype=np.float32)


def test_counts_mutual_nearest_neighbours_above_the_similarity():
    a = feats(unit(E[0], E[1], E[2]))
    b = feats(unit(E[0], E[1], [0, 0, 0.6, 0.8]))  # two of a's, and one at cosine 0.6 to e2
    # c: one descriptor between e0 and e1 (cosine 0.71 with each), one near e2 (0.6)
    c = feats(unit([1, 1, 0, 0], [0, 0, 0.75, 1]))
    counts = mutual_neighbour_counts([a, b, c], similarity=0.7)
    assert counts.dtype == np.float32 and counts.shape == (3, 3)
    np.testing.assert_array_equal(counts, counts.T)
    assert np.diag(counts).tolist() == [0, 0, 0]
    assert counts[0, 1] == 2  # e0-e0 and e1-e1; the third pair is mutual at cosine 0.6
    # a-c: c's first is the best of a's e0 (ties: the first) and a's e0's best: 1 match;
    # c's second (cosine 0.6 with e2) is mutual but under 0.7
    assert counts[0, 2] == 1
    assert mutual_neighbour_counts([a, b, c], similarity=0.5)[0, 2] == 2
    assert mutual_neighbour_counts([a, b, c], similarity=0.5)[0, 1] == 3


def test_chunks_and_images_without_keypoints_change_nothing():
    rng = np.random.default_rng(0)
    images = [feats(unit(*rng.normal(size=(int(k), 8)))) for k in rng.integers(3, 20, 9)]
    images.insert(4, feats(np.zeros((0, 8), np.float32)))  # no keypoints at all
    one = mutual_neighbour_counts(images, similarity=0.2, chunk=1)
    many = mutual_neighbour_counts(images, similarity=0.2, chunk=32)
    np.testing.assert_array_equal(one, many)
    assert not one[4].any() and not one[:, 4].any()
    assert one.sum() > 0
    # a pair's count does not depend on which other images are compared
    sub = mutual_neighbour_counts([images[0], images[7]], similarity=0.2)
    assert sub[0, 1] == one[0, 7]
    done: list[int] = []
    mutual_neighbour_counts(images, progress=done.append)
    assert sum(done) == len(images)
    assert mutual_neighbour_counts([]).shape == (0, 0)


def test_one_query_against_a_gallery_is_that_querys_row_in_any_block_size():
    rng = np.random.default_rng(1)
    images = [feats(unit(*rng.normal(size=(int(k), 8)))) for k in rng.integers(3, 20, 9)]
    images.insert(3, feats(np.zeros((0, 8), np.float32)))
    row = mutual_neighbour_counts(images, similarity=0.2)[0, 1:]
    for block in (1, 4, 256):
        got = mutual_neighbour_counts_to(images[0], images[1:], similarity=0.2, block=block)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, row)
    assert row.sum() > 0 and row[2] == 0  # the image without keypoints
    assert mutual_neighbour_counts_to(images[0], []).shape == (0,)
    # only the first rows' pairs are counted when asked
    part = mutual_neighbour_counts(images, similarity=0.2, rows=1)
    np.testing.assert_array_equal(part[0, 1:], row)
    assert not part[1:, 1:].any()


def test_descriptors_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="different lengths"):
        mutual_neighbour_counts([feats(unit(E[0])), feats(unit([1.0, 0.0]))])


def test_the_shortlist_takes_the_most_mutual_neighbours_ties_by_cosine_never_itself():
    counts = np.array([[0, 5, 2, 2], [5, 0, 1, 0], [2, 1, 0, 9], [2, 0, 9, 0]], np.float32)
    cos = np.array(
        [[1.0, 0.1, 0.2, 0.9], [0.1, 1.0, 0.5, 0.3], [0.2, 0.5, 1.0, 0.1], [0.9, 0.3, 0.1, 1.0]]
    )
    mask = descriptor_shortlist(counts, cos, 2)
    assert mask.tolist() == [
        [False, True, False, True],  # 5, then the tie 2 / 2 goes to the higher cosine (3)
        [True, False, True, False],
        [True, False, False, True],  # 9, then 2 (0) above 1 (1)
        [True, False, True, False],
    ]
    assert not np.diag(descriptor_shortlist(counts, cos, 10)).any()
    assert descriptor_shortlist(counts, cos, 10).sum() == 12
    assert not descriptor_shortlist(counts[:1, :1], cos[:1, :1], 3).any()
