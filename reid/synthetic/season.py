"""A synthetic camera-trap season with known truth, for season bulk runs (``reid bulk``).

Individuals ``0..known-1`` of each species (seed ``seed``) are in the gallery
(``gallery/``: earlier whole-frame photos of both flanks, with boxes, and its
manifest); individuals ``known..known+new-1`` are new this season. Each individual
makes ``passes`` passes along trails of the cross-border landscape of
:mod:`reid.synthetic.metadata` (home site, and about 45 % also across the border), in
the season a year after the gallery's. A pass is seen by the station's two facing
cameras: a burst of ``frames_per_burst`` frames (1-3 s apart) of the left flank on one,
of the right flank on the other. Bursts at one camera are always more than an hour
apart, so the true encounters are exactly the bursts.

Written into ``out``:

- ``gallery/``: the known individuals' catalogue (``manifest.csv``);
- ``season/``: a Camtrap DP package (``datapackage.json``, ``deployments.csv``,
  ``media.csv``, ``observations.csv`` with boxes and ``side:`` tags, individualID
  empty) with its images in ``season/media/<camera>/``;
- ``season.csv``: the same frames as a manifest whose ``individual_id`` is the truth
  (``encounter`` is the true burst), readable by ``reid bulk`` as a manifest source.
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from reid.data.manifest import write_manifest
from reid.data.records import BBox, ImageRecord, format_timestamp
from reid.errors import ReidError
from reid.synthetic.catalogue import write_catalogue
from reid.synthetic.coats import individual_flanks
from reid.synthetic.metadata import (
    NIGHT_FRACTION,
    SITES,
    STATIONS_PER_SITE,
    Site,
    _station_position,
)
from reid.synthetic.scene import FRAME_H, FRAME_W, render_frame
from reid.synthetic.seeds import SPECIES, individual_id, rng_for

SCIENTIFIC = {"tiger": "Panthera tigris altaica", "leopard": "Panthera pardus orientalis"}
_START_METHOD = "spawn"  # see reid.synthetic.catalogue: never fork after OpenCV starts


@dataclass(frozen=True)
class SeasonSpec:
    """Size and seed of a synthetic season (per species: ``known`` + ``new`` individuals)."""

    species: tuple[str, ...] = SPECIES
    known: int = 10
    new: int = 4
    passes: int = 3
    frames_per_burst: int = 3
    gallery_per_side: int = 2
    seed: int = 11

    @property
    def frames(self) -> int:
        return len(self.species) * (self.known + self.new) * self.passes * 2 * self.frames_per_burst


#: The benchmark season: 5,000 frames, 40 known + 10 new individuals of each species.
SEASON_BENCH = SeasonSpec(
    known=40, new=10, passes=5, frames_per_burst=5, gallery_per_side=3, seed=2_000_003
)


@dataclass(frozen=True)
class Frame:
    record: ImageRecord  # truth individual_id; encounter = true burst id
    index: int
    pass_no: int
    k: int
    night: bool
    deployment: str
    station: str
    site: Site


def plan_season(out: Path, spec: SeasonSpec) -> list[list[Frame]]:
    """Every frame's metadata, grouped per individual."""
    groups: list[list[Frame]] = []
    busy: dict[str, list[datetime]] = {}
    start = datetime(2019 + spec.seed % 5 + 1, 11, 1, tzinfo=UTC)
    for sp in spec.species:
        for index in range(spec.known + spec.new):
            ident = individual_id(sp, index, spec.seed)
            rng = rng_for(spec.seed, sp, index, "season-passes")
            home = SITES[int(rng.integers(len(SITES)))]
            roaming = [home]
            if rng.uniform() < 0.45:
                other = [s for s in SITES if s.country != home.country]
                roaming.append(other[int(rng.integers(len(other)))])
            frames = []
            for p in range(spec.passes):
                site = roaming[0] if p == 0 or rng.uniform() < 0.6 else roaming[-1]
                st = int(rng.integers(STATIONS_PER_SITE))
                night = bool(rng.uniform() < NIGHT_FRACTION)
                when = start + timedelta(days=float(rng.uniform(0, 150)))
                when = when.replace(microsecond=0)
                station = f"{site.code}-{st + 1:02d}"
                while any(abs((when - t).total_seconds()) < 3600 for t in busy.get(station, [])):
                    when += timedelta(hours=2)
                busy.setdefault(station, []).append(when)
                lat, lon = _station_position(site, st)
                a_left = rng.uniform() < 0.5
                for side in ("left", "right"):
                    cam = station + ("a" if (side == "left") == a_left else "b")
                    t = when + timedelta(seconds=int(rng.integers(1, 20)))
                    for k in range(spec.frames_per_burst):
                        rec = ImageRecord(
                            path=out
                            / "season"
                            / "media"
                            / cam
                            / f"{ident}_p{p + 1}_{side}_{k + 1}.jpg",
                            individual_id=ident,
                            species=sp,
                            side=side,
                            captured_at=t,
                            site=site.name,
                            country=site.country,
                            lat=round(lat, 6),
                            lon=round(lon, 6),
                            camera_id=cam,
                            encounter=f"{ident}-P{p + 1:02d}-{side}",
                        )
                        frames.append(Frame(rec, index, p, k, night, cam, station, site))
                        t += timedelta(seconds=int(rng.integers(1, 4)))
            groups.append(frames)
    return groups


