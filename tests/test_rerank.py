"""k-reciprocal re-ranking: shape, invariants, and a gain on noisy clusters."""

import numpy as np
import pytest

from reid.metrics import retrieval_metrics
from reid.rerank import k_reciprocal_rerank


def clusters(n_ids=12, per=6, dim=16, noise=0.9, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids, dim))
    x = np.repeat(centres, per, axis=0) + noise * rng.normal(size=(n_ids * per, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x @ x.T, np.repeat(np.arange(n_ids), per)


def test_small_inputs_pass_through_and_shapes_are_checked():
    sim = np.array([[1.0, 0.2], [0.2, 1.0]])
    assert np.array_equal(k_reciprocal_rerank(sim), sim)
    with pytest.raises(ValueError, match="square"):
        k_reciprocal_rerank(np.zeros((3, 4)))


def test_well_separated_groups_stay_first_and_result_is_symmetric_in_shape():
    sim, labels = clusters(noise=0.05)
    out = k_reciprocal_rerank(sim)
    assert out.shape == sim.shape
    np.fill_diagonal(out, -np.inf)
    best = out.argmax(axis=1)
    assert (labels[best] == labels).all()


def test_reranking_helps_on_noisy_groups():
    sim, labels = clusters(noise=1.1, seed=3)
    eye = np.eye(len(labels), dtype=bool)  # a query is not its own answer
    before = retrieval_metrics(sim, labels, labels, exclude=eye)["mAP"]
    after = retrieval_metrics(k_reciprocal_rerank(sim), labels, labels, exclude=eye)["mAP"]
    assert after > before + 0.02
