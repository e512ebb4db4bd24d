"""bench/bench_local.py's why_wrong: the breakdown of a re-ranking's wrong first answers
that BENCHMARKS.md reports (shortlist miss, no inliers, outranked)."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from bench_local import reranked, topk, why_wrong  # noqa: E402

LABELS = ["a", "a", "b", "b", "c", "c", "d", "d"]
# each query's top 2 by cosine, and the verifier's score of each (inliers + tentative/1000)
SHORTLIST = {
    0: {2: 4.0, 4: 2.0},  # its match (1) is not in the top 2: shortlist miss
    1: {0: 12.0, 6: 0.0},  # right
    2: {3: 0.003, 6: 5.0},  # its match is listed with no inlier, an impostor has 5
    3: {2: 7.0, 7: 1.0},  # right
    4: {5: 3.0, 6: 9.0},  # its match has 3 inliers, an impostor 9: outranked
    5: {4: 8.0, 0: 0.0},  # right
    6: {7: 10.0, 1: 0.0},  # right
    7: {6: 10.0, 1: 0.0},  # right
}


def _setup(exclude_pairs=()):
    n = len(LABELS)
    cosine = np.full((n, n), 0.1)
    np.fill_diagonal(cosine, 1.0)
    local = np.full((n, n), np.nan)
    for i, listed in SHORTLIST.items():
        for rank, (j, score) in enumerate(listed.items()):
            cosine[i, j] = 0.9 - 0.1 * rank
            local[i, j] = score
    exclude = np.eye(n, dtype=bool)
    for i, j in exclude_pairs:
        exclude[i, j] = True
    top = topk(cosine, exclude, 2)
    return cosine, local, top, exclude


def test_each_wrong_first_answer_gets_its_cause():
    cosine, local, top, exclude = _setup()
    out = why_wrong(reranked(cosine, local), local, top, LABELS, exclude)
    assert out == {
        "queries": 8,
        "right": 5,
        "shortlist_miss": 1,
        "no_inliers": 1,
        "outranked": 1,
        "recall_at_k": 0.875,
    }


def test_a_query_whose_only_answer_is_excluded_is_not_counted():
    # query 0's one answer (1) excluded, as a near-duplicate frame would be
    cosine, local, top, exclude = _setup(exclude_pairs=[(0, 1)])
    out = why_wrong(reranked(cosine, local), local, top, LABELS, exclude)
    assert out["queries"] == 7 and out["shortlist_miss"] == 0 and out["right"] == 5
