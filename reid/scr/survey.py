"""A synthetic camera-trap survey in longitude/latitude, with known density: the input of
the population notebook, the tests and the end-to-end benchmark (bench/bench_scr_season.py).

:func:`survey_layout` puts a grid of paired-camera stations across the Russia-China
border of the Amur landscape (the countries from Natural Earth borders); each station's
two facing cameras work from the survey's start to its end, except that a station may
lose a camera for a spell (a gap in one deployment). :func:`simulate_detections` draws
activity centres and detections with :func:`reid.scr.simulate.simulate_survey` (the
model the fit assumes) and turns each detection into one pass of the animal past the
station: its left flank on one camera and its right flank on the other, seconds apart,
at a random time of a day on which the station worked. Everything comes from ``seed``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from reid.errors import ReidError
from reid.scr.data import Detectors
from reid.scr.histories import CameraDeployment, Detection, projection_for

#: Centre of the default layout: the Russia-China border west of Vladivostok.
CENTRE = (43.40, 131.25)


@dataclass(frozen=True)
class SyntheticSurvey:
    deployments: list[CameraDeployment]
    detections: list[Detection]  # both flanks of every pass; ``linked``: truth is known
    centres_latlon: np.ndarray  # (N_total, 2) true activity centres of all animals
    detected: np.ndarray  # (N_total,) bool
    animal_ids: tuple[str, ...]  # of all N_total animals
    density_per_100km2: float
    sigma_m: float


def survey_layout(
    n_x: int = 8,
    n_y: int = 6,
    spacing_m: float = 4_000.0,
    days: int = 60,
    start: datetime = datetime(2025, 11, 1),
    centre: tuple[float, float] = CENTRE,
    p_gap: float = 0.1,
    seed: int = 0,
) -> list[CameraDeployment]:
    """Stations ``ST-01``... on an ``n_x`` by ``n_y`` grid, two cameras (``a``, ``b``)
    each; with probability ``p_gap`` a station's camera ``a`` is out for 5-15 days."""
    from reid.geo import country_at

    rng = np.random.default_rng(seed)
    proj = projection_for([centre[0]], [centre[1]])
    gx, gy = np.meshgrid((np.arange(n_x) - (n_x - 1) / 2) * spacing_m,
                         (np.arange(n_y) - (n_y - 1) / 2) * spacing_m)  # fmt: skip
    lat, lon = proj.inverse(np.column_stack([gx.ravel(), gy.ravel()]))
    end = start + timedelta(days=days)
    out = []
    for k, (la, lo) in enumerate(zip(lat, lon, strict=True)):
        station = f"ST-{k + 1:02d}"
        country = country_at(float(la), float(lo))
        la, lo = round(float(la), 6), round(float(lo), 6)
        for cam in ("a", "b"):
            spans = [(start, end)]
            if cam == "a" and rng.uniform() < p_gap:
                g0 = start + timedelta(days=int(rng.integers(5, days - 20)))
                spans = [(start, g0), (g0 + timedelta(days=int(rng.integers(5, 16))), end)]
            for n, (a, b) in enumerate(spans):
                out.append(CameraDeployment(f"{station}{cam}-{n + 1}", station, la, lo, a, b,
                                            country, f"{station}{cam}"))  # fmt: skip
    return out