def _render(frames: list[Frame], seed: int) -> list[tuple[float, float, float, float]]:
    boxes = []
    for f in frames:
        r = f.record
        tex = individual_flanks(r.species, f.index, seed)[r.side]
        photo = render_frame(
            tex,
            r.side,
            f.night,
            rng_for(seed, r.species, f.index, r.side, "season", f.pass_no, f.k),
        )
        r.path.parent.mkdir(parents=True, exist_ok=True)
        r.path.write_bytes(photo.to_jpeg())
        b = photo.bbox
        boxes.append((b.x, b.y, b.w, b.h))
    return boxes


def _worker_init() -> None:
    import cv2

    cv2.setNumThreads(1)


def write_season(
    out: Path,
    spec: SeasonSpec = SeasonSpec(),
    *,
    workers: int = 2,
    progress: Callable[[int], None] | None = None,
) -> list[ImageRecord]:
    """Render the season (see the module text) into ``out``; returns the frames' truth."""
    for name in ("known", "passes", "frames_per_burst", "gallery_per_side"):
        if getattr(spec, name) < 1:
            raise ReidError(f"season {name} must be at least 1")
    if spec.new < 0:
        raise ReidError("season new must be at least 0")
    out = Path(out)
    write_catalogue(
        out / "gallery",
        species=spec.species,
        individuals=spec.known,
        images_per_side=spec.gallery_per_side,
        seed=spec.seed,
        mode="frame",
        workers=max(1, workers),
        progress=progress,
    )
    groups = plan_season(out, spec)
    boxes: list[list] = [[] for _ in groups]
    if workers <= 1:
        for i, g in enumerate(groups):
            boxes[i] = _render(g, spec.seed)
            if progress:
                progress(len(g))
    else:
        ctx = multiprocessing.get_context(_START_METHOD)
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init) as pool:
            futures = {pool.submit(_render, g, spec.seed): i for i, g in enumerate(groups)}
            for fut in as_completed(futures):
                boxes[futures[fut]] = fut.result()
                if progress:
                    progress(len(groups[futures[fut]]))
    frames = [f for g in groups for f in g]
    flat = [b for bs in boxes for b in bs]
    records = []
    for f, b in zip(frames, flat, strict=True):
        r = f.record
        records.append(ImageRecord(**{**{s: getattr(r, s) for s in r.__slots__}, "bbox": BBox(*b)}))
    write_manifest(records, out / "season.csv")
    _write_camtrap(out / "season", frames, flat, spec)
    return records


