"""Re-identification metrics as pure numpy functions.

Conventions shared by every function here:

- A similarity matrix is ``Q x G`` (queries x gallery), higher = more similar. ``NaN`` is
  the lowest possible score (a method that could not compare two images ranks them last);
  ``+inf``/``-inf`` are ordinary extreme scores.
- Ties are broken *pessimistically*: among equal scores, non-matches rank before matches.
  A method that outputs constant scores therefore gets the worst ranking, whatever the
  gallery order, instead of being rewarded by it.
- ``exclude`` (``Q x G`` bool) removes entries from a query's gallery (typically the
  query itself). A query with no positive left in its gallery is not *valid* and is not
  counted in any average.
- Labels are any hashable values (``str`` or ``int``); ``None`` is refused because an
  unidentified image matches nothing, not every other unidentified image.

Also here: the ATRW "plain" re-identification protocol (:func:`atrw_plain`, a faithful
port of the official CVWC2019 evaluation script), the open-set scores BAKS/BAUS of
WildlifeDatasets/AnimalCLEF, and the expected calibration error.
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reid.errors import ReidError

__all__ = [
    "ATRWQuery",
    "atrw_plain",
    "atrw_ranking_from_similarity",
    "average_precision",
    "cmc_curve",
    "expected_calibration_error",
    "open_set_scores",
    "rank_of_first_match",
    "read_atrw_annotations",
    "retrieval_metrics",
    "write_atrw_submission",
]


# --------------------------------------------------------------------------- helpers


def _scores(x: Any) -> np.ndarray:
    """Float64 copy with NaN replaced by -inf (NaN = the lowest score)."""
    s = np.array(x, dtype=np.float64)
    s[np.isnan(s)] = -np.inf
    return s


def _encode_labels(
    query_labels: Sequence[Hashable], gallery_labels: Sequence[Hashable]
) -> tuple[np.ndarray, np.ndarray]:
    """Map labels of both lists to shared integer codes (works for str, int, mixed)."""
    codes: dict[Hashable, int] = {}
    out = []
    for labels in (query_labels, gallery_labels):
        enc = np.empty(len(labels), dtype=np.int64)
        for i, lab in enumerate(labels):
            if lab is None:
                raise ValueError(
                    "a label is None: give unidentified images a label of their own "
                    "(they can never be a correct match)"
                )
            if isinstance(lab, np.generic):
                lab = lab.item()
            enc[i] = codes.setdefault(lab, len(codes))
        out.append(enc)
    return out[0], out[1]


def _prepare(
    similarity: Any,
    query_labels: Sequence[Hashable],
    gallery_labels: Sequence[Hashable],
    exclude: Any | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate inputs; return (scores with NaN=-inf, is_match, valid) as Q x G arrays."""
    sim = _scores(similarity)
    if sim.ndim != 2:
        raise ValueError(f"similarity must be a Q x G matrix, got shape {sim.shape}")
    q, g = sim.shape
    if len(query_labels) != q or len(gallery_labels) != g:
        raise ValueError(
            f"similarity is {q} x {g} but there are {len(query_labels)} query labels "
            f"and {len(gallery_labels)} gallery labels"
        )
    ql, gl = _encode_labels(query_labels, gallery_labels)
    is_match = ql[:, None] == gl[None, :]
    if exclude is None:
        valid = np.ones((q, g), dtype=bool)
    else:
        ex = np.asarray(exclude)
        if ex.shape != (q, g):
            raise ValueError(f"exclude has shape {ex.shape}, expected {(q, g)}")
        if ex.dtype != np.bool_:
            raise ValueError(f"exclude must be a boolean mask, got dtype {ex.dtype}")
        valid = ~ex
    return sim, is_match & valid, valid


# --------------------------------------------------------------------------- single ranked list


def average_precision(scores: np.ndarray, is_match: np.ndarray) -> float:
    """Average precision of one ranked list (non-interpolated, as in re-id benchmarks).

    ``scores`` (higher = better, NaN = lowest) and ``is_match`` (bool) are 1-D, one entry
    per gallery item. The list is sorted by score, ties broken pessimistically
    (non-matches first); AP is the mean, over the matches, of the precision at each
    match's rank. Returns ``nan`` when there is no match: AP is undefined, and callers
    skip such queries.

    Example: matches at ranks 1 and 3 of 4 give AP = (1/1 + 2/3) / 2 = 5/6.
    """
    s = _scores(scores).ravel()
    m = np.asarray(is_match, dtype=bool).ravel()
    if s.shape != m.shape:
        raise ValueError(f"scores has {s.size} entries but is_match has {m.size}")
    n_pos = int(m.sum())
    if n_pos == 0:
        return math.nan
    # lexsort: the last key is primary. Score descending, then non-matches first.
    order = np.lexsort((m, -s))
    hits = m[order]
    ranks = np.flatnonzero(hits) + 1
    precision_at_hits = np.arange(1, n_pos + 1) / ranks
    return float(precision_at_hits.mean())


