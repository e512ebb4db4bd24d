"""A calibration shipped with a model release, fitted on real photos.

A gallery index is calibrated on itself when it is enrolled
(:func:`reid.match.fit_calibration`): its photos are held-out queries against the rest.
That needs at least two flanks with two photos each, so a first gallery of one photo per
animal cannot be matched at all. A release can carry a calibration fitted the same way on
a real labelled catalogue of individuals the model never trained on (``reid calibrate``),
stored beside the weights as ``calibration.json`` and recorded in the manifest with its
SHA-256, the weights and the local features it was fitted for. ``reid enroll`` uses it
for a gallery too small to calibrate itself, or for every gallery with
``--calibration release``; BENCHMARKS.md ("Calibration on real photos") compares the two
on held-out individuals.

Photos that are near-duplicates of a calibration query (consecutive video frames, a
burst; :mod:`reid.near_duplicates`) are left out of its gallery: a real query comes from
another encounter.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from reid.data.records import ImageRecord
from reid.errors import ReidError

CALIBRATION_FILE = "calibration.json"
MANIFEST_KEY = "calibration"

__all__ = [
    "CALIBRATION_FILE",
    "fit_on_catalogue",
    "load_from_release",
    "local_features_id",
    "save_to_release",
]


def local_features_id(config) -> dict:
    """What identifies the local features a calibration's inlier counts come from (the
    kind, its matcher and its extraction settings, :class:`reid.local.LocalConfig`'s
    fingerprint): the fusion weights hold only for the extractor and matcher they were
    fitted with (a calibration for xfeat is refused for xfeat-mnn)."""
    return json.loads(json.dumps(config.fingerprint(), default=str))


def fit_on_catalogue(
    records: Sequence[ImageRecord],
    model: Path | str | None = None,
    *,
    sample: int = 1000,
    seed: int = 0,
    workers: int = 2,
    config=None,
    near_duplicates: bool = True,
    show_progress: bool = True,
):
    """The matcher's calibration (:class:`reid.match.MatchCalibration`) fitted on the
    identified photos of ``records`` enrolled as one gallery (in memory), as ``reid
    enroll`` fits it, each query's near-duplicates out (``near_duplicates``). An
    individual of unknown side is one flank (ATRW's entities). Returns (calibration,
    what it was fitted on)."""
    from reid.embed import embed_records
    from reid.index import SIDES
    from reid.match import (
        FeatureStore,
        Matcher,
        entry_of,
        extract_records,
        fit_calibration,
        new_gallery_index,
        resolve_model,
    )
    from reid.near_duplicates import near_duplicate_groups
    from reid.progress import progress_bar
    from reid.release import load_release

    flanks = [
        replace(r, individual_id=f"{r.individual_id}/{r.side}", side=r.side)
        if r.side in SIDES
        else replace(r, individual_id=f"{r.individual_id}/unknown", side=SIDES[0])
        for r in records
        if r.individual_id
    ]
    if not flanks:
        raise ReidError("the catalogue has no identified photos to calibrate on")
    release = resolve_model(model)
    net, manifest = load_release(release)
    index = new_gallery_index(manifest, net.embedding_dim, config)  # records the kind
    matcher = Matcher(net, manifest, index, FeatureStore(None), config)
    with progress_bar(len(flanks), "embedding", enabled=show_progress) as advance:
        vectors = embed_records(net, flanks, workers=workers, progress=advance)
    local = matcher.local
    with progress_bar(len(flanks), "keypoints", enabled=show_progress) as advance:
        feats = extract_records(flanks, local, workers, advance)
    ids = index.add(vectors, [entry_of(r) for r in flanks])
    for i, f in zip(ids, feats, strict=True):
        matcher.features.put(i, f)
    related = None
    if near_duplicates:
        groups = near_duplicate_groups(flanks, workers=workers)
        by_group: dict[int, list[int]] = {}
        for i, g in zip(ids, groups.tolist(), strict=True):
            by_group.setdefault(g, []).append(i)
        group_of = dict(zip(ids, groups.tolist(), strict=True))

        def related(i: int) -> list[int]:
            return [j for j in by_group[group_of[i]] if j != i]

    calibration = fit_calibration(
        matcher, sample, seed=seed, workers=workers, show_progress=show_progress, related=related
    )
    info = {
        "photos": len(flanks),
        "flanks": len({r.individual_id for r in flanks}),
        "near_duplicates_out": near_duplicates,
        "local_features": local_features_id(local),
        "stats": calibration.stats,
    }
    return calibration, info


def save_to_release(folder: Path | str, calibration, info: dict) -> dict:
    """Write ``calibration`` into a release folder and record it (with ``info``: what it
    was fitted on) in the manifest; returns the new manifest."""
    from reid.paths import FILE_MODE, atomic_write
    from reid.release import read_manifest, sha256_of

    folder = Path(folder)
    manifest = read_manifest(folder)
    text = json.dumps(calibration.to_dict(), indent=1) + "\n"
    atomic_write(folder / CALIBRATION_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    os.chmod(folder / CALIBRATION_FILE, FILE_MODE)
    manifest[MANIFEST_KEY] = {
        "file": CALIBRATION_FILE,
        "sha256": sha256_of(folder / CALIBRATION_FILE),
        "weights_sha256": manifest["sha256"],
        **info,
    }
    body = json.dumps(manifest, indent=2) + "\n"
    atomic_write(folder / "manifest.json", lambda tmp: tmp.write_text(body, encoding="utf-8"))
    return manifest


def load_from_release(folder: Path | str, manifest: dict, local=None):
    """The release's calibration (checked against its SHA-256, the weights and, when
    ``local`` is given, the local features it was fitted for), or None if it has none."""
    from reid.heads import release_file
    from reid.match import MatchCalibration

    entry = manifest.get(MANIFEST_KEY)
    if not entry:
        return None
    recorded = entry.get("local_features")
    if recorded is not None and local is not None:
        from reid.local import _legacy

        recorded = _legacy(recorded, local_features_id(local))  # written before a key was
    if local is not None and recorded != local_features_id(local):
        raise ReidError(
            f"{Path(folder) / Path(str(entry.get('file', CALIBRATION_FILE))).name}: the "
            f"calibration was fitted for other local features ({entry.get('local_features')}); "
            "refit it with reid calibrate"
        )
    # the weights it was fitted for, the file, its SHA-256: checked as for the heads
    path = release_file(Path(folder), manifest, MANIFEST_KEY, CALIBRATION_FILE,
                        "calibration file", "with reid calibrate")  # fmt: skip
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ReidError(f"{path}: unreadable calibration ({e})") from None
    return MatchCalibration.from_dict(data)
