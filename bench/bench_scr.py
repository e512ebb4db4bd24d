"""SCR density estimator on simulated transboundary surveys: bias, coverage, joint vs national.

Each survey: a grid of camera stations spanning a border (the line through the middle of
the grid, countries RU west / CN east; designs cycle through 10x6, 10x8 and 10x10 stations
at 3 km, 60 or 90 daily occasions, 3 % of camera-days inactive), tiger-like animals (density
1 per 100 km², half-normal sigma 5 km, daily g0 0.02; centres uniform over the grid's
bounding box + 25 km), binary proximity detectors. Fitted with a mask of 20 km buffer (4
sigma) and 2.5 km spacing (sigma/2). Reports, over all surveys and per design:

* the joint SCR estimate: relative bias of density, RMSE, 95 % interval coverage, σ bias;
* each country's own estimate (its cameras, its detections, its half of the mask), RMSE,
  and the same with the whole mask (not clipped at the border);
* the non-spatial M0 estimate with the ½MMDM area: relative bias of density;
* fit time for 100 cameras, 60 occasions, ~50 individuals (mask spacing σ/2 and σ/4).

    nice -n 10 .venv/bin/python bench/bench_scr.py --surveys 400 --out runs/bench-scr.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TRUE_D = 1.0  # per 100 km²
SIGMA = 5000.0
G0 = 0.02
SPACING = 3000.0
DESIGNS = [(10, 6, 60), (10, 8, 60), (10, 10, 60), (10, 6, 90), (10, 8, 90), (10, 10, 90)]


def _countries(det):
    """West and east half-planes of the border line, as shapely polygons."""
    import shapely

    xs = det.xy[:, 0]
    border = (np.max(xs[[c == "RU" for c in det.country]]) + np.min(
        xs[[c == "CN" for c in det.country]])) / 2  # fmt: skip
    big = 1e7
    return {"RU": shapely.box(-big, -big, border, big), "CN": shapely.box(border, -big, big, big)}


def one_survey(
    i: int, seed: int, buffer_m: float, spacing_m: float, detector_type: str = "proximity"
) -> dict:
    from reid.scr.data import ScrDataError
    from reid.scr.fit import fit_nonspatial
    from reid.scr.mask import make_mask
    from reid.scr.simulate import border_grid, simulate_survey
    from reid.scr.transboundary import fit_by_country

    n_x, n_y, n_occ = DESIGNS[i % len(DESIGNS)]
    rng = np.random.default_rng([seed, i])
    det = border_grid(n_x, n_y, SPACING, n_occ, p_inactive=0.03, seed=rng)
    intercept = {"g0": G0} if detector_type == "proximity" else {"lambda0": G0}
    sim = simulate_survey(det, TRUE_D, SIGMA, detector_type=detector_type, buffer_m=5 * SIGMA,
                          seed=rng, **intercept)  # fmt: skip
    mask = make_mask(det, buffer_m, spacing_m, country_polygons=_countries(det))
    row = {"survey": i, "design": f"{n_x * n_y} cameras x {n_occ} occasions",
           "n_animals": sim.n_animals, "n": sim.history.n_individuals}  # fmt: skip
    try:
        tb = fit_by_country(sim.history, mask)
    except ScrDataError as exc:
        row["error"] = str(exc)
        return row
    j = tb.joint
    row.update(
        D=j.density_per_100km2, lo=j.density_ci[0], hi=j.density_ci[1], sigma=j.sigma_m,
        g0=j.detection_intercept, converged=j.converged, seconds=j.fit_seconds, shared=tb.n_shared,
        national={c: e.density_per_100km2 for c, e in tb.by_country.items()},
        national_converged={c: e.converged for c, e in tb.by_country.items()},
        not_fitted=tb.not_fitted,
    )  # fmt: skip
    # the same national surveys with masks not clipped at the border (home ranges may cross)
    from reid.scr.fit import fit_scr

    for code in ("RU", "CN"):
        at = np.array([c == code for c in sim.history.detectors.country])
        try:
            e = fit_scr(sim.history.subset_detectors(at), mask)
            row.setdefault("national_unclipped", {})[code] = e.density_per_100km2
            row.setdefault("national_unclipped_converged", {})[code] = e.converged
        except ScrDataError:
            pass
    try:
        ns = fit_nonspatial(sim.history)
        row["D_m0"] = ns.density_per_100km2
    except ScrDataError as exc:
        row["D_m0_error"] = str(exc)
    return row


def _summary(rows: list[dict]) -> dict:
    ok = [r for r in rows if "D" in r and r["converged"]]
    d = np.array([r["D"] for r in ok])
    rel = d / TRUE_D - 1
    cover = np.array([r["lo"] <= TRUE_D <= r["hi"] for r in ok])
    out = {
        "surveys": len(rows),
        "fitted_converged": len(ok),
        "not_fitted_or_not_converged": len(rows) - len(ok),
        "mean_detected": float(np.mean([r["n"] for r in rows])),
        "mean_shared": float(np.mean([r["shared"] for r in ok])) if ok else None,
        "joint_rel_bias": float(rel.mean()),
        "joint_rel_bias_se": float(rel.std(ddof=1) / math.sqrt(rel.size)),
        "joint_rel_rmse": float(np.sqrt((rel**2).mean())),
        "joint_coverage95": float(cover.mean()),
        "joint_coverage95_se": float(math.sqrt(cover.mean() * (1 - cover.mean()) / cover.size)),
        "joint_ci_below_truth": float(np.mean([r["hi"] < TRUE_D for r in ok])),
        "joint_ci_above_truth": float(np.mean([r["lo"] > TRUE_D for r in ok])),
        "sigma_rel_bias": float(np.mean([r["sigma"] / SIGMA - 1 for r in ok])),
        "mean_fit_seconds": float(np.mean([r["seconds"] for r in ok])),
    }
    for c in ("RU", "CN"):
        nat = np.array(
            [r["national"][c] for r in ok if c in r["national"] and r["national_converged"][c]]
        )
        out[f"{c}_fitted"] = int(nat.size)
        if nat.size:
            out[f"{c}_rel_bias"] = float((nat / TRUE_D - 1).mean())
            out[f"{c}_rel_rmse"] = float(np.sqrt(((nat / TRUE_D - 1) ** 2).mean()))
        unc = np.array([
            r["national_unclipped"][c] for r in ok
            if c in r.get("national_unclipped", {}) and r["national_unclipped_converged"][c]
        ])  # fmt: skip
        out[f"{c}_unclipped_fitted"] = int(unc.size)
        if unc.size:
            out[f"{c}_unclipped_rel_bias"] = float((unc / TRUE_D - 1).mean())
            out[f"{c}_unclipped_rel_rmse"] = float(np.sqrt(((unc / TRUE_D - 1) ** 2).mean()))
    m0 = np.array([r["D_m0"] for r in rows if r.get("D_m0") is not None])
    if m0.size:
        out["m0_fitted"] = int(m0.size)
        out["m0_rel_bias"] = float((m0 / TRUE_D - 1).mean())
        out["m0_rel_rmse"] = float(np.sqrt(((m0 / TRUE_D - 1) ** 2).mean()))
    return out


def timing(spacings: list[float]) -> list[dict]:
    """Fit time for 100 cameras, 60 occasions and ~50 detected individuals."""
    from reid.scr.fit import fit_scr
    from reid.scr.mask import make_mask
    from reid.scr.simulate import border_grid, simulate_survey

    det = border_grid(10, 10, SPACING, 60, seed=7)
    best = None
    for s in range(40):  # the seeded survey whose detected count is nearest 50
        sim = simulate_survey(det, 2.6, SIGMA, g0=G0, seed=s)
        if best is None or abs(sim.history.n_individuals - 50) < abs(
            best.history.n_individuals - 50
        ):
            best = sim
    out = []
    for spacing in spacings:
        mask = make_mask(det, 4 * SIGMA, spacing)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            est = fit_scr(best.history, mask)
            times.append(time.perf_counter() - t0)
        out.append({
            "cameras": det.n_detectors, "occasions": det.n_occasions,
            "individuals": best.history.n_individuals, "mask_cells": mask.n_cells,
            "mask_spacing_m": spacing, "seconds_median_of_3": float(np.median(times)),
            "D": est.density_per_100km2, "converged": est.converged,
        })  # fmt: skip
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--surveys", type=int, default=240)
    ap.add_argument("--seed", type=int, default=2027)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--buffer", type=float, default=4 * SIGMA, help="mask buffer, metres")
    ap.add_argument("--spacing", type=float, default=SIGMA / 2, help="mask spacing, metres")
    ap.add_argument("--detector", choices=("proximity", "count"), default="proximity",
                    help="count: Poisson detections, lambda0 = 0.02 per day")  # fmt: skip
    ap.add_argument("--no-timing", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    started = time.time()
    jobs = [(i, args.seed, args.buffer, args.spacing, args.detector) for i in range(args.surveys)]
    if args.workers > 1:
        with Pool(args.workers) as pool:
            rows = pool.starmap(one_survey, jobs, chunksize=4)
    else:
        rows = [one_survey(*j) for j in jobs]
    result = {
        "settings": {"true_D_per_100km2": TRUE_D, "sigma_m": SIGMA,
                     "g0_or_lambda0_daily": G0, "detector": args.detector,
                     "camera_spacing_m": SPACING, "mask_buffer_m": args.buffer,
                     "mask_spacing_m": args.spacing, "seed": args.seed,
                     "designs": [f"{a * b} cameras x {c} occasions" for a, b, c in DESIGNS]},
        "all": _summary(rows),
        "by_design": {d: _summary([r for r in rows if r["design"] == d])
                      for d in sorted({r["design"] for r in rows})},
    }  # fmt: skip
    if not args.no_timing:
        result["timing"] = timing([SIGMA / 2, SIGMA / 4])
    result["wall_seconds"] = time.time() - started
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        args.out.with_suffix(".rows.json").write_text(json.dumps(rows) + "\n")


if __name__ == "__main__":
    main()
