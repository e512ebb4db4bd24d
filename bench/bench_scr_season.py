"""A population survey estimated end to end: synthetic images -> bulk matching ->
identities -> capture histories -> SCR density, against the same survey's estimate from
the true identities (the effect of identification errors).

    .venv/bin/python bench/bench_scr_season.py [--model models/bigcat-default]
        [--seeds 1 2 3] [--out DIR] [--frames-per-burst 2] [--known-share 0.6]

Per seed: a cross-border survey (:func:`reid.scr.survey.survey_layout`: 8 x 6 stations
4 km apart, two facing cameras each, 60 days, some cameras out for a spell) and tigers
at 1 per 100 km² with σ 5 km and daily g0 0.05 (:func:`reid.scr.survey.simulate_detections`,
the SCR model). Every detection is a pass: ``--frames-per-burst`` frames of the left flank
on one camera and of the right flank on the other, rendered with the synthetic coats of
:mod:`reid.synthetic` into a Camtrap DP package. A gallery holds ``--known-share`` of the
animals of the landscape (both flanks, earlier photos); the rest are new. ``reid enroll``
and ``reid bulk`` (default settings, ``--no-registry``) identify the encounters; the run's
identities (a catalogue animal, else its proposed new individual, one per flank) make the
matcher's capture history. Both histories use the same deployments (with their gaps),
5-day occasions, a 25 km mask buffer of 2 km cells (not clipped to land: the simulation
places animals in the whole rectangle), and flank ``left`` (the survey practice) and
``both``. Prints one JSON object (and writes it to OUT/results.json).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def render_survey(out: Path, seed: int, frames_per_burst: int, known_share: float) -> dict:
    """The survey of ``seed`` and its images (:func:`reid.scr.survey.write_survey_season`)."""
    from reid.scr.survey import simulate_detections, survey_layout, write_survey_season

    deps = survey_layout(8, 6, 4000, days=60, seed=seed)
    sv = simulate_detections(deps, 1.0, 5000, 0.05, seed=seed)
    images = write_survey_season(out, sv, seed, frames_per_burst, known_share)
    return {"survey": sv, "images": images}


def reid(*args: str) -> None:
    cmd = [str(ROOT / ".venv" / "bin" / "reid"), *args]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def estimates(deployments, detections, flank: str) -> dict:
    from reid.scr.assess import assess
    from reid.scr.histories import build_history

    b = build_history(deployments, detections, occasion_days=5, flank=flank)
    a = assess(b, buffer_m=25_000, spacing_m=2_000, land_only=False)
    j = a.joint
    out = {
        "individuals": b.history.n_individuals,
        "detections": b.history.n_detections,
        "density": round(j.density_per_100km2, 3),
        "density_ci": [round(v, 3) for v in j.density_ci],
        "sigma_km": round(j.sigma_m / 1000, 2),
        "g0": round(j.g0, 4),
        "shared_individuals": a.transboundary.n_shared,
        "by_country": {
            c: round(e.density_per_100km2, 3) for c, e in a.transboundary.by_country.items()
        },  # fmt: skip
        "skipped": b.skipped_counts(),
        "fit_s": round(j.fit_seconds, 2),
    }
    return out


def identification(run: Path, truth_of_media: dict, known: set) -> dict:
    """Encounters right (known: the right animal; new: declared new), and how the run's
    identities split or merge the true animals (per flank)."""
    with (run / "encounters.csv").open() as f:
        rows = list(csv.DictReader(f))
    right = 0
    pairs = []
    for r in rows:
        ids = [truth_of_media.get(str(Path(p).resolve())) for p in r["media"].split("|")]
        true = Counter(ids).most_common(1)[0][0]
        ident = r["individual"] if r["decision"] == "known" else (
            r["proposed_individual"] or r["encounter"])  # fmt: skip
        pairs.append((true, r["side"], ident, r["decision"]))
        right += (r["decision"] == "known" and r["individual"] == true) or (
            r["decision"] == "new" and true not in known
        )
    by_true: dict = {}
    by_ident: dict = {}
    for true, side, ident, _ in pairs:
        by_true.setdefault((true, side), set()).add(ident)
        by_ident.setdefault((ident, side), set()).add(true)
    return {
        "encounters": len(rows),
        "encounters_right": right,
        "true_flanks": len(by_true),
        "flanks_split": sum(len(v) > 1 for v in by_true.values()),
        "identities_merging_animals": sum(len(v) > 1 for v in by_ident.values()),
        "decisions": dict(Counter(p[3] for p in pairs)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "models" / "bigcat-default"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench-scr-season"))
    ap.add_argument("--frames-per-burst", type=int, default=2)
    ap.add_argument("--known-share", type=float, default=0.6)
    args = ap.parse_args()
    from reid.scr.histories import detections_from_run

    results = []
    for seed in args.seeds:
        out = args.out / f"seed{seed}"
        t = time.perf_counter()
        s = render_survey(out, seed, args.frames_per_burst, args.known_share)
        sv, images = s["survey"], s["images"]
        render_s = time.perf_counter() - t
        t = time.perf_counter()
        reid("enroll", str(images.gallery), "--index", str(out / "index"), "--model", args.model)
        reid("bulk", str(images.season), "--index", str(out / "index"), "--out",
             str(out / "run"), "--no-registry")  # fmt: skip
        match_s = time.perf_counter() - t
        from reid.scr.histories import Detection

        true_dets = [Detection(images.names[d.individual], d.time, d.side, d.deployment,
                               species="tiger", source=d.source, linked=True)
                     for d in sv.detections]  # fmt: skip
        run_dets = detections_from_run(out / "run")
        row = {
            "seed": seed,
            "frames": images.frames,
            "animals_in_landscape": len(sv.animal_ids),
            "animals_in_gallery": len(images.known),
            "animals_detected": int(sv.detected.sum()),
            "render_s": round(render_s, 1),
            "enrol_and_bulk_s": round(match_s, 1),
            "identification": identification(out / "run", images.truth_of_media, images.known),
        }
        for flank in ("left", "both"):
            row[f"truth_{flank}"] = estimates(sv.deployments, true_dets, flank)
            row[f"matcher_{flank}"] = estimates(sv.deployments, run_dets, flank)
        results.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    summary = {"true_density": 1.0, "sigma_km": 5.0, "g0_daily": 0.05, "runs": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
