"""ATRW as a benchmark: the official plain test protocol and a validation protocol on
ATRW train.

**Test** (:func:`evaluate_atrw_test`): a folder holding ``gt_test_plain.json`` and its
images (beside it, or in ``test/`` as the official download unpacks). Every listed
image is a query ranking every other test image (ATRW has no side labels: all images
are one group); :func:`reid.metrics.atrw_plain`, a port of the official scorer, drops
same-tiger images of the same camera within ±3 frames and junk, and gives single- and
cross-camera mAP, top-1 and top-5. The method sees the images without their labels.

**Validation** (:func:`evaluate_atrw_validation`): ATRW train has no camera or frame
numbers and shuffled file names. Its entities (flanks) are split with
:func:`atrw_entity_split` (seeded, :func:`reid.splits.disjoint_split`: the same split
``reid train`` makes with ``data.train_ratio`` and ``data.split_seed``; default 0.8
and 0: 86 entities to train, 21 held out); each held-out image is a query against all
other held-out images (one group, sides ignored: an entity is one flank), with its
near-duplicates (:mod:`reid.near_duplicates`, model-independent) removed from its
gallery as the test protocol removes ±3 frames. Metrics as ``reid eval``'s (pessimistic
ties); a query left with no positive is not counted.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from reid.data.records import ImageRecord
from reid.errors import ReidError
from reid.metrics import retrieval_metrics
from reid.near_duplicates import NEAR_DUPLICATE_THRESHOLD, near_duplicate_groups, same_group
from reid.progress import progress_bar

#: The default validation split of ATRW train: 80 % of the entities train, seed 0.
ATRW_TRAIN_RATIO = 0.8
ATRW_SPLIT_SEED = 0

__all__ = [
    "ATRW_SPLIT_SEED",
    "ATRW_TRAIN_RATIO",
    "ValidationSet",
    "atrw_entity_split",
    "atrw_validation_set",
    "evaluate_atrw_test",
    "evaluate_atrw_validation",
    "find_atrw_test",
    "is_atrw_train",
    "score_validation",
]


# --------------------------------------------------------------------------- train: validation


def is_atrw_train(path: Path | str) -> bool:
    """Whether ``path`` is an ATRW re-ID training set: a folder holding
    ``reid_list_train.csv`` (and no manifest), or that list itself."""
    p = Path(path)
    if p.is_dir():
        return (p / "reid_list_train.csv").is_file() and not (p / "manifest.csv").is_file()
    return p.name == "reid_list_train.csv"


def atrw_entity_split(
    records: Sequence[ImageRecord] | Path | str,
    train_ratio: float = ATRW_TRAIN_RATIO,
    seed: int = ATRW_SPLIT_SEED,
) -> tuple[list[str], list[str]]:
    """(train entities, held-out entities) of ATRW train, each sorted as strings.

    ``records`` are the catalogue's records (or its folder / list, loaded with
    :func:`reid.data.load.load_catalogue`). The split is
    :func:`reid.splits.disjoint_split` of the records with ``train_ratio`` and ``seed``,
    so ``reid train`` with ``data.train_ratio=R data.split_seed=S`` on the same
    catalogue trains on exactly the first list. It depends only on the set of entity ids.
    """
    from reid.splits import disjoint_split

    if isinstance(records, (str, Path)):
        from reid.data.load import load_catalogue

        records = load_catalogue(records)
    split = disjoint_split(records, train_ratio, seed)
    train = {r.individual_id for r in split.train}
    held = {r.individual_id for r in split.test}
    return sorted(train, key=_entity_key), sorted(held, key=_entity_key)


def _entity_key(e: str) -> tuple:
    return (0, int(e), e) if e.lstrip("-").isdigit() else (1, 0, e)


@dataclass(frozen=True)
class ValidationSet:
    """The held-out images of an entity split and their near-duplicate groups.

    ``records``: the held-out images (catalogue order); ``groups``: a near-duplicate
    group number per record; ``exclude``: N × N, True where a gallery image is removed
    from a query's gallery (itself and its near-duplicates).
    """

    records: list[ImageRecord]
    groups: np.ndarray
    train_entities: list[str]
    heldout_entities: list[str]
    train_ratio: float
    seed: int
    threshold: float
    exclude: np.ndarray = field(repr=False)

    @property
    def split_name(self) -> str:
        return f"entity split {self.train_ratio:g}/{1 - self.train_ratio:g}, seed {self.seed}"


def atrw_validation_set(
    records: Sequence[ImageRecord] | Path | str,
    train_ratio: float = ATRW_TRAIN_RATIO,
    seed: int = ATRW_SPLIT_SEED,
    threshold: float = NEAR_DUPLICATE_THRESHOLD,
    *,
    workers: int = 2,
    show_progress: bool = False,
) -> ValidationSet:
    """The held-out entities' images of :func:`atrw_entity_split` with their
    near-duplicate groups (:func:`reid.near_duplicates.near_duplicate_groups` at
    ``threshold``). Build it once and pass it to :func:`evaluate_atrw_validation` (or
    :func:`score_validation`) at every epoch: the groups cost one decode per image."""
    if isinstance(records, (str, Path)):
        from reid.data.load import load_catalogue

        records = load_catalogue(records)
    train, held = atrw_entity_split(records, train_ratio, seed)
    held_set = set(held)
    subset = [r for r in records if r.individual_id in held_set]
    with progress_bar(len(subset), "near-duplicates", enabled=show_progress) as advance:
        groups = near_duplicate_groups(subset, threshold, workers=workers, progress=advance)
    exclude = same_group(groups)
    np.fill_diagonal(exclude, True)
    return ValidationSet(subset, groups, train, held, train_ratio, seed, threshold, exclude)


def score_validation(validation: ValidationSet, similarity: np.ndarray) -> dict:
    """mAP, top-1, top-5 of an N × N similarity over ``validation.records`` with each
    query's near-duplicates excluded, and what was excluded.

    Keys: ``mAP``, ``top1``, ``top5``, ``queries`` (counted: with a positive left),
    ``images``, ``entities``, ``excluded`` (gallery entries removed as near-duplicates,
    summed over queries), ``excluded_per_query``, ``queries_without_positive`` (all
    their same-entity images were near-duplicates), ``split``, ``threshold``.
    """
    sim = np.asarray(similarity)
    n = len(validation.records)
    if sim.shape != (n, n):
        raise ValueError(f"similarity has shape {sim.shape}, expected {(n, n)}")
    labels = [r.individual_id for r in validation.records]
    out = dict(retrieval_metrics(sim, labels, labels, ks=(1, 5), exclude=validation.exclude))
    excluded = int(validation.exclude.sum()) - n
    out.update(
        images=n,
        entities=len(validation.heldout_entities),
        excluded=excluded,
        excluded_per_query=round(excluded / n, 3) if n else 0.0,
        queries_without_positive=n - int(out["queries"]),
        split=validation.split_name,
        train_ratio=validation.train_ratio,
        split_seed=validation.seed,
        threshold=validation.threshold,
    )
    return out


def evaluate_atrw_validation(
    records: Sequence[ImageRecord] | Path | str | ValidationSet,
    scorer,
    *,
    train_ratio: float = ATRW_TRAIN_RATIO,
    seed: int = ATRW_SPLIT_SEED,
    threshold: float = NEAR_DUPLICATE_THRESHOLD,
    workers: int = 2,
    show_progress: bool = False,
) -> dict:
    """Score ``scorer`` on the held-out entities of ATRW train (see the module text).

    ``records``: the ATRW train records (all of them: the split is made here), its
    folder, or a :class:`ValidationSet` already built (then the split arguments are
    ignored). ``scorer``: a method of ``reid eval`` (an object with ``similarity(records,
    progress)``, e.g. ``reid.methods.get_method("embedding", model=...)``) or a function
    ``embed(records) -> N × D array`` (cosine similarity of the rows is the score).
    Labels never reach the scorer: it gets the records with ``individual_id`` None.

    Returns :func:`score_validation`'s dict plus ``method`` and ``seconds``.
    """
    started = time.perf_counter()
    validation = (
        records
        if isinstance(records, ValidationSet)
        else atrw_validation_set(
            records, train_ratio, seed, threshold, workers=workers, show_progress=show_progress
        )
    )
    sim = _similarity(scorer, validation.records, show_progress)
    out = score_validation(validation, sim)
    out["method"] = getattr(scorer, "name", getattr(scorer, "__name__", "embeddings"))
    out["seconds"] = round(time.perf_counter() - started, 3)
    return out


def _unlabelled(records: Sequence[ImageRecord]) -> list[ImageRecord]:
    return [replace(r, individual_id=None) for r in records]


def _similarity(scorer, records: Sequence[ImageRecord], show_progress: bool) -> np.ndarray:
    blind = _unlabelled(records)
    if hasattr(scorer, "similarity"):
        total = scorer.work(len(blind)) if hasattr(scorer, "work") else len(blind)
        with progress_bar(total, f"eval {getattr(scorer, 'name', '')}", show_progress) as advance:
            return np.asarray(scorer.similarity(blind, advance))
    if callable(scorer):
        e = np.asarray(scorer(blind), dtype=np.float64)
        if e.ndim != 2 or len(e) != len(blind):
            raise ValueError(f"embed returned shape {e.shape}, expected ({len(blind)}, D)")
        e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        return e @ e.T
    raise TypeError("scorer must be a method with similarity() or a function embed(records)")


# --------------------------------------------------------------------------- test: plain protocol


def find_atrw_test(path: Path | str) -> tuple[Path, Path] | None:
    """(``gt_test_plain.json``, image folder) when ``path`` is an ATRW test folder (or
    that JSON file), else None. Images are beside the JSON, else in ``test/`` beside it
    (the official download's layout); a folder without either still counts (the images
    are looked for beside the JSON and reported missing when scoring)."""
    p = Path(path)
    if p.is_dir():
        if (p / "manifest.csv").is_file() or not (p / "gt_test_plain.json").is_file():
            return None
        p = p / "gt_test_plain.json"
    elif p.name != "gt_test_plain.json":
        return None
    folder = p.parent
    for candidate in (folder, folder / "test"):
        if (candidate / _first_image_name(p)).is_file():
            return p, candidate
    return p, folder


def _first_image_name(json_path: Path) -> str:
    from reid.data.atrw import read_atrw_test_plain

    try:
        return read_atrw_test_plain(json_path)[0].filename
    except Exception:  # noqa: BLE001 - a broken file is reported when it is read for real
        return "000000.jpg"


def evaluate_atrw_test(
    path: Path | str,
    scorer,
    *,
    submission: Path | str | None = None,
    limit: int | None = None,
    show_progress: bool = False,
) -> dict:
    """Run the official ATRW plain re-ID protocol with ``scorer`` on a test folder.

    ``path``: a folder holding ``gt_test_plain.json`` (or the file); images as
    :func:`find_atrw_test` finds them. ``scorer`` as in :func:`evaluate_atrw_validation`
    (it gets the images without labels). ``submission``: also write the official
    submission JSON there. ``limit``: only the first N images (a quick check; not the
    benchmark).

    Returns :func:`reid.metrics.atrw_plain`'s keys (``mAP_single``, ``top1_single``,
    ``top5_single``, ``mAP_cross``, ...) plus ``images``, ``method``, ``seconds``.
    """
    from reid.data.atrw import read_atrw_test_plain
    from reid.metrics import (
        ATRWQuery,
        atrw_plain,
        atrw_ranking_from_similarity,
        write_atrw_submission,
    )

    found = find_atrw_test(path)
    if found is None:
        raise ReidError(f"{path}: not an ATRW test folder (no gt_test_plain.json)")
    json_path, image_dir = found
    test = read_atrw_test_plain(json_path, image_dir)
    if limit is not None:
        test = test[:limit]
    records = [t.to_image_record(image_dir) for t in test]
    started = time.perf_counter()
    sim = _similarity(scorer, records, show_progress)
    ranking = atrw_ranking_from_similarity([t.imgid for t in test], sim)
    if submission is not None:
        write_atrw_submission(ranking, submission)
    anno = [ATRWQuery(t.imgid, t.query, (*t.camera, t.frame), t.entityid) for t in test]
    out: dict = dict(atrw_plain(anno, ranking))
    out.update(
        images=len(test),
        method=getattr(scorer, "name", getattr(scorer, "__name__", "embeddings")),
        seconds=round(time.perf_counter() - started, 3),
    )
    return out


#: Printed names of the test protocol's figures, in order.
ATRW_TEST_ROWS: tuple[tuple[str, str], ...] = (
    ("single-camera mAP", "mAP_single"),
    ("single-camera top-1", "top1_single"),
    ("single-camera top-5", "top5_single"),
    ("cross-camera mAP", "mAP_cross"),
    ("cross-camera top-1", "top1_cross"),
    ("cross-camera top-5", "top5_cross"),
)

