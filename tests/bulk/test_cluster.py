"""Clustering unmatched encounters on a given probability; purity and recall by hand."""

import math

import numpy as np
import pytest

from reid.bulk.cluster import Item, candidate_pairs, cluster, proposals, purity_recall


def items(labels, sides=None):
    rng = np.random.default_rng(0)
    centres = {lab: rng.normal(size=8) for lab in set(labels)}
    out = []
    for i, lab in enumerate(labels):
        v = centres[lab] + 0.05 * rng.normal(size=8)
        out.append(
            Item(f"e{i}", "tiger", (sides or ["left"] * len(labels))[i], v / np.linalg.norm(v))
        )
    return out


def test_clusters_follow_the_probability():
    labels = ["a", "a", "b", "a", "b", "c"]
    its = items(labels)
    calls = []

    def p(i, j):
        calls.append((i, j))
        return 0.9 if labels[i] == labels[j] else 0.1

    got = cluster(its, p, threshold=0.5, neighbours=3)
    assert got == [[0, 1, 3], [2, 4], [5]]
    assert len(calls) == len(set(calls))  # each pair scored once


def test_a_left_flank_never_joins_a_right_one():
    its = items(["a", "a"], sides=["left", "right"])
    assert candidate_pairs(its, 5) == []
    assert cluster(its, lambda i, j: 1.0) == [[0], [1]]


def test_average_linkage_stops_chaining():
    # 0-1 and 1-2 are likely, 0-2 is not: average over the cross pairs is below 0.5.
    table = {(0, 1): 0.9, (1, 2): 0.55, (0, 2): 0.0}
    got = cluster(items(["a", "a", "a"]), lambda i, j: table[(i, j)], threshold=0.5)
    assert got == [[0, 1], [2]]


def test_proposals_are_named_in_time_order():
    its = items(["a", "a", "b"])
    props = proposals(
        its, [[0, 1], [2]], lambda it: {"e0": 3, "e1": 1, "e2": 0}[it.id], lambda i, j: 0.8
    )
    assert [p.id for p in props] == ["NEW-T-001", "NEW-T-002"]
    assert props[0].encounters == ("e2",) and props[0].probability is None
    assert props[1].encounters == ("e1", "e0") and props[1].probability == pytest.approx(0.8)


def test_purity_and_recall_by_hand():
    truth = {"1": "x", "2": "x", "3": "y", "4": "x", "5": "y"}
    purity, recall = purity_recall([["1", "2", "3"], ["4"], ["5"]], truth)
    assert purity == pytest.approx(4 / 5)  # 2 of 3, 1, 1
    assert recall == pytest.approx(3 / 5)  # x: 2 of 3 together, y: 1 of 2
    assert all(math.isnan(v) for v in purity_recall([["z"]], truth))