# --------------------------------------------------------------------------- Q x G retrieval


def rank_of_first_match(
    similarity: np.ndarray,
    query_labels: Sequence[Hashable],
    gallery_labels: Sequence[Hashable],
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """1-based rank of each query's first correct match; 0 for a query without a positive.

    The rank counts only gallery entries not excluded; a non-match that ties with the
    best-scoring match ranks before it (pessimistic ties). ``similarity`` is ``Q x G``.
    """
    sim, pos, valid = _prepare(similarity, query_labels, gallery_labels, exclude)
    has_pos = pos.any(axis=1)
    best_pos = np.where(pos, sim, -np.inf).max(axis=1, initial=-np.inf)
    neg = valid & ~pos
    ahead = (neg & (sim >= best_pos[:, None])).sum(axis=1)
    return np.where(has_pos, ahead + 1, 0).astype(np.int64)


def cmc_curve(
    similarity: np.ndarray,
    query_labels: Sequence[Hashable],
    gallery_labels: Sequence[Hashable],
    max_rank: int,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Cumulative match characteristic: ``cmc[k-1]`` = fraction of valid queries whose
    first correct match is at rank <= k, for k = 1..max_rank.

    Queries without a positive (after ``exclude``) are not counted. All ``nan`` when no
    query is valid.
    """
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    ranks = rank_of_first_match(similarity, query_labels, gallery_labels, exclude)
    ranks = ranks[ranks > 0]
    if ranks.size == 0:
        return np.full(max_rank, np.nan)
    counts = np.bincount(np.minimum(ranks, max_rank + 1), minlength=max_rank + 2)
    return np.cumsum(counts[1 : max_rank + 1]) / ranks.size


def _average_precisions(sim: np.ndarray, pos: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """AP of every row (nan where a row has no positive), vectorised over rows."""
    q, g = sim.shape
    if g == 0:
        return np.full(q, np.nan)
    # Valid entries first, then score descending, then non-matches before matches
    # (lexsort: the last key is the primary one).
    order = np.lexsort((pos, -sim, ~valid), axis=1)
    hits = np.take_along_axis(pos, order, axis=1)
    cum_hits = np.cumsum(hits, axis=1)
    rank = np.arange(1, g + 1)
    # Excluded entries are sorted last and never hits, so the rank of a hit counts
    # only valid entries.
    precision_sum = np.where(hits, cum_hits / rank, 0.0).sum(axis=1)
    n_pos = cum_hits[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_pos > 0, precision_sum / n_pos, np.nan)


def retrieval_metrics(
    similarity: np.ndarray,
    query_labels: Sequence[Hashable],
    gallery_labels: Sequence[Hashable],
    ks: Iterable[int] = (1, 5),
    exclude: np.ndarray | None = None,
) -> dict[str, float | int]:
    """Top-k accuracy and mAP of a ``Q x G`` similarity matrix.

    Returns ``{"top1": ..., "top5": ..., "mAP": ..., "queries": n_valid}`` (one
    ``top{k}`` per k in ``ks``). Entries where ``exclude`` is True are removed from that
    query's gallery; queries with no positive left are not counted. Ties are broken
    pessimistically, NaN similarity ranks lowest. Metrics are plain floats in [0, 1];
    when no query is valid they are ``0.0`` with ``queries == 0`` (so a weighted average
    over groups by ``queries`` stays correct).
    """
    ks = tuple(int(k) for k in ks)
    if any(k < 1 for k in ks):
        raise ValueError(f"every k must be >= 1, got {ks}")
    sim, pos, valid = _prepare(similarity, query_labels, gallery_labels, exclude)
    has_pos = pos.any(axis=1)
    n_valid = int(has_pos.sum())
    out: dict[str, float | int] = {}
    if n_valid == 0:
        out.update({f"top{k}": 0.0 for k in ks})
        out["mAP"] = 0.0
        out["queries"] = 0
        return out
    sim_v, pos_v, valid_v = sim[has_pos], pos[has_pos], valid[has_pos]
    best_pos = np.where(pos_v, sim_v, -np.inf).max(axis=1)
    ranks = (valid_v & ~pos_v & (sim_v >= best_pos[:, None])).sum(axis=1) + 1
    for k in ks:
        out[f"top{k}"] = float(np.mean(ranks <= k))
    out["mAP"] = float(np.mean(_average_precisions(sim_v, pos_v, valid_v)))
    out["queries"] = n_valid
    return out


# --------------------------------------------------------------------------- ATRW plain re-id


@dataclass(frozen=True, slots=True)
class ATRWQuery:
    """One image of the ATRW plain re-id test set (an entry of ``gt_test_plain.json``).

    ``query``: ``"sing"`` (single-camera query), ``"multi"`` (cross-camera query) or
    anything else (gallery only). ``frame``: (video, camera, frame number); two images
    with equal video and camera come from the same camera. ``entityid``: the tiger,
    ``-1`` for a junk image.
    """

    imgid: int
    query: str
    frame: tuple[int, int, int]
    entityid: int


def _as_atrw(obj: Any) -> ATRWQuery:
    if isinstance(obj, ATRWQuery):
        return obj
    get = obj.__getitem__ if isinstance(obj, Mapping) else lambda k: getattr(obj, k)
    try:
        frame = tuple(int(v) for v in get("frame"))
        if len(frame) != 3:
            raise ValueError(f"frame {frame} does not have 3 numbers")
        return ATRWQuery(int(get("imgid")), str(get("query")), frame, int(get("entityid")))
    except (KeyError, AttributeError, TypeError, ValueError) as e:
        raise ReidError(f"ATRW annotation {obj!r} is malformed: {e}") from None


def read_atrw_annotations(path: str | Path) -> list[ATRWQuery]:
    """Read the official ``gt_test_plain.json`` (a list of imgid/query/frame/entityid)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ReidError(f"cannot read ATRW annotations {path}: {e}") from None
    if not isinstance(data, list):
        raise ReidError(f"ATRW annotations {path} are not a JSON list")
    return [_as_atrw(o) for o in data]


def _sklearn_average_precision(y_true: np.ndarray, scores: np.ndarray) -> float:
    """``sklearn.metrics.average_precision_score`` for one binary problem (numpy only).

    Step-wise AP over distinct score thresholds: sum of (R_n - R_{n-1}) * P_n. Returns
    nan when there is no positive (as sklearn did when the ATRW script was written).
    """
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], y_true[order].astype(np.float64)
    if y.sum() == 0:
        return math.nan
    last_of_threshold = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]
    tps = np.cumsum(y)[last_of_threshold]
    fps = (last_of_threshold + 1) - tps
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _atrw_excluded(
    q: ATRWQuery, eids: np.ndarray, fids: np.ndarray
) -> np.ndarray:
    """Official ``exclude``: same tiger AND same camera AND |frame difference| <= 3, or
    a junk image (entityid -1). ``eids`` (G) and ``fids`` (G x 3) are the answers'."""
    same_camera = (fids[:, 0] == q.frame[0]) & (fids[:, 1] == q.frame[1])
    near_frame = np.abs(fids[:, 2] - q.frame[2]) <= 3
    return ((eids == q.entityid) & same_camera & near_frame) | (eids == -1)


