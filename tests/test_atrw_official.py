"""ATRW test protocol: figures equal those of the official scorer on the same ranking.

The official scorer is ``atrwtool/plain.py`` of github.com/cvwc2019/ATRWEvalScript
(``eval_impl``, non-partial: the private split of the test phase). It needs scikit-learn
(not a dependency here), so :func:`official_eval_impl` re-implements it line by line,
with :func:`sklearn_average_precision_score` following scikit-learn 0.21's
``average_precision_score`` (``_binary_clf_curve`` -> ``precision_recall_curve`` ->
``-sum(diff(recall) * precision[:-1])``; no positive: recall 0/0 = nan, AP nan, which
the script counts as AP 0 with no CMC hit). The rankings are built here: random,
perfect, adversarial, ties, truncated, near frames first, unanswered queries. The
ground truth is ``../shared/data/atrw-annotations/gt_test_plain.json`` (skipped when
absent); no images are needed, except for the end-to-end test on a tiny made-up folder.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from test_near_duplicates import save, scene
from typer.testing import CliRunner

from reid.atrw_eval import evaluate_atrw_test, find_atrw_test
from reid.cli import app
from reid.metrics import atrw_plain, atrw_ranking_from_similarity, write_atrw_submission

GT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "atrw-annotations" / (
    "gt_test_plain.json"
)
runner = CliRunner()


# --------------------------------------------------------------------------- the reference


def _binary_clf_curve(y_true, y_score):
    y_true = np.asarray(y_true) == 1
    y_score = np.asarray(y_score, dtype=np.float64)
    desc_score_indices = np.argsort(y_score, kind="mergesort")[::-1]
    y_score = y_score[desc_score_indices]
    y_true = y_true[desc_score_indices]
    distinct_value_indices = np.where(np.diff(y_score))[0]
    threshold_idxs = np.r_[distinct_value_indices, y_true.size - 1]
    tps = np.cumsum(y_true, dtype=np.float64)[threshold_idxs]
    fps = 1 + threshold_idxs - tps
    return fps, tps, y_score[threshold_idxs]


def _precision_recall_curve(y_true, probas_pred):
    fps, tps, thresholds = _binary_clf_curve(y_true, probas_pred)
    precision = tps / (tps + fps)
    precision[np.isnan(precision)] = 0
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = tps / tps[-1]
    last_ind = tps.searchsorted(tps[-1])
    sl = slice(last_ind, None, -1)
    return np.r_[precision[sl], 1], np.r_[recall[sl], 0], thresholds[sl]


def sklearn_average_precision_score(y_true, y_score) -> float:
    precision, recall, _ = _precision_recall_curve(y_true, y_score)
    return -np.sum(np.diff(recall) * np.array(precision)[:-1])


def _exclude(eid, fid, eids, fids):
    eids, fids = np.asarray(eids), np.asarray(fids)
    eid_match = eids == eid
    cid_match = np.logical_and(fid[0] == fids[:, 0], fid[1] == fids[:, 1])
    frame_match = np.abs(fids[:, 2] - fid[2]) <= 3
    mask = np.logical_and(cid_match, eid_match)
    mask = np.logical_and(mask, frame_match)
    junk_images = eids == -1
    return np.logical_or(mask, junk_images)


def official_eval_impl(anno: list[dict], res: list[dict]) -> dict:
    """``eval_impl(anno, res, partial=False)`` of atrwtool/plain.py, on loaded JSON."""
    eids, fids = {}, {}
    query_multi, query_sing = [], []
    for obj in anno:
        imgid, query, frame, entityid = obj["imgid"], obj["query"], obj["frame"], obj["entityid"]
        if query == "multi":
            query_multi.append(imgid)
        elif query == "sing":
            query_sing.append(imgid)
        eids[imgid] = entityid
        fids[imgid] = tuple(frame)
    aps_sing, aps_multi = [], []
    cmc_sing = np.zeros(len(eids), dtype=np.int32)
    cmc_multi = np.zeros(len(eids), dtype=np.int32)
    for ans in res:
        queryid, ans_ids = ans["query_id"], ans["ans_ids"]
        if queryid in query_multi:
            aps = aps_multi
        elif queryid in query_sing:
            aps = aps_sing
        else:
            continue
        entityid = eids[queryid]
        gt_eids = np.asarray([eids[i] for i in ans_ids])
        pid_matches = gt_eids == entityid
        mask = _exclude(entityid, fids[queryid], gt_eids, [fids[i] for i in ans_ids])
        distances = np.arange(len(ans_ids)) + 1.0
        distances[mask] = np.inf
        pid_matches[mask] = False
        scores = 1 / distances
        ap = sklearn_average_precision_score(pid_matches, scores)
        if np.isnan(ap):
            aps.append(0)
            continue
        aps.append(ap)
        k = np.where(pid_matches[np.argsort(distances)])[0][0]
        if queryid in query_multi:
            cmc_multi[k:] += 1
        else:
            cmc_sing[k:] += 1
    return {
        "mAP(single_cam)": np.mean(aps_sing),
        "top-1(single_cam)": cmc_sing[0] / len(query_sing),
        "top-5(single_cam)": cmc_sing[4] / len(query_sing),
        "mAP(cross_cam)": np.mean(aps_multi),
        "top-1(cross_cam)": cmc_multi[0] / len(query_multi),
        "top-5(cross_cam)": cmc_multi[4] / len(query_multi),
    }


OURS = {
    "mAP(single_cam)": "mAP_single",
    "top-1(single_cam)": "top1_single",
    "top-5(single_cam)": "top5_single",
    "mAP(cross_cam)": "mAP_cross",
    "top-1(cross_cam)": "top1_cross",
    "top-5(cross_cam)": "top5_cross",
}


def assert_same_figures(anno: list[dict], ranking: dict, tmp_path: Path) -> dict:
    """Score ``ranking`` with ours and, through the submission file we write, with the
    official reference; the six figures must agree."""
    path = tmp_path / "submission.json"
    write_atrw_submission(ranking, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        official = official_eval_impl(anno, json.loads(path.read_text()))
    ours = atrw_plain(anno, ranking)
    for key, name in OURS.items():
        assert ours[name] == pytest.approx(float(official[key]), abs=1e-12), key
    return ours


# --------------------------------------------------------------------------- the rankings


@pytest.fixture(scope="module")
def gt() -> list[dict]:
    if not GT.is_file():
        pytest.skip(f"ATRW annotations not present at {GT}")
    return json.loads(GT.read_text())


def _arrays(gt):
    ids = np.array([o["imgid"] for o in gt])
    ent = np.array([o["entityid"] for o in gt])
    frames = np.array([o["frame"] for o in gt])
    return ids, ent, frames


def test_random_ranking(gt, tmp_path):
    ids, _, _ = _arrays(gt)
    sim = np.random.default_rng(0).normal(size=(len(ids), len(ids)))
    ours = assert_same_figures(gt, atrw_ranking_from_similarity(ids, sim), tmp_path)
    assert ours["mAP_cross"] < 0.1


def test_perfect_ranking(gt, tmp_path):
    ids, ent, _ = _arrays(gt)
    noise = np.random.default_rng(2).random((len(ids), len(ids))) * 0.5
    sim = (ent[:, None] == ent[None, :]) + noise
    ours = assert_same_figures(gt, atrw_ranking_from_similarity(ids, sim), tmp_path)
    assert ours["mAP_single"] == ours["mAP_cross"] == 1.0
    assert ours["top1_single"] == ours["top1_cross"] == 1.0


def test_adversarial_ranking_same_tiger_last(gt, tmp_path):
    ids, ent, _ = _arrays(gt)
    noise = np.random.default_rng(3).random((len(ids), len(ids))) * 0.5
    sim = -1.0 * (ent[:, None] == ent[None, :]) + noise
    ours = assert_same_figures(gt, atrw_ranking_from_similarity(ids, sim), tmp_path)
    assert ours["top5_single"] == ours["top5_cross"] == 0.0


def test_mixed_rankings_near_frames_ties_truncated_unanswered(gt, tmp_path):
    """Per query, one of: the excluded images (same tiger, camera, +-3 frames) first,
    then the same camera by frame distance (the protocol must skip them); constant
    scores (file order); the perfect ranking reversed; shuffled; the top 5 only (often
    no match: AP 0, no hit). Every tenth query is not answered (counts in top-k, not in
    mAP)."""
    ids, ent, frames = _arrays(gt)
    rng = np.random.default_rng(4)
    same_cam = (frames[:, None, 0] == frames[None, :, 0]) & (
        frames[:, None, 1] == frames[None, :, 1]
    )
    gap = np.abs(frames[:, None, 2] - frames[None, :, 2])
    near = same_cam & (ent[:, None] == ent[None, :]) & (gap <= 3)
    by_frames = atrw_ranking_from_similarity(ids, 10.0 * near + same_cam / (1.0 + gap))
    constant = atrw_ranking_from_similarity(ids, np.zeros((len(ids),) * 2))
    noisy = (ent[:, None] == ent[None, :]) + rng.random((len(ids),) * 2)
    perfect = atrw_ranking_from_similarity(ids, noisy)
    ranking = {}
    for k, q in enumerate(ids.tolist()):
        kind = k % 5
        if k % 10 == 9:
            continue
        if kind == 0:
            ranking[q] = by_frames[q]
        elif kind == 1:
            ranking[q] = constant[q]
        elif kind == 2:
            ranking[q] = perfect[q][::-1]
        elif kind == 3:
            ranking[q] = [perfect[q][i] for i in rng.permutation(len(perfect[q]))]
        else:
            ranking[q] = perfect[q][:5] if k % 2 else by_frames[q][:5]
    ours = assert_same_figures(gt, ranking, tmp_path)
    assert ours["answered_cross"] < ours["queries_cross"]


# --------------------------------------------------------------------------- reid eval on a folder


def _tiny_test_folder(root: Path, images_in_test: bool) -> list[dict]:
    """A made-up gt_test_plain.json of 4 tigers x 3 photos (2 cameras) with images that
    show one scene per tiger, beside the JSON or in test/."""
    anno = []
    imgid = 0
    for tiger in range(4):
        for k in range(3):
            kind = "sing" if k < 2 else "multi"
            camera = [tiger + 1, 0] if k < 2 else [tiger + 10, 1]
            anno.append(
                {"imgid": imgid, "query": kind, "frame": [*camera, 10 * k], "entityid": tiger}
            )
            folder = root / "test" if images_in_test else root
            save(folder, f"{imgid:06d}.jpg", scene(50 + tiger, shift=k, noise=2.0))
            imgid += 1
    (root / "gt_test_plain.json").write_text(json.dumps(anno))
    return anno


def scene_embedding(records):
    assert all(r.individual_id is None for r in records)  # no test label reaches it
    from reid.near_duplicates import image_signature

    return np.stack([image_signature(r.path) for r in records])


@pytest.mark.parametrize("images_in_test", [False, True])
def test_evaluate_atrw_test_folder_matches_the_official_scorer(tmp_path, images_in_test):
    anno = _tiny_test_folder(tmp_path, images_in_test)
    found = find_atrw_test(tmp_path)
    assert found == (
        tmp_path / "gt_test_plain.json",
        tmp_path / "test" if images_in_test else tmp_path,
    )
    out = tmp_path / "submission.json"
    result = evaluate_atrw_test(tmp_path, scene_embedding, submission=out)
    official = official_eval_impl(anno, json.loads(out.read_text()))
    for key, name in OURS.items():
        assert result[name] == pytest.approx(float(official[key])), key
    assert result["images"] == 12 and result["top1_cross"] == 1.0
    submitted = json.loads(out.read_text())
    assert len(submitted) == 12 and all(len(s["ans_ids"]) == 11 for s in submitted)


def test_reid_eval_prints_the_official_figures_and_writes_the_submission(tmp_path):
    _tiny_test_folder(tmp_path, images_in_test=True)
    out = tmp_path / "sub.json"
    result = runner.invoke(
        app, ["eval", str(tmp_path), "--method", "sift", "--submission", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output[result.output.index("{") :])
    assert {"mAP_single", "top1_single", "top5_single", "mAP_cross", "top1_cross",
            "top5_cross"} <= set(data)  # fmt: skip
    assert data["queries_single"] == 8 and data["queries_cross"] == 4
    assert len(json.loads(out.read_text())) == 12
    text = runner.invoke(app, ["eval", str(tmp_path), "--method", "sift"])
    assert text.exit_code == 0, text.output
    assert "single-camera mAP" in text.output and "cross-camera top-5" in text.output


def test_fused_on_the_atrw_test_needs_weights_fitted_elsewhere(tmp_path):
    _tiny_test_folder(tmp_path, images_in_test=False)
    result = runner.invoke(app, ["eval", str(tmp_path), "--method", "fused"])
    assert result.exit_code != 0
    assert "--fusion-fit" in result.output