def load_registry(session, survey: SyntheticSurvey, owners: dict[str, str]) -> int:
    """Record ``survey`` in the registry as confirmed sightings: one site per station
    owned by ``owners[country]`` (an organisation code, created when new), one deployment
    per camera interval, one photo and sighting per detection; each animal belongs to the
    organisation of the country where it was first seen. Returns the sightings added."""
    from reid.registry import (
        add_individual,
        add_media,
        add_sighting,
        ensure_deployment,
        ensure_organisation,
        ensure_site,
    )

    orgs = {c: ensure_organisation(session, code, country=c) for c, code in owners.items()}
    deps = {}
    for d in survey.deployments:
        org = orgs.get(d.country or "")
        site = ensure_site(session, d.station, d.country or "", d.lat, d.lon, organisation=org)
        deps[d.deployment] = ensure_deployment(
            session, d.deployment, site, d.lat, d.lon, camera_id=d.camera, start=d.start,
            end=d.end,
        )  # fmt: skip
    country_of = {d.deployment: d.country for d in survey.deployments}
    animals = {}
    n = 0
    for det in sorted(survey.detections, key=lambda x: x.time):
        if det.individual not in animals:
            org = orgs.get(country_of[det.deployment] or "")
            animals[det.individual] = add_individual(session, det.individual, det.species or
                                                     "tiger", organisation=org)  # fmt: skip
        media = add_media(session, deps[det.deployment], f"synthetic/{det.source}.jpg", det.time,
                          sha256="0" * 64)  # fmt: skip
        add_sighting(session, media, det.species or "tiger", side=det.side,
                     individual=animals[det.individual], status="confirmed",
                     decided_by="synthetic survey")  # fmt: skip
        n += 1
    return n


def simulate_detections(
    deployments: list[CameraDeployment],
    density_per_100km2: float = 1.0,
    sigma_m: float = 5_000.0,
    g0: float = 0.05,
    species: str = "tiger",
    seed: int = 0,
) -> SyntheticSurvey:
    """Daily proximity detections under the SCR model (occasions = days), as passes."""
    from reid.scr.histories import build_history
    from reid.scr.simulate import simulate_survey

    rng = np.random.default_rng(seed + 1)
    layout = build_history(deployments, [], occasion_days=1)
    det = layout.history.detectors
    detectors = Detectors(ids=det.ids, xy=det.xy, usage=np.minimum(det.usage, 1.0),
                          country=det.country)  # fmt: skip
    sim = simulate_survey(detectors, density_per_100km2, sigma_m, g0=g0, seed=seed)
    n_total = sim.n_animals
    prefix = "T" if species == "tiger" else "L"
    ids = tuple(f"SCR-{prefix}-{i + 1:03d}" for i in range(n_total))
    detected_ids = [ids[i] for i in np.flatnonzero(sim.detected)]
    cams: dict[str, list[CameraDeployment]] = {}
    for d in deployments:
        cams.setdefault(d.station, []).append(d)
    out = []
    for i, k, s in zip(*np.nonzero(sim.history.counts), strict=True):
        station = det.ids[k]
        day = layout.start + timedelta(days=int(s))
        working = [d for d in cams[station] if d.start <= day + timedelta(hours=12) < d.end]
        for _ in range(20):  # a time at which both cameras (else one) worked
            t = day + timedelta(seconds=int(rng.integers(0, 86400)))
            here = [d for d in cams[station] if d.start <= t <= d.end]
            if here:
                break
        else:  # pragma: no cover - the station worked that day
            here = working
        left_first = rng.uniform() < 0.5
        for side in ("left", "right"):
            cam_letter = "a" if (side == "left") == left_first else "b"
            on = [d for d in here if (d.camera or "").endswith(cam_letter)]
            if not on:
                continue  # that camera was out: this flank was not photographed
            when = t + timedelta(seconds=int(rng.integers(1, 20)))
            out.append(Detection(detected_ids[i], when, side, on[0].deployment, species=species,
                                 source=f"{detected_ids[i]}-{station}-{s}-{side}",
                                 linked=True))  # fmt: skip
    lat, lon = layout.projection.inverse(sim.centres)
    return SyntheticSurvey(
        deployments=deployments, detections=out,
        centres_latlon=np.column_stack([lat, lon]), detected=sim.detected, animal_ids=ids,
        density_per_100km2=density_per_100km2, sigma_m=sigma_m,
    )  # fmt: skip