def atrw_plain(
    records: Iterable[Any], ranking: Mapping[int, Sequence[int]]
) -> dict[str, float | int]:
    """Score a ranking with the ATRW plain re-id protocol (official CVWC2019 script).

    ``records``: every test image, as :class:`ATRWQuery`, mappings or objects with
    ``imgid``, ``query``, ``frame`` (a, b, n) and ``entityid``. ``ranking``: for each query
    imgid, the answer imgids, best first (a submission; see
    :func:`atrw_ranking_from_similarity`).

    Exactly as ``atrwtool/plain.py`` (github.com/cvwc2019/ATRWEvalScript), per answered
    query of kind ``"sing"`` (single-camera) or ``"multi"`` (cross-camera):

    - answers of the same tiger from the same camera within 3 frames, and junk images
      (entityid -1), are excluded: score 0, never a match;
    - AP = sklearn ``average_precision_score`` of the matches against scores 1/rank;
      a query with no match among its answers gets AP 0 and no CMC hit;
    - CMC: rank of the first match among the non-excluded answers.

    mAP is the mean over the answered queries of a kind (``nan`` if none); top-1/top-5 are
    hit counts divided by *all* queries of that kind, answered or not. Rankings of ids
    that are not queries are ignored, as by the script; an answer id that is not in
    ``records`` raises :class:`ReidError`.

    Returns ``mAP_single``, ``top1_single``, ``top5_single``, ``mAP_cross``,
    ``top1_cross``, ``top5_cross``, and the counts ``queries_single``, ``queries_cross``
    (queries of each kind) and ``answered_single``, ``answered_cross``.
    """
    anno = {}
    for obj in records:
        r = _as_atrw(obj)
        anno[r.imgid] = r
    position = {imgid: k for k, imgid in enumerate(anno)}
    all_eids = np.array([r.entityid for r in anno.values()], dtype=np.int64)
    all_fids = np.array([r.frame for r in anno.values()], dtype=np.int64).reshape(-1, 3)
    kinds = {"sing": "single", "multi": "cross"}
    n_queries = {k: sum(1 for r in anno.values() if r.query == k) for k in kinds}
    aps: dict[str, list[float]] = {k: [] for k in kinds}
    hits_at = {k: np.zeros(2, dtype=np.int64) for k in kinds}  # hits at rank 1, <= 5
    for query_id, answers in ranking.items():
        q = anno.get(int(query_id))
        if q is None or q.query not in kinds:
            continue
        try:
            idx = np.array([position[int(a)] for a in answers], dtype=np.int64)
        except KeyError as e:
            raise ReidError(
                f"the ranking of query {query_id} has answer {e.args[0]}, "
                "which is not an image of the test set"
            ) from None
        eids, fids = all_eids[idx], all_fids[idx]
        excluded = _atrw_excluded(q, eids, fids)
        matches = (eids == q.entityid) & ~excluded
        scores = np.where(excluded, 0.0, 1.0 / (np.arange(len(idx)) + 1.0))
        ap = _sklearn_average_precision(matches, scores) if len(idx) else math.nan
        if math.isnan(ap):
            aps[q.query].append(0.0)
            continue
        aps[q.query].append(ap)
        first = int(np.flatnonzero(matches[~excluded])[0])  # 0-based rank of first match
        hits_at[q.query] += (first < 1, first < 5)
    out: dict[str, float | int] = {}
    for kind, name in kinds.items():
        n = n_queries[kind]
        out[f"mAP_{name}"] = float(np.mean(aps[kind])) if aps[kind] else math.nan
        out[f"top1_{name}"] = float(hits_at[kind][0] / n) if n else math.nan
        out[f"top5_{name}"] = float(hits_at[kind][1] / n) if n else math.nan
        out[f"queries_{name}"] = n
        out[f"answered_{name}"] = len(aps[kind])
    return out


