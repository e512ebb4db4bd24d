"""``reid population histories|export|estimate|report|synth``: capture histories, exports
to R, spatial capture-recapture density and the transboundary report (:mod:`reid.scr`).

The animals come from the registry's confirmed sightings (the default), a season run
(``--run RUN_DIR``: its encounters) or a detections CSV (``--detections``); the cameras
from ``--deployments`` (a Camtrap DP package, its deployments.csv or a plain CSV), else
the registry's deployments or the run's ``camtrap-dp/``. The command line is a local
administrator who sees exact coordinates, except the report, which is generalised
unless ``--exact`` (it is made to be handed over).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from reid.errors import ReidError

population_app = typer.Typer(
    help="Population assessment: capture histories, exports to secr/camtrapR, SCR density "
    "per country and jointly, and a report to hand across the border.",
    no_args_is_help=True,
)

Run = Annotated[Path | None, typer.Option("--run", help="A `reid bulk` run folder.")]
DetectionsCsv = Annotated[
    Path | None,
    typer.Option("--detections", help="A CSV: individual, time, camera (or station), side."),
]
Deployments = Annotated[
    Path | None,
    typer.Option(help="Camera deployments: a Camtrap DP package, its deployments.csv, or a "
                 "CSV with station, camera, lat, lon, start, end[, country]."),
]  # fmt: skip
Species = Annotated[
    str | None,
    typer.Option(help="tiger or leopard (default: the one species the detections hold; "
                 "required when they hold both)."),
]
Flank = Annotated[
    str,
    typer.Option(help="left, right or both: which flank's detections make the history (one "
                 "flank avoids counting an animal known from one side only twice)."),
]  # fmt: skip
OccasionDays = Annotated[int, typer.Option(min=1, help="Days per sampling occasion.")]
Start = Annotated[str | None, typer.Option(help="Survey start (date, UTC).")]
End = Annotated[str | None, typer.Option(help="Survey end (date or date-time, UTC).")]
DetectorType = Annotated[
    str, typer.Option(help="proximity (detected or not per occasion) or count.")
]
Proposed = Annotated[
    bool, typer.Option("--include-proposed", help="Registry: proposed sightings count too.")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
BufferKm = Annotated[float, typer.Option(min=0.1, help="Mask buffer around the stations, km.")]
SpacingKm = Annotated[float, typer.Option(min=0.05, help="Mask cell size, km.")]
Habitat = Annotated[
    Path | None, typer.Option(help="GeoJSON habitat polygon (lon/lat) to clip the mask to.")
]
LandOnly = Annotated[
    bool, typer.Option("--land-only/--no-land-only", help="Clip the mask to land.")
]


def _date(text: str | None, what: str):
    if text is None:
        return None
    from reid.cli_registry import _when

    return _when(text, what)


def _build(run, detections, deployments, species, flank, occasion_days, start, end,
           detector_type, include_proposed):  # fmt: skip
    from reid.scr import histories as h

    if detector_type not in ("proximity", "count"):
        raise ReidError(f"--detector-type {detector_type!r} is not proximity or count")
    if run is not None and detections is not None:
        raise ReidError("give --run or --detections, not both")
    if run is not None:
        dets = h.detections_from_run(run, species)
        deps = h.read_deployments(deployments) if deployments else h.run_deployments(run)
    elif detections is not None:
        if deployments is None:
            raise ReidError("--detections needs --deployments")
        dets = h.read_detections(detections, species)
        deps = h.read_deployments(deployments)
    else:
        from reid.registry import Registry

        statuses = ("confirmed", "proposed") if include_proposed else ("confirmed",)
        with Registry().session() as s:
            dets = h.detections_from_registry(s, species, statuses=statuses)
            deps = (
                h.read_deployments(deployments) if deployments else h.deployments_from_registry(s)
            )
    return h.build_history(
        deps, dets, occasion_days=occasion_days, start=_date(start, "--start"),
        end=_date(end, "--end"), flank=flank, detector_type=detector_type,
    )  # fmt: skip


def _say_build(b) -> None:
    s = b.summary()
    typer.echo(
        f"{s['individuals']} individuals, {s['detections']} detections at {s['detectors']} "
        f"stations ({', '.join(s['countries']) or 'no country'}), {s['occasions']} occasions "
        f"of {s['occasion_days']} days from {s['start']} to {s['end']}, "
        f"{s['trap_days']:.0f} trap-days; flank {s['flank']}: {s['both_flanks']} individuals "
        f"known from both flanks, {s['one_flank_only']} from one only"
    )
    for reason, n in sorted(s["skipped"].items()):
        typer.echo(f"not used: {n} detections ({reason})")
    if b.flank_warning():
        typer.echo(f"warning: {b.flank_warning()}")


def register(app: typer.Typer, user_errors) -> None:
    """Add ``reid population ...`` to ``app``."""

    @population_app.command("histories")
    @user_errors
    def histories(
        run: Run = None, detections: DetectionsCsv = None, deployments: Deployments = None,
        species: Species = None, flank: Flank = "both", occasion_days: OccasionDays = 1,
        start: Start = None, end: End = None, detector_type: DetectorType = "proximity",
        include_proposed: Proposed = False, as_json: AsJson = False,
    ) -> None:  # fmt: skip
        """Build the capture history and say what it holds and which detections it could
        not use (outside the survey, camera not working, no deployment, other flank)."""
        from reid.scr.histories import shared_individuals

        b = _build(run, detections, deployments, species, flank, occasion_days, start, end,
                   detector_type, include_proposed)  # fmt: skip
        if as_json:
            typer.echo(json.dumps({**b.summary(), "shared": shared_individuals(b)}, indent=2))
            return
        _say_build(b)
        sh = shared_individuals(b)
        per = ", ".join(f"{c} {n}" for c, n in sh["by_country"].items())
        typer.echo(f"individuals per country: {per}; in two or more countries: "
                   f"{sh['in_several_countries']}")  # fmt: skip

    @population_app.command("export")
    @user_errors
    def export(
        fmt: Annotated[str, typer.Argument(metavar="FORMAT", help="secr or camtrapr.")],
        out: Annotated[Path, typer.Option(help="Folder to write into.")],
        run: Run = None, detections: DetectionsCsv = None, deployments: Deployments = None,
        species: Species = None, flank: Flank = "both", occasion_days: OccasionDays = 1,
        start: Start = None, end: End = None, detector_type: DetectorType = "proximity",
        include_proposed: Proposed = False,
        generalise: Annotated[bool, typer.Option(
            "--generalise", help="Station places at 0.25° cell centres, opaque detector "
            "names: for a reader without the precise-location permission.")] = False,
        exact: Annotated[bool, typer.Option(
            "--exact", help="Exact station places and codes, camera codes and file names: "
            "for the data holder only.")] = False,
    ) -> None:  # fmt: skip
        """Write the capture history for R: secr (capt.txt, trap.txt with usage, read.R)
        or camtrapR (recordTable.csv, cameraOperation.csv, CTtable.csv). Say which places
        it holds: --exact (the data holder's own use) or --generalise (to hand over)."""
        from reid.scr.exports import write_camtrapr, write_secr

        if fmt not in ("secr", "camtrapr"):
            raise ReidError(f"format {fmt!r} is not secr or camtrapr")
        if exact == generalise:
            raise ReidError(
                "say which places the export holds: --exact (exact camera places, for the "
                "data holder only) or --generalise (0.25° cells, to hand over)"
            )
        b = _build(run, detections, deployments, species, flank, occasion_days, start, end,
                   detector_type, include_proposed)  # fmt: skip
        _say_build(b)
        write = write_secr if fmt == "secr" else write_camtrapr
        for what, path in write(b, out, exact=exact).items():
            typer.echo(f"wrote {what}: {path}")
        typer.echo(f"{out}: " + ("EXACT locations: do not share" if exact else "generalised"))

    @population_app.command("estimate")
    @user_errors
    def estimate(
        run: Run = None, detections: DetectionsCsv = None, deployments: Deployments = None,
        species: Species = None, flank: Flank = "both", occasion_days: OccasionDays = 1,
        start: Start = None, end: End = None, detector_type: DetectorType = "proximity",
        include_proposed: Proposed = False, buffer_km: BufferKm = 25.0,
        spacing_km: SpacingKm = 2.0, habitat: Habitat = None, land_only: LandOnly = True,
        as_json: AsJson = False,
    ) -> None:  # fmt: skip
        """Fit SCR density jointly and per country (and the non-spatial estimate beside)."""
        a = _assess(run, detections, deployments, species, flank, occasion_days, start, end,
                    detector_type, include_proposed, buffer_km, spacing_km, habitat,
                    land_only)  # fmt: skip
        if as_json:
            typer.echo(json.dumps(a.to_dict(), indent=2))
            return
        _say_build(a.build)
        _say_estimates(a)

    @population_app.command("report")
    @user_errors
    def report(
        out: Annotated[Path, typer.Option(help="Folder for population.html and its map.")],
        run: Run = None, detections: DetectionsCsv = None, deployments: Deployments = None,
        species: Species = None, flank: Flank = "both", occasion_days: OccasionDays = 1,
        start: Start = None, end: End = None, detector_type: DetectorType = "proximity",
        include_proposed: Proposed = False, buffer_km: BufferKm = 25.0,
        spacing_km: SpacingKm = 2.0, habitat: Habitat = None, land_only: LandOnly = True,
        title: Annotated[str, typer.Option(help="The report's title.")] = "",
        exact: Annotated[bool, typer.Option(
            "--exact", help="Exact camera and activity-centre positions: for the data "
            "holder only (the default report is generalised, to be handed over).")] = False,
    ) -> None:  # fmt: skip
        """The transboundary report: estimates, individuals shared across the border, a
        map of stations, activity centres and mask, method and caveats (one HTML page)."""
        from reid.scr.report import write_report

        a = _assess(run, detections, deployments, species, flank, occasion_days, start, end,
                    detector_type, include_proposed, buffer_km, spacing_km, habitat,
                    land_only)  # fmt: skip
        _say_estimates(a)
        page = write_report(a, out, exact=exact, title=title, species=species)
        typer.echo(f"wrote {page} ({'EXACT locations: do not share' if exact else 'generalised'})")

    @population_app.command("synth")
    @user_errors
    def synth(
        out: Annotated[Path, typer.Option(help="Folder for deployments.csv, detections.csv.")],
        stations_x: Annotated[int, typer.Option(min=1, help="Stations west-east.")] = 8,
        stations_y: Annotated[int, typer.Option(min=1, help="Stations south-north.")] = 6,
        spacing_km: Annotated[float, typer.Option(min=0.1, help="Station spacing, km.")] = 4.0,
        days: Annotated[int, typer.Option(min=25, help="Survey length, days.")] = 60,
        density: Annotated[float, typer.Option(min=0.0, help="Animals per 100 km².")] = 1.0,
        sigma_km: Annotated[float, typer.Option(min=0.1, help="Half-normal σ, km.")] = 5.0,
        g0: Annotated[float, typer.Option(min=1e-4, max=0.9999, help="Daily g0.")] = 0.05,
        seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    ) -> None:  # fmt: skip
        """A synthetic survey with known density across the Russia-China border: paired
        cameras per station, detections drawn from the SCR model (truth.json says it)."""
        from reid.scr.histories import write_deployments, write_detections
        from reid.scr.survey import simulate_detections, survey_layout

        deps = survey_layout(stations_x, stations_y, spacing_km * 1000, days, seed=seed)
        sv = simulate_detections(deps, density, sigma_km * 1000, g0, seed=seed)
        out.mkdir(parents=True, exist_ok=True)
        write_deployments(out / "deployments.csv", deps)
        write_detections(out / "detections.csv", sv.detections)
        truth = {"density_per_100km2": density, "sigma_m": sigma_km * 1000, "g0_daily": g0,
                 "animals_in_region": int(sv.detected.size),
                 "animals_detected": int(sv.detected.sum())}  # fmt: skip
        (out / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
        typer.echo(f"wrote {len(deps)} deployments and {len(sv.detections)} detections "
                   f"({truth['animals_detected']} animals) to {out}")  # fmt: skip

    app.add_typer(population_app, name="population")


def _assess(
    run, detections, deployments, species, flank, occasion_days, start, end,
    detector_type, include_proposed, buffer_km, spacing_km, habitat, land_only,
):  # fmt: skip
    from reid.scr.assess import assess

    b = _build(run, detections, deployments, species, flank, occasion_days, start, end,
               detector_type, include_proposed)  # fmt: skip
    shape = None
    if habitat is not None:
        try:
            shape = json.loads(Path(habitat).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ReidError(f"--habitat {habitat}: {exc}") from None
    return assess(b, buffer_m=buffer_km * 1000, spacing_m=spacing_km * 1000, habitat=shape,
                  land_only=land_only)  # fmt: skip


def _line(name: str, est) -> str:
    lo, hi = est.density_ci
    return (f"{name:<10} D = {est.density_per_100km2:.2f} /100 km² (SE {est.density_se:.2f}, "
            f"95 % {lo:.2f}-{hi:.2f}), N in mask {est.abundance:.1f}, "
            f"σ {est.sigma_m / 1000:.2f} km, {est.n_individuals} individuals")  # fmt: skip


def _say_estimates(a) -> None:
    tb = a.transboundary
    typer.echo(_line("joint", a.joint))
    for code, est in sorted(tb.by_country.items()):
        typer.echo(_line(code, est))
    for code, why in tb.not_fitted.items():
        typer.echo(f"{code:<10} not estimated: {why}")
    if tb.by_country:
        total = sum(e.abundance for e in tb.by_country.values())
        typer.echo(f"sum of the national abundances {total:.1f} (joint {a.joint.abundance:.1f})")
    typer.echo(f"individuals detected in two or more countries: {tb.n_shared}")
    ns = a.nonspatial
    if ns is not None:
        typer.echo(f"non-spatial {ns.model}: N = {ns.abundance:.1f} (95 % "
                   f"{ns.abundance_ci[0]:.1f}-{ns.abundance_ci[1]:.1f})")  # fmt: skip
    for w in a.warnings:
        typer.echo(f"warning: {w}")
