"""The standard evaluation protocol of ``reid eval``.

Images are grouped by (species, side): a left flank is only ever compared with left
flanks. Within a group every image is a query against all other images; a query counts
when its individual has another image in the group. Unidentified images stay in the
gallery as distractors and are never queries. Metrics are micro-averaged over queries.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from reid.data.records import ImageRecord
from reid.errors import ReidError
from reid.methods import Method
from reid.metrics import retrieval_metrics
from reid.progress import progress_bar


def comparison_groups(records: Sequence[ImageRecord]) -> dict[str, list[int]]:
    """Indices of the records in each (species, side) group, named ``species/side``."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        groups[f"{r.species}/{r.side}"].append(i)
    return dict(sorted(groups.items()))


def _labels(records: Sequence[ImageRecord], idx: Sequence[int]) -> list[str]:
    # Unidentified images get labels of their own: they can never be a correct match.
    return [records[i].individual_id or f"\0unidentified-{i}" for i in idx]


def evaluate(records: Sequence[ImageRecord], method: Method, show_progress: bool = True) -> dict:
    """Run ``method`` on every comparison group and return the metrics as a dict.

    Keys: ``top1``, ``top5``, ``mAP``, ``queries``, ``images``, ``seconds``,
    ``images_per_s``, ``method``, and ``groups`` / ``species`` with the same metrics per
    ``species/side`` group and per species.
    """
    if not records:
        raise ReidError("the catalogue has no images to evaluate")
    groups = comparison_groups(records)
    started = time.perf_counter()
    per_group: dict[str, dict] = {}
    total = sum(method.work(len(ix)) for ix in groups.values())
    with progress_bar(total, f"eval {method.name}", enabled=show_progress) as advance:
        for name, idx in groups.items():
            subset = [records[i] for i in idx]
            labels = _labels(records, idx)
            if len(subset) < 2:
                advance(method.work(len(subset)))
                per_group[name] = {"top1": 0.0, "top5": 0.0, "mAP": 0.0, "queries": 0}
                continue
            sim = method.similarity(subset, advance)
            exclude = np.eye(len(subset), dtype=bool)
            per_group[name] = retrieval_metrics(sim, labels, labels, ks=(1, 5), exclude=exclude)
    seconds = time.perf_counter() - started

    def pooled(names: Sequence[str]) -> dict:
        q = sum(per_group[n]["queries"] for n in names)
        out = {"queries": int(q)}
        for key in ("top1", "top5", "mAP"):
            out[key] = (
                float(sum(per_group[n][key] * per_group[n]["queries"] for n in names) / q)
                if q
                else 0.0
            )
        return out

    species: dict[str, list[str]] = defaultdict(list)
    for name in per_group:
        species[name.split("/")[0]].append(name)
    result = pooled(list(per_group))
    if result["queries"] == 0:
        raise ReidError(
            "no image has another image of the same individual, species and side: "
            "nothing to evaluate"
        )
    result.update(
        method=method.name,
        images=len(records),
        seconds=round(seconds, 3),
        images_per_s=round(len(records) / seconds, 2) if seconds > 0 else None,
        groups={n: {k: _plain(v) for k, v in m.items()} for n, m in per_group.items()},
        species={s: pooled(names) for s, names in sorted(species.items())},
    )
    return result


def _plain(v):
    return v.item() if isinstance(v, np.generic) else v