def atrw_ranking_from_similarity(
    imgids: Sequence[int], similarity: np.ndarray
) -> dict[int, list[int]]:
    """For each image, every *other* image ranked by similarity (best first).

    ``similarity`` is ``N x N`` over ``imgids``; NaN ranks last; equal scores keep the
    order of ``imgids``. The result is what :func:`write_atrw_submission` writes.
    """
    sim = _scores(similarity)
    n = len(imgids)
    if sim.shape != (n, n):
        raise ValueError(f"similarity has shape {sim.shape}, expected {(n, n)}")
    ids = np.asarray([int(i) for i in imgids], dtype=np.int64)
    if np.unique(ids).size != n:
        raise ValueError("imgids has duplicates")
    self_mask = np.eye(n, dtype=bool)
    order = np.lexsort((np.broadcast_to(np.arange(n), (n, n)), -sim, self_mask), axis=1)
    ranked = ids[order[:, : n - 1]] if n > 1 else np.empty((n, 0), dtype=np.int64)
    return {int(ids[i]): ranked[i].tolist() for i in range(n)}


def write_atrw_submission(ranking: Mapping[int, Sequence[int]], path: str | Path) -> None:
    """Write a ranking as the official submission: ``[{"query_id": id, "ans_ids": [...]}]``."""
    rows = [
        {"query_id": int(q), "ans_ids": [int(a) for a in answers]} for q, answers in ranking.items()
    ]
    Path(path).write_text(json.dumps(rows), encoding="utf-8")


# --------------------------------------------------------------------------- open set


