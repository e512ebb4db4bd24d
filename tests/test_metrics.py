"""Metrics on tiny rankings whose values are worked out by hand in the comments."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reid.errors import ReidError
from reid.metrics import (
    ATRWQuery,
    atrw_plain,
    atrw_ranking_from_similarity,
    average_precision,
    cmc_curve,
    expected_calibration_error,
    open_set_scores,
    rank_of_first_match,
    retrieval_metrics,
    write_atrw_submission,
)

T, F = True, False

# --------------------------------------------------------------------------- average_precision


def test_ap_of_one_ranked_list():
    # matches at ranks 1 and 3: (1/1 + 2/3) / 2 = 5/6
    ap = average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([T, F, T, F]))
    assert ap == pytest.approx(5 / 6)


def test_ap_sorts_by_score_not_by_input_order():
    # same list as above, given shuffled
    ap = average_precision(np.array([0.7, 0.6, 0.9, 0.8]), np.array([T, F, T, F]))
    assert ap == pytest.approx(5 / 6)


def test_ap_constant_scores_is_the_worst_case_whatever_the_order():
    # all tied: non-matches first -> F F T T: (1/3 + 2/4) / 2 = 5/12
    for matches in ([T, F, F, T], [T, T, F, F], [F, F, T, T], [F, T, T, F]):
        ap = average_precision(np.zeros(4), np.array(matches))
        assert ap == pytest.approx(5 / 12)


def test_ap_partial_tie_is_pessimistic():
    # 0.9 F, then the 0.5 tie as F before T, then 0.1 T -> F F T T -> 5/12
    # (an optimistic tie break would give F T F T -> (1/2 + 2/4)/2 = 1/2)
    ap = average_precision(np.array([0.9, 0.5, 0.5, 0.1]), np.array([F, T, F, T]))
    assert ap == pytest.approx(5 / 12)


def test_ap_nan_score_ranks_last():
    # the match has NaN -> rank 3 of 3 -> AP 1/3
    ap = average_precision(np.array([np.nan, 0.5, 0.1]), np.array([T, F, F]))
    assert ap == pytest.approx(1 / 3)


def test_ap_without_match_is_nan():
    assert math.isnan(average_precision(np.array([0.3, 0.2]), np.array([F, F])))


def test_ap_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        average_precision(np.array([0.3, 0.2]), np.array([T]))


# --------------------------------------------------------------------------- Q x G retrieval

# Two queries, four gallery images.
GALLERY = ["a", "b", "a", "c"]
QUERIES = ["a", "b"]
SIM = np.array(
    [
        # q0 (a): g0 .9 (a), g1 .8 (b), g3 .5 (c), g2 .3 (a) -> matches at ranks 1 and 4
        #         AP = (1/1 + 2/4) / 2 = 3/4, first match at rank 1
        [0.9, 0.8, 0.3, 0.5],
        # q1 (b): g2 .6 (a), g1 .4 (b), g0 .2, g3 .1 -> match at rank 2: AP 1/2
        [0.2, 0.4, 0.6, 0.1],
    ]
)


def test_retrieval_metrics_hand_computed():
    m = retrieval_metrics(SIM, QUERIES, GALLERY)
    assert m == pytest.approx({"top1": 0.5, "top5": 1.0, "mAP": (3 / 4 + 1 / 2) / 2, "queries": 2})
    assert isinstance(m["mAP"], float) and isinstance(m["queries"], int)


def test_rank_of_first_match_and_cmc():
    assert rank_of_first_match(SIM, QUERIES, GALLERY).tolist() == [1, 2]
    np.testing.assert_allclose(cmc_curve(SIM, QUERIES, GALLERY, max_rank=3), [0.5, 1.0, 1.0])


def test_other_ks():
    # ranks are 1 and 2: top2 = 1, top1 = 0.5
    m = retrieval_metrics(SIM, QUERIES, GALLERY, ks=(1, 2))
    assert set(m) == {"top1", "top2", "mAP", "queries"}
    assert (m["top1"], m["top2"]) == (0.5, 1.0)


def test_integer_labels_give_the_same_result():
    m = retrieval_metrics(SIM, [0, 1], [0, 1, 0, 2])
    assert m == pytest.approx(retrieval_metrics(SIM, QUERIES, GALLERY))


def test_exclude_removes_entries_from_the_gallery():
    # remove g0 from q0 (as if it were the query itself):
    # q0: g1 .8 (b), g3 .5 (c), g2 .3 (a) -> match at rank 3: AP 1/3
    exclude = np.zeros((2, 4), dtype=bool)
    exclude[0, 0] = True
    m = retrieval_metrics(SIM, QUERIES, GALLERY, exclude=exclude)
    assert m == pytest.approx({"top1": 0.0, "top5": 1.0, "mAP": (1 / 3 + 1 / 2) / 2, "queries": 2})
    assert rank_of_first_match(SIM, QUERIES, GALLERY, exclude).tolist() == [3, 2]
    np.testing.assert_allclose(cmc_curve(SIM, QUERIES, GALLERY, 3, exclude), [0.0, 0.5, 1.0])


def test_queries_without_positive_are_not_counted():
    # q2 ("z") has no positive at all
    sim = np.vstack([SIM, [0.9, 0.9, 0.9, 0.9]])
    m = retrieval_metrics(sim, [*QUERIES, "z"], GALLERY)
    assert m == pytest.approx({"top1": 0.5, "top5": 1.0, "mAP": 0.625, "queries": 2})
    assert rank_of_first_match(sim, [*QUERIES, "z"], GALLERY).tolist() == [1, 2, 0]
    # q1's only positive (g1) excluded: only q0 counts (AP 3/4, rank 1)
    exclude = np.zeros((2, 4), dtype=bool)
    exclude[1, 1] = True
    m = retrieval_metrics(SIM, QUERIES, GALLERY, exclude=exclude)
    assert m == pytest.approx({"top1": 1.0, "top5": 1.0, "mAP": 0.75, "queries": 1})


def test_no_valid_query_gives_zero_metrics_and_zero_queries():
    m = retrieval_metrics(SIM, ["y", "z"], GALLERY)
    assert m == {"top1": 0.0, "top5": 0.0, "mAP": 0.0, "queries": 0}
    assert np.isnan(cmc_curve(SIM, ["y", "z"], GALLERY, 2)).all()


def test_constant_similarity_is_the_worst_case():
    # q0: two matches of 4 -> F F T T -> 5/12, first match at rank 3
    # q1: one match of 4 -> rank 4 -> AP 1/4
    sim = np.zeros((2, 4))
    m = retrieval_metrics(sim, QUERIES, GALLERY)
    assert m == pytest.approx({"top1": 0.0, "top5": 1.0, "mAP": (5 / 12 + 1 / 4) / 2, "queries": 2})
    assert rank_of_first_match(sim, QUERIES, GALLERY).tolist() == [3, 4]


def test_nan_similarity_ranks_lowest_and_inf_highest():
    sim = SIM.copy()
    sim[0, 0] = np.nan  # q0: g1 .8, g3 .5, g2 .3 (a), g0 nan (a) -> (1/3 + 2/4)/2 = 5/12
    sim[1, 1] = np.inf  # q1: its match goes to rank 1 -> AP 1
    m = retrieval_metrics(sim, QUERIES, GALLERY)
    assert m == pytest.approx({"top1": 0.5, "top5": 1.0, "mAP": (5 / 12 + 1) / 2, "queries": 2})


def test_bad_shapes_and_labels_are_refused():
    with pytest.raises(ValueError, match="labels"):
        retrieval_metrics(SIM, ["a"], GALLERY)
    with pytest.raises(ValueError, match="exclude"):
        retrieval_metrics(SIM, QUERIES, GALLERY, exclude=np.zeros((4, 2), dtype=bool))
    with pytest.raises(ValueError, match="None"):
        retrieval_metrics(SIM, ["a", None], GALLERY)


def _naive_ap(scores, matches):
    order = sorted(range(len(scores)), key=lambda j: (-scores[j], bool(matches[j])))
    hits, precisions = 0, []
    for rank, j in enumerate(order, start=1):
        if matches[j]:
            hits += 1
            precisions.append(hits / rank)
    return sum(precisions) / len(precisions) if precisions else math.nan


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 6),
    st.integers(1, 8),
    st.integers(2, 4),
    st.randoms(use_true_random=False),
)
def test_vectorised_metrics_agree_with_a_naive_loop(q, g, n_labels, rnd):
    # small integer scores force many ties; exclude removes random entries
    sim = np.array([[rnd.randint(0, 3) for _ in range(g)] for _ in range(q)], dtype=float)
    ql = [rnd.randrange(n_labels) for _ in range(q)]
    gl = [rnd.randrange(n_labels) for _ in range(g)]
    exclude = np.array([[rnd.random() < 0.2 for _ in range(g)] for _ in range(q)])
    aps, ranks = [], []
    for i in range(q):
        keep = [j for j in range(g) if not exclude[i, j]]
        scores = [sim[i, j] for j in keep]
        matches = [ql[i] == gl[j] for j in keep]
        if not any(matches):
            continue
        ap = _naive_ap(scores, matches)
        assert average_precision(np.array(scores), np.array(matches)) == pytest.approx(ap)
        aps.append(ap)
        best = max(s for s, mt in zip(scores, matches, strict=True) if mt)
        ranks.append(
            1 + sum(1 for s, mt in zip(scores, matches, strict=True) if not mt and s >= best)
        )
    m = retrieval_metrics(sim, ql, gl, ks=(1, 3), exclude=exclude)
    assert m["queries"] == len(aps)
    if aps:
        assert m["mAP"] == pytest.approx(np.mean(aps))
        assert m["top1"] == pytest.approx(np.mean(np.array(ranks) <= 1))
        assert m["top3"] == pytest.approx(np.mean(np.array(ranks) <= 3))
    # pessimistic ties: permuting the gallery changes nothing
    perm = list(range(g))
    rnd.shuffle(perm)
    m2 = retrieval_metrics(
        sim[:, perm], ql, [gl[j] for j in perm], ks=(1, 3), exclude=exclude[:, perm]
    )
    assert m2 == pytest.approx(m)


def test_large_matrix_is_fast_enough():
    rng = np.random.default_rng(0)
    n = 2000
    labels = rng.integers(0, 200, n)
    m = retrieval_metrics(rng.normal(size=(n, n)), labels, labels, exclude=np.eye(n, dtype=bool))
    assert m["queries"] == n
    assert 0 <= m["mAP"] <= 1


# --------------------------------------------------------------------------- ATRW plain

# imgid, query kind, frame (video, camera, frame number), entity
ATRW = [
    ATRWQuery(0, "sing", (1, 0, 100), 7),
    ATRWQuery(1, "sing", (1, 0, 102), 7),  # same tiger, same camera, 2 frames from 0
    ATRWQuery(2, "multi", (2, 1, 50), 7),  # same tiger, other camera
    ATRWQuery(3, "multi", (1, 0, 300), 8),
    ATRWQuery(4, "gallery", (3, 0, 10), -1),  # junk
    ATRWQuery(5, "multi", (1, 0, 104), 8),
]
RANKING = {
    # q0: 1 excluded (near frame), 3 F, 4 junk, 2 T, 5 F -> kept: F T F: AP 1/2, rank 2
    #     (without the exclusions: T F F T F -> AP 3/4 and a top-1 hit)
    0: [1, 3, 4, 2, 5],
    # q1: 0 excluded (near frame), 2 T first -> AP 1, rank 1
    1: [0, 2, 3, 4, 5],
    # q2: 0 and 1 are tiger 7 on another camera: kept. 5 F, 3 F, 0 T, 1 T (4 junk)
    #     -> (1/3 + 2/4) / 2 = 5/12, rank 3
    2: [5, 3, 0, 1, 4],
    # q3: 5 is tiger 8 on the same camera but 196 frames away: a match at rank 1 -> AP 1
    3: [5, 0, 1, 2, 4],
    # q5: its only positive (3) is not in its answers: AP 0, no CMC hit
    5: [1, 0, 2, 4],
    # 4 is not a query: ignored
    4: [0, 1, 2, 3, 5],
}


def test_atrw_plain_hand_computed():
    r = atrw_plain(ATRW, RANKING)
    assert r == pytest.approx(
        {
            "mAP_single": (1 / 2 + 1) / 2,
            "top1_single": 1 / 2,
            "top5_single": 2 / 2,
            "mAP_cross": (5 / 12 + 1 + 0) / 3,
            "top1_cross": 1 / 3,
            "top5_cross": 2 / 3,
            "queries_single": 2,
            "queries_cross": 3,
            "answered_single": 2,
            "answered_cross": 3,
        }
    )


def test_atrw_unanswered_query_counts_in_topk_but_not_in_map():
    ranking = {k: v for k, v in RANKING.items() if k != 3}
    r = atrw_plain(ATRW, ranking)
    assert r["mAP_cross"] == pytest.approx((5 / 12 + 0) / 2)
    assert r["top1_cross"] == 0.0
    assert r["top5_cross"] == pytest.approx(1 / 3)
    assert r["answered_cross"] == 2


def test_atrw_accepts_mappings_and_rejects_unknown_answers():
    dicts = [
        {"imgid": a.imgid, "query": a.query, "frame": list(a.frame), "entityid": a.entityid}
        for a in ATRW
    ]
    assert atrw_plain(dicts, RANKING) == pytest.approx(atrw_plain(ATRW, RANKING))
    with pytest.raises(ReidError, match="99"):
        atrw_plain(ATRW, {0: [1, 99]})


@pytest.mark.parametrize(("frame", "excluded"), [(103, True), (97, True), (104, False)])
def test_atrw_frame_window_is_three(frame, excluded):
    anno = [ATRWQuery(0, "sing", (1, 0, 100), 7), ATRWQuery(1, "x", (1, 0, frame), 7)]
    r = atrw_plain(anno, {0: [1]})
    # excluded: the only positive is gone -> AP 0, no hit; else AP 1 and a top-1 hit
    assert r["mAP_single"] == (0.0 if excluded else 1.0)
    assert r["top1_single"] == (0.0 if excluded else 1.0)


def test_atrw_near_frame_of_another_tiger_is_not_excluded():
    # image 1: tiger 9, same camera, 1 frame away: only the same tiger is excluded, so
    # it stays a non-match ahead of the match -> F T: AP 1/2, no top-1 hit
    anno = [
        ATRWQuery(0, "sing", (1, 0, 100), 7),
        ATRWQuery(1, "x", (1, 0, 101), 9),
        ATRWQuery(2, "x", (5, 0, 100), 7),
    ]
    r = atrw_plain(anno, {0: [1, 2]})
    assert (r["mAP_single"], r["top1_single"], r["top5_single"]) == (0.5, 0.0, 1.0)


def test_atrw_ranking_from_similarity_and_submission(tmp_path):
    ids = [10, 20, 30]
    sim = np.array([[1.0, 0.2, 0.5], [0.2, 1.0, 0.9], [0.5, 0.9, 1.0]])
    ranking = atrw_ranking_from_similarity(ids, sim)
    assert ranking == {10: [30, 20], 20: [30, 10], 30: [20, 10]}
    # ties keep the order of imgids; NaN ranks last
    sim = np.array([[1.0, np.nan, 0.3, 0.3], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    assert atrw_ranking_from_similarity([1, 2, 3, 4], sim)[1] == [3, 4, 2]
    path = tmp_path / "submission.json"
    write_atrw_submission(ranking, path)
    assert json.loads(path.read_text()) == [
        {"query_id": 10, "ans_ids": [30, 20]},
        {"query_id": 20, "ans_ids": [30, 10]},
        {"query_id": 30, "ans_ids": [20, 10]},
    ]


def test_atrw_agrees_with_retrieval_metrics_without_exclusions():
    # distinct cameras, no junk: the ATRW AP is the plain AP over all other images
    rng = np.random.default_rng(3)
    n = 30
    labels = rng.integers(0, 5, n)
    anno = [ATRWQuery(i, "multi", (i, 0, 0), int(labels[i])) for i in range(n)]
    sim = rng.normal(size=(n, n))
    r = atrw_plain(anno, atrw_ranking_from_similarity(list(range(n)), sim))
    exclude = np.eye(n, dtype=bool)
    m = retrieval_metrics(sim, labels, labels, exclude=exclude)
    # queries with no positive get AP 0 in ATRW; retrieval_metrics skips them
    valid = m["queries"]
    assert r["mAP_cross"] == pytest.approx(m["mAP"] * valid / n)
    assert r["top1_cross"] == pytest.approx(m["top1"] * valid / n)
    assert r["top5_cross"] == pytest.approx(m["top5"] * valid / n)


# --------------------------------------------------------------------------- open set


def test_open_set_scores_hand_computed():
    # known A (2 of 3 right), B (1 of 1); unknown C (1 of 2 said new), D (1 of 1)
    true = ["A", "A", "A", "B", "C", "C", "D"]
    pred = ["A", "A", "B", "B", "new", "A", "new"]
    s = open_set_scores(true, pred, known_labels={"A", "B"})
    # BAKS = (2/3 + 1) / 2 = 5/6; BAUS = (1/2 + 1) / 2 = 3/4
    # AKS = 3/4 samples; AUS = 2/3 samples; normalized (mu 0.5) = 17/24
    assert s == pytest.approx(
        {
            "BAKS": 5 / 6,
            "BAUS": 3 / 4,
            "gm": math.sqrt(5 / 6 * 3 / 4),
            "AKS": 3 / 4,
            "AUS": 2 / 3,
            "normalized_accuracy": 17 / 24,
            "n_known": 4,
            "n_unknown": 3,
        }
    )


def test_open_set_predicting_a_known_id_for_an_unknown_is_wrong():
    s = open_set_scores([5, 9], [5, 5], known_labels=[5], new_label=-1)
    assert (s["BAKS"], s["BAUS"], s["gm"]) == (1.0, 0.0, 0.0)


def test_open_set_saying_new_for_a_known_individual_is_wrong():
    s = open_set_scores([5, 5, 9], [5, -1, -1], known_labels=[5], new_label=-1)
    assert (s["BAKS"], s["BAUS"]) == (0.5, 1.0)


def test_open_set_empty_side_is_nan_and_new_label_must_be_new():
    s = open_set_scores(["A", "B"], ["A", "A"], known_labels=["A", "B"])
    assert s["BAKS"] == 0.5
    assert math.isnan(s["BAUS"]) and math.isnan(s["gm"])
    with pytest.raises(ValueError, match="new_label"):
        open_set_scores(["A"], ["A"], known_labels=["A", "new"])


# --------------------------------------------------------------------------- ECE


def test_ece_perfect_calibration_is_zero():
    assert expected_calibration_error([1.0, 1.0, 0.0, 0.0], [1, 1, 0, 0]) == 0.0
    assert expected_calibration_error([0.5] * 4, [1, 0, 1, 0]) == pytest.approx(0.0)


def test_ece_overconfident():
    # says 0.9, right 7 times out of 10 -> |0.7 - 0.9| = 0.2
    assert expected_calibration_error([0.9] * 10, [1] * 7 + [0] * 3) == pytest.approx(0.2)


def test_ece_two_bins_weighted_by_size():
    # bin (0, .5]: p .2, y 0 -> .2 * 2/4; bin (.5, 1]: p .8, y .5 -> .3 * 2/4 -> .25
    ece = expected_calibration_error([0.2, 0.2, 0.8, 0.8], [0, 0, 1, 0], n_bins=2)
    assert ece == pytest.approx(0.25)


def test_ece_bins_are_closed_on_the_right():
    # 0.5 is in (0, .5], 0.6 in (.5, 1]: .5 * .5 + .6 * .5 = .55 (one bin would give .05)
    assert expected_calibration_error([0.5, 0.6], [1, 0], n_bins=2) == pytest.approx(0.55)


def test_ece_rejects_bad_input():
    with pytest.raises(ValueError):
        expected_calibration_error([1.2], [1])
    with pytest.raises(ValueError):
        expected_calibration_error([0.5], [2])
    assert math.isnan(expected_calibration_error([], []))


def test_calibration_noise_is_the_ece_of_a_perfectly_calibrated_predictor():
    from reid.metrics import calibration_noise

    # four queries at p = .5, one bin: ECE = |k/4 - .5| for k ~ Binomial(4, .5), whose
    # mean is (2 * .5 + 8 * .25) / 16 = .1875; 95th percentile .5
    noise = calibration_noise([0.5] * 4, draws=20000, seed=1)
    assert noise["mean"] == pytest.approx(0.1875, abs=0.005)
    assert noise["p95"] == pytest.approx(0.5)
    assert "p_value" not in noise
    # the mean falls as the queries grow (about 1 / sqrt(N))
    assert calibration_noise([0.5] * 400, draws=2000)["mean"] < 0.03
    # certain probabilities have certain outcomes: no noise at all
    sure = calibration_noise([0.0, 1.0, 1.0], observed=0.0)
    assert sure["mean"] == 0.0 and sure["p95"] == 0.0 and sure["p_value"] == 1.0


@pytest.mark.parametrize("n", [300, 1500])  # 1,500 queries: the draws come in two blocks
def test_calibration_noise_bins_each_draw_as_the_ece_does(n):
    """Redrawing the same seeded outcomes and scoring each with expected_calibration_error
    (probabilities spread over all bins, some exactly on bin edges) gives the same
    figures: same bins, same ECE, same p-value."""
    from reid.metrics import calibration_noise

    rng = np.random.default_rng(7)
    p = rng.uniform(0, 1, n)
    p[:15] = np.arange(15) / 15  # on the edges: (lo, hi] bins
    draws = 2000
    y = np.random.default_rng(4).random((draws, n)) < p
    eces = np.array([expected_calibration_error(p, row) for row in y])
    observed = float(np.quantile(eces, 0.9))
    noise = calibration_noise(p, observed=observed, draws=draws, seed=4)
    assert noise["mean"] == pytest.approx(eces.mean(), abs=1e-12)
    assert noise["p95"] == pytest.approx(np.quantile(eces, 0.95), abs=1e-12)
    assert noise["p_value"] == pytest.approx((np.sum(eces >= observed) + 1) / (draws + 1))


def test_calibration_noise_tells_real_miscalibration_from_sampling_noise():
    from reid.metrics import calibration_noise

    rng = np.random.default_rng(0)
    p = rng.uniform(0.5, 1.0, 200)
    honest = rng.uniform(0, 1, 200) < p  # outcomes as likely as said
    boastful = rng.uniform(0, 1, 200) < p - 0.25  # 25 points less likely than said
    for y, significant in ((honest, False), (boastful, True)):
        ece = expected_calibration_error(p, y)
        noise = calibration_noise(p, observed=ece)
        assert 0 < noise["mean"] < noise["p95"] < 0.2
        assert (noise["p_value"] < 0.01) is significant, (ece, noise)
    # an observation above every draw still has p >= 1 / (draws + 1), never 0
    assert calibration_noise(p, observed=1.0, draws=99)["p_value"] == pytest.approx(0.01)


def test_calibration_noise_rejects_bad_input_and_says_p_plainly():
    from reid.metrics import calibration_noise, format_p

    with pytest.raises(ValueError, match="draws"):
        calibration_noise([0.5], draws=0)
    with pytest.raises(ValueError):
        calibration_noise([1.5])
    empty = calibration_noise([], observed=0.1)
    assert math.isnan(empty["mean"]) and math.isnan(empty["p95"]) and math.isnan(empty["p_value"])
    # no ECE to test (no queries): no p-value, not a tiny one
    assert math.isnan(calibration_noise([0.6, 0.7], observed=math.nan)["p_value"])
    assert format_p(0.2299) == "p = 0.23"
    assert format_p(0.0035) == "p = 0.004"
    assert format_p(1 / 2001) == "p < 0.001"
    assert format_p(math.nan) == "p = nan"


def test_reliability_table_is_the_bins_of_ece():
    from reid.metrics import expected_calibration_error, reliability_table

    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 500)
    y = rng.uniform(0, 1, 500) < p**2  # under-confident nowhere, over-confident in the middle
    table = reliability_table(p, y, n_bins=10)
    assert sum(b["n"] for b in table) == 500
    assert all(b["lo"] < b["confidence"] <= b["hi"] for b in table)
    ece = sum(b["n"] / 500 * abs(b["rate"] - b["confidence"]) for b in table)
    assert ece == pytest.approx(expected_calibration_error(p, y, n_bins=10), abs=1e-3)
    assert table[4]["rate"] < table[4]["confidence"]
    hand = reliability_table(np.array([0.0, 0.25, 0.3, 0.9]), np.array([0, 1, 0, 1]), n_bins=2)
    assert hand == [
        {"lo": 0.0, "hi": 0.5, "n": 3, "confidence": 0.1833, "rate": 0.3333},
        {"lo": 0.5, "hi": 1.0, "n": 1, "confidence": 0.9, "rate": 1.0},
    ]
    with pytest.raises(ValueError):
        reliability_table(p, y[:3])