@dataclass(frozen=True)
class SurveySeason:
    """The images of a synthetic survey, written by :func:`write_survey_season`."""

    season: Path  # Camtrap DP package of the survey's frames
    gallery: Path  # catalogue (manifest.csv) of the animals known before the survey
    deployments: Path  # deployments.csv with the true working intervals
    names: dict[str, str]  # survey animal id -> catalogue id of its coat
    known: frozenset[str]  # catalogue ids in the gallery
    truth_of_media: dict[str, str]  # resolved frame path -> catalogue id
    frames: int


def write_survey_season(
    out: Path,
    survey: SyntheticSurvey,
    seed: int,
    frames_per_burst: int = 2,
    known_share: float = 0.6,
    gallery_per_side: int = 2,
    workers: int = 2,
) -> SurveySeason:
    """Render every detection of ``survey`` as a burst of ``frames_per_burst`` camera-trap
    frames of that flank (the coats of :mod:`reid.synthetic`, animal ``i`` wearing
    catalogue individual ``i``'s), written as a Camtrap DP package (``out/season``) that
    ``reid bulk`` reads; and a gallery (``out/gallery``) of the first ``known_share`` of
    the landscape's animals, detected or not, as a catalogue of earlier photos holds them.
    ``out/deployments.csv`` keeps the true deployments (the package's own deployment rows
    only span each camera's frames)."""
    from reid.data.records import ImageRecord
    from reid.scr.histories import write_deployments
    from reid.synthetic.catalogue import write_catalogue
    from reid.synthetic.metadata import Site
    from reid.synthetic.season import Frame, SeasonSpec, _render, _write_camtrap
    from reid.synthetic.seeds import individual_id

    out = Path(out)
    n_known = max(1, round(known_share * len(survey.animal_ids)))
    index = {a: i for i, a in enumerate(survey.animal_ids)}
    names = {a: individual_id("tiger", i, seed) for a, i in index.items()}
    write_deployments(out / "deployments.csv", survey.deployments)
    write_catalogue(out / "gallery", species=("tiger",), individuals=n_known,
                    images_per_side=gallery_per_side, seed=seed, mode="frame",
                    workers=workers)  # fmt: skip
    by_dep = {d.deployment: d for d in survey.deployments}
    frames, truth, passes = [], {}, Counter()
    for det in sorted(survey.detections, key=lambda d: (d.time, d.source)):
        d = by_dep[det.deployment]
        passes[(det.individual, det.side)] += 1
        site = Site(d.station, d.station, d.country or "", d.lat, d.lon, 0)
        t = det.time.replace(tzinfo=UTC)
        for k in range(frames_per_burst):
            path = out / "season" / "media" / (d.camera or d.deployment) / f"{det.source}_{k}.jpg"
            rec = ImageRecord(path=path, individual_id=names[det.individual], species="tiger",
                              side=det.side, captured_at=t, site=d.station, country=d.country,
                              lat=d.lat, lon=d.lon, camera_id=d.deployment,
                              encounter=det.source)  # fmt: skip
            frames.append(Frame(rec, index[det.individual], passes[(det.individual, det.side)],
                                k, False, d.deployment, d.station, site))  # fmt: skip
            truth[str(path.resolve())] = names[det.individual]
            t += timedelta(seconds=2)
    if not frames:
        raise ReidError("the survey has no detections to render")
    if workers <= 1:
        boxes = _render(frames, seed)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        from reid.synthetic.season import _START_METHOD, _worker_init

        chunks = [frames[i::workers] for i in range(workers)]
        ctx = multiprocessing.get_context(_START_METHOD)
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init) as pool:
            parts = list(pool.map(_render, chunks, [seed] * workers))
        boxes = [None] * len(frames)
        for i, part in enumerate(parts):
            boxes[i::workers] = part
    _write_camtrap(out / "season", frames, boxes, SeasonSpec(species=("tiger",), seed=seed))
    known = frozenset(names[a] for a, i in index.items() if i < n_known)
    return SurveySeason(out / "season", out / "gallery", out / "deployments.csv", names, known,
                        truth, len(frames))  # fmt: skip