def open_set_scores(
    true_labels: Sequence[Hashable],
    predicted_labels: Sequence[Hashable],
    known_labels: Iterable[Hashable],
    new_label: Hashable = "new",
    mu: float = 0.5,
) -> dict[str, float | int]:
    """Open-set identification scores (WildlifeDatasets / AnimalCLEF definitions).

    A sample is *known* when its true individual is in ``known_labels`` (the gallery),
    *unknown* otherwise; the correct answer for an unknown sample is ``new_label``.

    - ``BAKS``: balanced accuracy on known samples: per known individual, the fraction of
      its samples predicted as exactly that individual, averaged over individuals.
    - ``BAUS``: balanced accuracy on unknown samples: per unknown individual, the fraction
      of its samples predicted as ``new_label``, averaged over individuals.
    - ``gm``: the geometric mean ``sqrt(BAKS * BAUS)``, the AnimalCLEF 2025 score (its
      scorer calls it "normalized").
    - ``AKS``, ``AUS``: the plain (per-sample) accuracies on known / unknown samples, and
      ``normalized_accuracy = mu * AKS + (1 - mu) * AUS`` as in wildlife-datasets.
    - ``n_known``, ``n_unknown``: sample counts.

    A score over an empty set is ``nan`` (and so is any combination using it); the
    AnimalCLEF scorer replaces such nans by 0 before averaging datasets.
    Source: Čermák et al., "WildlifeDatasets", WACV 2024, and
    ``wildlife_datasets/metrics/metrics.py`` (``BAKS``, ``BAUS``, ``normalized_accuracy``).
    """
    if len(true_labels) != len(predicted_labels):
        raise ValueError(f"{len(true_labels)} true labels but {len(predicted_labels)} predictions")
    known = set(known_labels)
    if new_label in known:
        raise ValueError(f"new_label {new_label!r} is also a known individual")
    per_known: dict[Hashable, list[bool]] = {}
    per_unknown: dict[Hashable, list[bool]] = {}
    for t, p in zip(true_labels, predicted_labels, strict=True):
        if t in known:
            per_known.setdefault(t, []).append(p == t)
        else:
            per_unknown.setdefault(t, []).append(p == new_label)

    def balanced(groups: dict[Hashable, list[bool]]) -> float:
        return float(np.mean([np.mean(v) for v in groups.values()])) if groups else math.nan

    def plain(groups: dict[Hashable, list[bool]]) -> float:
        flat = [x for v in groups.values() for x in v]
        return float(np.mean(flat)) if flat else math.nan

    baks, baus = balanced(per_known), balanced(per_unknown)
    aks, aus = plain(per_known), plain(per_unknown)
    return {
        "BAKS": baks,
        "BAUS": baus,
        "gm": math.sqrt(baks * baus) if not (math.isnan(baks) or math.isnan(baus)) else math.nan,
        "AKS": aks,
        "AUS": aus,
        "normalized_accuracy": mu * aks + (1 - mu) * aus,
        "n_known": sum(len(v) for v in per_known.values()),
        "n_unknown": sum(len(v) for v in per_unknown.values()),
    }


# --------------------------------------------------------------------------- calibration