def _write_camtrap(package: Path, frames: list[Frame], boxes: list, spec: SeasonSpec) -> None:
    from reid.bulk.sources import write_csv

    deployments: dict[str, Frame] = {}
    times: dict[str, list[datetime]] = {}
    for f in frames:
        deployments.setdefault(f.deployment, f)
        times.setdefault(f.deployment, []).append(f.record.captured_at)
    dep_rows = []
    for dep in sorted(deployments):
        f = deployments[dep]
        dep_rows.append(
            {
                "deploymentID": dep,
                "locationID": f.station,
                "locationName": f.site.name,
                "latitude": f"{f.record.lat:.6f}",
                "longitude": f"{f.record.lon:.6f}",
                "deploymentStart": format_timestamp(min(times[dep]) - timedelta(days=1)),
                "deploymentEnd": format_timestamp(max(times[dep]) + timedelta(days=1)),
                "cameraID": dep,
                "deploymentTags": f"country:{f.site.country}",
            }
        )
    media_rows, obs_rows = [], []
    for n, (f, b) in enumerate(zip(frames, boxes, strict=True), 1):
        r = f.record
        mid, ts = f"m{n:06d}", format_timestamp(r.captured_at)
        media_rows.append(
            {
                "mediaID": mid,
                "deploymentID": f.deployment,
                "captureMethod": "activityDetection",
                "timestamp": ts,
                "filePath": r.path.relative_to(package).as_posix(),
                "filePublic": "false",
                "fileName": r.path.name,
                "fileMediatype": "image/jpeg",
            }
        )
        obs_rows.append(
            {
                "observationID": f"o{n:06d}",
                "deploymentID": f.deployment,
                "mediaID": mid,
                "eventStart": ts,
                "eventEnd": ts,
                "observationLevel": "media",
                "observationType": "animal",
                "scientificName": SCIENTIFIC[r.species],
                "count": "1",
                "individualID": "",
                "bboxX": f"{b[0] / FRAME_W:.6f}",
                "bboxY": f"{b[1] / FRAME_H:.6f}",
                "bboxWidth": f"{b[2] / FRAME_W:.6f}",
                "bboxHeight": f"{b[3] / FRAME_H:.6f}",
                "observationTags": f"side:{r.side}",
            }
        )
    write_csv(package / "deployments.csv", list(dep_rows[0]), dep_rows)
    write_csv(package / "media.csv", list(media_rows[0]), media_rows)
    write_csv(package / "observations.csv", list(obs_rows[0]), obs_rows)
    descriptor = {
        "name": f"bigcat-synthetic-season-{spec.seed}",
        "profile": "https://raw.githubusercontent.com/tdwg/camtrap-dp/1.0/camtrap-dp-profile.json",
        "created": format_timestamp(max(r.record.captured_at for r in frames)),
        "resources": [
            {
                "name": n,
                "path": f"{n}.csv",
                "profile": "tabular-data-resource",
                "schema": f"https://raw.githubusercontent.com/tdwg/camtrap-dp/1.0/{n}-table-schema.json",
            }
            for n in ("deployments", "media", "observations")
        ],
        "licenses": [{"name": "CC0-1.0", "scope": "data"}],
        "taxonomic": [{"scientificName": SCIENTIFIC[s]} for s in spec.species],
    }
    (package / "datapackage.json").write_text(json.dumps(descriptor, indent=2) + "\n")


def score_run(season_dir: Path, run_dir: Path) -> dict:
    """Accuracy of a bulk run on a season written by :func:`write_season`.

    An encounter is right when its true individual (the majority of its frames) is in
    the gallery and it was matched to it, or is new and was declared new. Proposed new
    individuals are scored against the true (individual, side) flanks: purity and
    recall as in :func:`reid.bulk.cluster.purity_recall`.
    """
    import csv

    from reid.bulk.cluster import purity_recall
    from reid.data.manifest import read_manifest

    season_dir, run_dir = Path(season_dir), Path(run_dir)
    truth = {str(r.path.resolve()): r for r in read_manifest(season_dir / "season.csv")}
    known = {r.individual_id for r in read_manifest(season_dir / "gallery" / "manifest.csv")}
    with (run_dir / "encounters.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    right = right_known = n_known = right_new = n_new = 0
    flank: dict[str, str] = {}
    clusters: dict[str, list[str]] = {}
    for row in rows:
        ids = [truth[str(Path(p).resolve())] for p in row["media"].split("|")]
        ident = max(
            {r.individual_id for r in ids}, key=lambda i: sum(r.individual_id == i for r in ids)
        )
        is_known = ident in known
        ok = (
            (row["decision"] == "known" and row["individual"] == ident)
            if is_known
            else (row["decision"] == "new")
        )
        right += ok
        n_known += is_known
        right_known += ok and is_known
        n_new += not is_known
        right_new += ok and not is_known
        if row["proposed_individual"]:
            clusters.setdefault(row["proposed_individual"], []).append(row["encounter"])
            if not is_known:
                flank[row["encounter"]] = f"{ident}/{ids[0].side}"
    purity, recall = purity_recall(list(clusters.values()), flank)
    return {
        "encounters": len(rows),
        "correct": round(right / max(1, len(rows)), 4),
        "known_encounters": n_known,
        "known_correct": round(right_known / max(1, n_known), 4),
        "new_encounters": n_new,
        "new_detected": round(right_new / max(1, n_new), 4),
        "proposed_new_individuals": len(clusters),
        "true_new_flanks": len(set(flank.values())),
        "proposal_purity": round(purity, 4),
        "proposal_recall": round(recall, 4),
    }