def evaluate_open_set(
    records: Sequence[ImageRecord],
    model=None,
    *,
    train_ratio: float = 0.5,
    unknown_ratio: float = 0.3,
    seed: int = 0,
    new_prior: float | None = None,
    workers: int = 2,
    config=None,
    calibration_sample: int = 1000,
    show_progress: bool = True,
    near_duplicates: bool = False,
) -> dict:
    """Open-set evaluation of the matcher: enroll a gallery, match new photos, score the
    decisions.

    Flanks (individual + side) are split with :func:`reid.splits.open_set_split`
    (``train_ratio`` of the images to the gallery, about ``unknown_ratio`` of them from
    flanks held out of the gallery entirely). The gallery is enrolled and calibrated
    exactly as ``reid enroll`` does (in memory); every other image is matched with its
    species and side given. An individual of unknown side (ATRW's entities are flanks
    whose side is not labelled) is one flank entity, compared within its species only
    (both sides searched). A query of an enrolled flank is right when the decision names
    its individual; one of a held-out flank, when it says "new". ``new_prior`` (default:
    the share of held-out-flank queries, the survey's base rate) sets P(new)'s prior.

    Keys: ``BAKS``, ``BAUS``, ``gm`` (their geometric mean), ``AKS``, ``AUS``,
    ``n_known``, ``n_unknown``, ``ECE`` (of the decision probability against whether the
    decision was right), ``ECE_perfect`` and ``ECE_perfect_p95`` (the mean and 95th
    percentile of the ECE that a perfectly calibrated matcher giving the same
    probabilities would show on this many queries: :func:`reid.metrics.calibration_noise`),
    ``ECE_p`` (the share of such perfect draws with an ECE at least ``ECE``: small, a
    miscalibration that chance does not explain), ``ECE_new`` (of P(new) against the
    flank being new),
    ``top1_known`` (best candidate right, enrolled flanks), ``mean_confidence`` (of the
    decision probability, against ``accuracy``), ``reliability`` (ECE's bins: see
    :func:`reid.metrics.reliability_table`), ``gallery``, ``queries``,
    ``queries_without_answer``, ``seconds``, ``calibration``.

    ``near_duplicates`` (ATRW train, whose photos are video frames): each query's
    near-duplicate photos (:mod:`reid.near_duplicates`) are out of its gallery, and a
    query of an enrolled flank left with no other photo of it is not counted, as in the
    ATRW validation protocol; without it such a query is matched by its next frame.
    """
    from dataclasses import replace

    from reid.embed import embed_records
    from reid.index import SIDES
    from reid.match import (
        FeatureStore,
        Matcher,
        entry_of,
        extract_records,
        fit_calibration,
        near_duplicate_related,
        new_gallery_index,
        resolve_model,
    )
    from reid.metrics import (
        calibration_summary,
        expected_calibration_error,
        open_set_scores,
        reliability_table,
    )
    from reid.release import load_release
    from reid.splits import open_set_split

    UNKNOWN = "unknown"

    # A flank is (individual, side). An individual of unknown side (ATRW: its entities
    # are flanks whose side is not labelled) is one flank entity "id/unknown": enrolled
    # in the left partition under that name, and queried against both sides of its
    # species, so it is compared within its species only.
    flanks = [
        replace(r, individual_id=f"{r.individual_id}/{r.side if r.side in SIDES else UNKNOWN}")
        for r in records
        if r.individual_id
    ]
    if len({r.individual_id for r in flanks}) < 3:
        raise ReidError("open-set evaluation needs at least three flanks (individual and side)")
    split = open_set_split(flanks, train_ratio, unknown_ratio, seed)
    started = time.perf_counter()
    net, manifest = load_release(resolve_model(model))
    everything = [*split.train, *split.test]
    with progress_bar(len(everything), "embedding", enabled=show_progress) as advance:
        vectors = embed_records(net, everything, workers=workers, progress=advance)
    index = new_gallery_index(manifest, net.embedding_dim, config)  # records the kind
    matcher = Matcher(net, manifest, index, FeatureStore(None), config)
    with progress_bar(len(everything), "keypoints", enabled=show_progress) as advance:
        feats = extract_records(everything, matcher.local, workers, advance)
    n_train = len(split.train)

    def original(r: ImageRecord) -> ImageRecord:
        if r.side not in SIDES:
            return replace(r, side=SIDES[0])  # keeps its "id/unknown" name
        return replace(r, individual_id=r.individual_id.rsplit("/", 1)[0])

    def flank_label(individual: str, side: str) -> str:
        return individual if individual.endswith(f"/{UNKNOWN}") else f"{individual}/{side}"

    ids = index.add(vectors[:n_train], [entry_of(original(r)) for r in split.train])
    for i, f in zip(ids, feats[:n_train], strict=True):
        matcher.features.put(i, f)
    excluded: list[list[int]] = [[] for _ in split.test]
    queries = list(range(len(split.test)))
    if near_duplicates:
        from reid.near_duplicates import near_duplicate_groups

        groups = near_duplicate_groups(everything, workers=workers).tolist()
        by_group: dict[int, list[int]] = {}
        for i, g in zip(ids, groups[:n_train], strict=True):
            by_group.setdefault(g, []).append(i)
        enrolled: dict[str, int] = {}
        for r in split.train:
            enrolled[r.individual_id] = enrolled.get(r.individual_id, 0) + 1
        excluded = [by_group.get(g, []) for g in groups[n_train:]]
        # a query of an enrolled flank whose enrolled photos are all its near-duplicates
        # has no answer left: not counted (as in the ATRW validation protocol)
        queries = [
            j for j, r in enumerate(split.test)
            if r.individual_id not in split.known
            or enrolled.get(r.individual_id, 0) > len(excluded[j])
        ]  # fmt: skip
    truth = [split.test[j].individual_id for j in queries]
    is_new = np.array([t not in split.known for t in truth])
    prior = float(is_new.mean()) if new_prior is None else new_prior
    calibration = fit_calibration(
        matcher,
        calibration_sample,
        seed=seed,
        new_prior=prior,
        workers=workers,
        show_progress=show_progress,
        related=near_duplicate_related(index),  # as reid enroll fits it
    )
    matcher.calibration = calibration

    def one(j: int):
        r = split.test[j]
        raw = matcher.candidates(
            vectors[n_train + j : n_train + j + 1],
            [feats[n_train + j]],
            side=r.side if r.side in SIDES else None,
            species=r.species,
            exclude_ids=excluded[j],
        )
        return matcher._result(raw, calibration, top=5)

    from concurrent.futures import ThreadPoolExecutor

    with (
        progress_bar(len(queries), "matching", enabled=show_progress) as advance,
        ThreadPoolExecutor(max(1, workers)) as pool,
    ):
        results = []
        for res in pool.map(one, queries):
            results.append(res)
            advance(1)
    predicted = [flank_label(r.individual, r.side) if r.decision == "known" else "new"
                 for r in results]
    expected = [t if t in split.known else "new" for t in truth]
    correct = np.array([p == e for p, e in zip(predicted, expected, strict=True)])
    top1 = [
        bool(r.candidates) and flank_label(r.candidates[0].individual, r.candidates[0].side) == t
        for r, t, n in zip(results, truth, is_new, strict=True)
        if not n
    ]
    out = dict(open_set_scores(truth, predicted, split.known, new_label="new"))
    confidence = np.array([r.probability for r in results])
    out.update(
        **calibration_summary(confidence, correct, seed=seed),
        ECE_new=expected_calibration_error(np.array([r.new_probability for r in results]), is_new),
        accuracy=float(correct.mean()),
        top1_known=float(np.mean(top1)) if top1 else float("nan"),
        mean_confidence=float(confidence.mean()),
        reliability=reliability_table(confidence, correct),
        new_prior=prior,
        gallery=n_train,
        queries=len(queries),
        queries_without_answer=len(split.test) - len(queries),
        seconds=round(time.perf_counter() - started, 3),
        calibration=calibration.stats,
        model=manifest.get("name"),
    )
    return out
