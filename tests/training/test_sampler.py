"""P×K batches: P identities × K images, seeded per epoch, disjoint shares per rank."""

import random
from collections import Counter

import numpy as np
import pytest

from training.sampler import PKBatchSampler

# 7 classes of 1..7 images: some have fewer than K = 4
LABELS = np.repeat(np.arange(7), np.arange(1, 8))


def check_pk(batch, labels, p, k):
    classes = Counter(int(labels[i]) for i in batch)
    assert len(batch) == p * k
    assert len(classes) == p
    assert all(n == k for n in classes.values())


@pytest.mark.parametrize(("p", "k"), [(3, 4), (7, 2), (1, 1), (5, 3)])
def test_every_batch_has_p_identities_of_k_images(p, k):
    sampler = PKBatchSampler(LABELS, p, k, seed=0, batches_per_epoch=20)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 20
        for batch in batches:
            check_pk(batch, LABELS, p, k)


def test_images_are_distinct_when_a_class_has_k_and_all_used_when_it_has_fewer():
    k = 4
    sampler = PKBatchSampler(LABELS, 3, k, seed=1, batches_per_epoch=30)
    for batch in sampler:
        for c in {int(LABELS[i]) for i in batch}:
            picked = [i for i in batch if LABELS[i] == c]
            members = {i for i, label in enumerate(LABELS) if label == c}
            assert set(picked) <= members
            if len(members) >= k:
                assert len(set(picked)) == k  # without replacement
            else:
                assert set(picked) == members  # every image once, the rest repeats


def test_identities_are_visited_evenly():
    sampler = PKBatchSampler(LABELS, 3, 2, seed=2, batches_per_epoch=14)  # 42 = 6 rounds of 7
    seen = Counter()
    for batch in sampler:
        seen.update({int(LABELS[i]) for i in batch})
    assert max(seen.values()) - min(seen.values()) <= 1


def test_same_seed_and_epoch_same_batches_whatever_the_global_rng():
    a = PKBatchSampler(LABELS, 3, 4, seed=7)
    b = PKBatchSampler(LABELS, 3, 4, seed=7)
    a.set_epoch(3)
    b.set_epoch(3)
    random.seed(1)
    np.random.seed(1)
    first = list(a)
    random.seed(2)
    np.random.seed(2)
    assert list(b) == first
    b.set_epoch(4)
    assert list(b) != first
    assert list(PKBatchSampler(LABELS, 3, 4, seed=8, batches_per_epoch=len(a))) != list(
        PKBatchSampler(LABELS, 3, 4, seed=7, batches_per_epoch=len(a))
    )


def test_ranks_get_disjoint_shares_of_the_same_epoch():
    world = 3
    ranks = [
        PKBatchSampler(LABELS, 2, 3, seed=4, batches_per_epoch=5, rank=r, world_size=world)
        for r in range(world)
    ]
    for s in ranks:
        s.set_epoch(2)
    shares = [list(s) for s in ranks]
    assert all(len(share) == 5 for share in shares)  # every rank runs the same steps
    everything = ranks[0].all_batches(2)
    assert len(everything) == 5 * world
    # rank r takes batches r, r + world, ...: together exactly every batch, none twice
    positions = [[everything.index(b) for b in share] for share in shares]
    for r, pos in enumerate(positions):
        assert pos == list(range(r, 5 * world, world))
    for batch in everything:
        check_pk(batch, LABELS, 2, 3)


def test_default_length_counts_images_per_rank():
    assert len(PKBatchSampler(LABELS, 2, 2, seed=0)) == len(LABELS) // 4
    assert len(PKBatchSampler(LABELS, 2, 2, seed=0, world_size=2)) == len(LABELS) // 8
    assert len(PKBatchSampler([0, 1], 2, 4, seed=0)) == 1


def test_too_few_identities_is_a_clear_error():
    with pytest.raises(ValueError, match="only 7"):
        PKBatchSampler(LABELS, 8, 2, seed=0)


def test_mixed_batches_take_p_identities_from_each_part():
    from training.sampler import MixedPKBatchSampler

    labels = np.repeat(np.arange(30), 5)  # classes 0-9: the catalogue, 10-29: rehearsal
    main = np.flatnonzero(labels < 10)
    rehearsal = np.flatnonzero(labels >= 10)
    sampler = MixedPKBatchSampler(labels, [(main, 4), (rehearsal, 2)], 3, seed=7)
    assert len(sampler) == len(main) // (4 * 3)  # the epoch counts the catalogue only
    for batch in sampler.all_batches(0):
        classes = labels[batch]
        assert len(batch) == (4 + 2) * 3
        assert len(set(classes[classes < 10])) == 4 and len(set(classes[classes >= 10])) == 2
        assert all(np.count_nonzero(classes == c) == 3 for c in set(classes))
    assert sampler.all_batches(1) == MixedPKBatchSampler(
        labels, [(main, 4), (rehearsal, 2)], 3, seed=7).all_batches(1)  # fmt: skip
    assert sampler.all_batches(0) != sampler.all_batches(1)