def _calibration_bins(
    probabilities: np.ndarray, outcomes: np.ndarray, n_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked (probabilities, 0/1 outcomes as floats, bin index of each) for the
    ``n_bins`` equal bins ``(lo, hi]`` of [0, 1] (0 falls in the first)."""
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    y = np.asarray(outcomes).ravel()
    if p.shape != y.shape:
        raise ValueError(f"{p.size} probabilities but {y.size} outcomes")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if not np.all(np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError("probabilities must be finite and within [0, 1]")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("outcomes must be 0/1 or booleans")
    bins = np.clip(np.ceil(p * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    return p, y.astype(np.float64), bins


def expected_calibration_error(
    probabilities: np.ndarray, outcomes: np.ndarray, n_bins: int = 15
) -> float:
    """Expected calibration error of binary probability estimates (Guo et al., 2017).

    ``probabilities`` in [0, 1] are the predicted chances that an event happens (e.g. that
    a proposed match is correct); ``outcomes`` are 0/1 (did it). The interval [0, 1] is cut
    into ``n_bins`` equal bins ``(lo, hi]`` (0 falls in the first); ECE is
    ``sum_b |B|/N * |mean(outcomes in B) - mean(probabilities in B)|``. ``nan`` for no
    samples.
    """
    p, y, bins = _calibration_bins(probabilities, outcomes, n_bins)
    if p.size == 0:
        return math.nan
    count = np.bincount(bins, minlength=n_bins)
    gap = np.abs(
        np.bincount(bins, weights=y, minlength=n_bins)
        - np.bincount(bins, weights=p, minlength=n_bins)
    )
    # |sum(y) - sum(p)| / N per bin == |B|/N * |mean(y) - mean(p)|
    return float(gap[count > 0].sum() / p.size)


def calibration_noise(
    probabilities: np.ndarray,
    observed: float | None = None,
    n_bins: int = 15,
    draws: int = 2000,
    seed: int = 0,
) -> dict:
    """How large :func:`expected_calibration_error` comes out for a *perfectly*
    calibrated predictor that gave these probabilities: its outcomes are drawn as
    Bernoulli(p), ``draws`` times (seeded), and the ECE of each draw is measured with
    the same bins.

    Binned ECE is biased upwards on few samples: a predictor that is exactly right
    about its chances still shows an ECE of several hundredths on a hundred queries.
    An observed ECE near ``mean`` is consistent with sampling noise; only one well above
    ``p95`` (small ``p_value``) shows a miscalibration that chance does not explain.
    ``mean`` is not a lower bound: a single sample may come in below it.

    Keys: ``mean`` (mean ECE of the draws), ``p95`` (their 95th percentile), ``draws``;
    with ``observed``, ``p_value``: the share of draws whose ECE is at least
    ``observed``, counting the observation itself (never 0; ``nan`` for a ``nan``
    observation). Empty ``probabilities``: every figure ``nan``.
    """
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    p, _, bins = _calibration_bins(probabilities, np.zeros(np.size(probabilities)), n_bins)
    if p.size == 0:
        out = {"mean": math.nan, "p95": math.nan, "draws": draws}
        if observed is not None:
            out["p_value"] = math.nan
        return out
    rng = np.random.default_rng(seed)
    expected = np.bincount(bins, weights=p, minlength=n_bins)
    eces = np.empty(draws)
    chunk = max(1, 2_000_000 // p.size)  # draws per block: about 2M outcomes in memory
    for start in range(0, draws, chunk):
        n = min(chunk, draws - start)
        y = rng.random((n, p.size)) < p  # each row one perfectly calibrated draw
        # per row and bin: how many came out right (one bincount over row-offset bins)
        rows = (bins + n_bins * np.arange(n)[:, None]).ravel()
        got = np.bincount(rows, weights=y.ravel(), minlength=n * n_bins).reshape(n, n_bins)
        eces[start : start + n] = np.abs(got - expected).sum(axis=1) / p.size
    out = {
        "mean": float(eces.mean()),
        "p95": float(np.quantile(eces, 0.95)),
        "draws": draws,
    }
    if observed is not None:
        out["p_value"] = (
            math.nan if math.isnan(observed)
            else float((np.sum(eces >= observed - 1e-12) + 1) / (draws + 1))
        )  # fmt: skip
    return out


def calibration_summary(
    probabilities: np.ndarray, outcomes: np.ndarray, seed: int = 0
) -> dict[str, float]:
    """The ECE of these decisions and what a perfectly calibrated matcher would show on
    them (:func:`calibration_noise`), as the open-set reports name them: ``ECE``,
    ``ECE_perfect`` (mean), ``ECE_perfect_p95`` and ``ECE_p``."""
    ece = expected_calibration_error(probabilities, outcomes)
    noise = calibration_noise(probabilities, observed=ece, seed=seed)
    return {"ECE": ece, "ECE_perfect": noise["mean"], "ECE_perfect_p95": noise["p95"],
            "ECE_p": noise["p_value"]}  # fmt: skip


def format_p(p: float) -> str:
    """A Monte Carlo p-value for people: "p = 0.23", "p = 0.004", "p < 0.001"."""
    if math.isnan(p):
        return "p = nan"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}"


def reliability_table(
    probabilities: np.ndarray, outcomes: np.ndarray, n_bins: int = 15
) -> list[dict]:
    """The bins of :func:`expected_calibration_error` that hold samples: for each,
    ``lo``, ``hi``, ``n``, ``confidence`` (mean probability) and ``rate`` (share of
    outcomes that happened). Where ``rate`` > ``confidence`` the estimates are
    under-confident; a reliability diagram plots one against the other."""
    p, y, bins = _calibration_bins(probabilities, outcomes, n_bins)
    out = []
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            out.append(
                {
                    "lo": round(b / n_bins, 4),
                    "hi": round((b + 1) / n_bins, 4),
                    "n": int(sel.sum()),
                    "confidence": round(float(p[sel].mean()), 4),
                    "rate": round(float(y[sel].mean()), 4),
                }
            )
    return out
