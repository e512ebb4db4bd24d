"""Registry commands: sightings, individuals, movements, exports, imports and maps.

They all use the registry in the data home (``DATA_HOME/registry.sqlite``) unless
``$REID_DATABASE_URL`` names another (PostgreSQL). The command line acts as a local
administrator who sees exact coordinates; ``--generalise`` shows what callers without the
precise-location permission get.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import click
import typer
from typer.core import TyperGroup

from reid.errors import ReidError
from reid.privacy import LOCAL_ADMIN, PUBLIC, Viewer

Generalise = Annotated[
    bool,
    typer.Option("--generalise", help="Show generalised locations (0.25° grid cells), as "
                 "callers without the precise-location permission see them."),
]  # fmt: skip
Since = Annotated[
    str | None, typer.Option(help="Only from this date/time on (ISO 8601, UTC if no zone).")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
By = Annotated[str, typer.Option("--by", help="Who decides (kept in the decision trail).")]


def _viewer(generalise: bool) -> Viewer:
    return PUBLIC if generalise else LOCAL_ADMIN


def _when(text: str | None, what: str = "date") -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ReidError(f"{what} {text!r} is not an ISO 8601 date or date-time") from None
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _registry():
    from reid.registry import Registry

    return Registry()


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # pragma: no cover - no user name in the environment
        return "cli"


sightings_app = typer.Typer(help="Record and list sightings.", no_args_is_help=True)
individuals_app = typer.Typer(help="List, inspect, merge and split individuals.",
                              no_args_is_help=True)  # fmt: skip
import_app = typer.Typer(help="Bring monitoring data in.", no_args_is_help=True)


class ExportGroup(TyperGroup):
    """``reid export FORMAT ...`` for data; ``reid export CHECKPOINT --out DIR`` for models."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["model", *args]
        return super().parse_args(ctx, args)


export_app = typer.Typer(
    cls=ExportGroup,
    no_args_is_help=True,
    help="Export data (camtrap-dp, geojson, csv) or a model release "
    "(reid export CHECKPOINT --out DIR, same as reid export model).",
)


@sightings_app.command("add")
def sightings_add(
    file: Annotated[Path, typer.Argument(help="The photo (its SHA-256 is recorded).")],
    species: Annotated[str, typer.Option(help="tiger or leopard.")],
    site: Annotated[str, typer.Option(help="Site code (created when new).")],
    at: Annotated[str, typer.Option(help="Capture time, ISO 8601 (UTC if no zone).")],
    individual: Annotated[
        str | None, typer.Option(help="Individual code (created when new).")
    ] = None,
    country: Annotated[str | None, typer.Option(help="ISO 3166-1 alpha-2 of a new site.")] = None,
    lat: Annotated[float | None, typer.Option(help="Camera latitude (WGS 84).")] = None,
    lon: Annotated[float | None, typer.Option(help="Camera longitude (WGS 84).")] = None,
    camera: Annotated[str | None, typer.Option(help="Camera id (default: the site's).")] = None,
    protected_area: Annotated[str | None, typer.Option(help="Its protected area.")] = None,
    side: Annotated[str, typer.Option(help="left, right or unknown flank.")] = "unknown",
    box: Annotated[
        str | None, typer.Option(help="Bounding box x,y,w,h as fractions of the image.")
    ] = None,
    status: Annotated[str, typer.Option(help="proposed or confirmed.")] = "confirmed",
    by: By = "",
    reason: Annotated[str | None, typer.Option(help="Why (kept in the decision trail).")] = None,
) -> None:
    """Record one sighting of an animal on a photo."""
    from sqlalchemy import select

    from reid.registry import services as sv
    from reid.registry.models import Site

    if not file.is_file():
        raise ReidError(f"{file}: no such file")
    moment = _when(at, "--at")
    bbox = None
    if box is not None:
        try:
            bbox = tuple(float(v) for v in box.split(","))
        except ValueError:
            raise ReidError(f"--box {box!r} is not x,y,w,h numbers") from None
    reg = _registry()
    with reg.session() as s:
        place = s.scalar(select(Site).where(Site.code == site))
        if place is None:
            if country is None or lat is None or lon is None:
                raise ReidError(f"site {site!r} is new: give --country, --lat and --lon")
            place = sv.ensure_site(s, site, country, lat, lon, protected_area)
        dep = sv.ensure_deployment(s, f"{site}/{camera or 'cam'}", place, lat, lon, camera)
        media = sv.add_media(s, dep, file.resolve(), moment)
        ind = None
        if individual is not None:
            owner = place.organisation.code if place.organisation else None
            ind = sv.find_individual(s, individual, owner)
            if ind is None:
                ind = sv.add_individual(s, individual, species, organisation=place.organisation)
        sig = sv.add_sighting(s, media, species, side=side, box=bbox, individual=ind,
                              status=status, decided_by=by or _user(), reason=reason)  # fmt: skip
        typer.echo(f"added sighting {sig.code} ({status}) to {reg.url}")


@sightings_app.command("list")
def sightings_list(
    individual: Annotated[str | None, typer.Option(help="Only this individual.")] = None,
    country: Annotated[str | None, typer.Option(help="Only in this country.")] = None,
    status: Annotated[str | None, typer.Option(help="proposed, confirmed or rejected.")] = None,
    since: Since = None,
    as_json: AsJson = False,
    generalise: Generalise = False,
) -> None:
    """List sightings, oldest first."""
    from reid.export import sighting_row
    from reid.registry import list_sightings

    with _registry().session() as s:
        views = list_sightings(s, _viewer(generalise), individual=individual, country=country,
                               status=status, since=_when(since))  # fmt: skip
    if as_json:
        typer.echo(json.dumps([sighting_row(v) for v in views], indent=1))
        return
    for v in views:
        typer.echo(f"{v.code}  {v.captured_at:%Y-%m-%d %H:%M}  {v.individual or '-':12} "
                   f"{v.species:7} {v.side:7} {v.status:9} {v.country} {v.site}  "
                   f"{v.lat:.5f},{v.lon:.5f}")  # fmt: skip
    typer.echo(f"{len(views)} sightings")


@sightings_app.command("confirm")
def sightings_confirm(
    code: Annotated[str, typer.Argument(help="Sighting code.")],
    individual: Annotated[str | None, typer.Option(help="Confirm as this individual.")] = None,
    by: By = "",
    reason: Annotated[str | None, typer.Option(help="Why.")] = None,
) -> None:
    """Confirm (or correct) the identity of a sighting."""
    from reid.movements import derive_movements
    from reid.registry import confirm, get_individual, get_sighting

    with _registry().session() as s:
        ind = None if individual is None else get_individual(s, individual)
        sig = confirm(s, get_sighting(s, code), by or _user(), ind, reason)
        derive_movements(s)
        typer.echo(f"confirmed {sig.code} as {sig.individual.code}")


@sightings_app.command("reject")
def sightings_reject(
    code: Annotated[str, typer.Argument(help="Sighting code.")],
    by: By = "",
    reason: Annotated[str | None, typer.Option(help="Why.")] = None,
) -> None:
    """Reject the identification of a sighting."""
    from reid.movements import derive_movements
    from reid.registry import get_sighting, reject

    with _registry().session() as s:
        reject(s, get_sighting(s, code), by or _user(), reason)
        derive_movements(s)
        typer.echo(f"rejected {code}")


@individuals_app.command("list")
def individuals_list(
    species: Annotated[str | None, typer.Option(help="tiger or leopard.")] = None,
    as_json: AsJson = False,
) -> None:
    """List current individuals with first and last confirmed sightings."""
    from reid.movements import derive_movements
    from reid.registry import list_individuals

    with _registry().session() as s:
        derive_movements(s)
        rows = [{"code": i.code, "species": i.species, "sex": i.sex,
                 "organisation": i.organisation.code if i.organisation else None,
                 "first_seen": i.first_seen and i.first_seen.isoformat() + "Z",
                 "last_seen": i.last_seen and i.last_seen.isoformat() + "Z"}
                for i in list_individuals(s, species)]  # fmt: skip
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    for r in rows:
        typer.echo(f"{r['code']:14} {r['species']:7} {r['sex'] or '-':6} "
                   f"{r['organisation'] or '-':10} {r['first_seen'] or '-':21} "
                   f"{r['last_seen'] or '-'}")  # fmt: skip
    typer.echo(f"{len(rows)} individuals")


@individuals_app.command("show")
def individuals_show(
    code: Annotated[str, typer.Argument(help="Individual code.")],
    generalise: Generalise = False,
) -> None:
    """Show an individual: its sightings, countries, movements and decision history."""
    from reid.movements import derive_movements, movements
    from reid.registry import get_individual, history_of, list_sightings

    viewer = _viewer(generalise)
    with _registry().session() as s:
        derive_movements(s)
        ind = get_individual(s, code)
        if ind.code != code:
            typer.echo(f"{code} was merged into {ind.code}")
        views = list_sightings(s, viewer, individual=ind.code)
        moves = movements(s, viewer, individual=ind.code)
        history = history_of(s, ind)
        typer.echo(f"{ind.code}  {ind.species}  sex {ind.sex or 'unknown'}  "
                   f"organisation {ind.organisation.code if ind.organisation else '-'}")
        confirmed = [v for v in views if v.status == "confirmed"]
        typer.echo(f"sightings {len(views)} ({len(confirmed)} confirmed), countries "
                   f"{', '.join(sorted({v.country for v in confirmed})) or '-'}")  # fmt: skip
        for v in views:
            typer.echo(f"  {v.captured_at:%Y-%m-%d %H:%M} {v.country} {v.site:20} {v.side:7} "
                       f"{v.status:9} {v.lat:.5f},{v.lon:.5f}  {v.code}")  # fmt: skip
        for m in moves:
            typer.echo(f"  movement {m.from_country} -> {m.to_country}  {m.distance_km} km in "
                       f"{m.days:g} days (arrived {m.to_time:%Y-%m-%d})")  # fmt: skip
        for d in history:
            typer.echo(f"  {d.decided_at:%Y-%m-%d %H:%M} {d.action:8} by {d.decided_by}"
                       f"{': ' + d.reason if d.reason else ''}")  # fmt: skip


@individuals_app.command("merge")
def individuals_merge(
    keep: Annotated[str, typer.Argument(help="The individual that stays.")],
    other: Annotated[str, typer.Argument(help="The individual folded into it.")],
    reason: Annotated[str, typer.Option(help="Why they are one animal.")],
    by: By = "",
) -> None:
    """Merge two individuals that are one animal (history kept; undo with split)."""
    from reid.registry import get_individual, merge

    with _registry().session() as s:
        merge(s, get_individual(s, keep), get_individual(s, other, follow_merges=False),
              by or _user(), reason)  # fmt: skip
    typer.echo(f"merged {other} into {keep}")


@individuals_app.command("split")
def individuals_split(
    merged: Annotated[str, typer.Argument(help="The individual that was merged away.")],
    reason: Annotated[str, typer.Option(help="Why the merge was wrong.")],
    by: By = "",
) -> None:
    """Undo a wrong merge: the sightings it moved go back to MERGED."""
    from reid.registry import get_individual, split

    with _registry().session() as s:
        record = split(s, get_individual(s, merged, follow_merges=False), by or _user(), reason)
        typer.echo(f"split {merged} from individual #{record.kept_id}")


def movements_cmd(
    from_country: Annotated[str | None, typer.Option("--from", help="Leaving it.")] = None,
    to_country: Annotated[str | None, typer.Option("--to", help="Entering it.")] = None,
    since: Since = None,
    as_json: AsJson = False,
    generalise: Generalise = False,
) -> None:
    """List cross-border movements (derived from confirmed sightings, kept up to date)."""
    from reid.movements import derive_movements, movements

    with _registry().session() as s:
        derive_movements(s)
        moves = movements(s, _viewer(generalise), from_country=from_country,
                          to_country=to_country, since=_when(since))  # fmt: skip
    if as_json:
        typer.echo(json.dumps([m.as_dict() for m in moves], indent=1))
        return
    for m in moves:
        typer.echo(f"{m.individual:12} {m.from_country} {m.from_site} {m.from_time:%Y-%m-%d} -> "
                   f"{m.to_country} {m.to_site} {m.to_time:%Y-%m-%d}  {m.distance_km} km  "
                   f"{m.days:g} days")  # fmt: skip
    typer.echo(f"{len(moves)} movements")


def _everything(generalise: bool):
    from reid.movements import derive_movements, movements
    from reid.registry import list_sightings

    viewer = _viewer(generalise)
    with _registry().session() as s:
        derive_movements(s)
        return list_sightings(s, viewer), movements(s, viewer)


OutFile = Annotated[Path, typer.Option("--out", help="File or folder to write.")]


@export_app.command("camtrap-dp")
def export_camtrap(out: OutFile, generalise: Generalise = False) -> None:
    """Write the registry as a Camtrap DP 1.0 package (folder OUT)."""
    from reid.camtrap import write_package

    with _registry().session() as s:
        write_package(s, out, _viewer(generalise))
    typer.echo(f"wrote Camtrap DP package {out}")


@export_app.command("geojson")
def export_geojson(out: OutFile, generalise: Generalise = False) -> None:
    """Write sightings (points) and movements (lines) as one GeoJSON file."""
    from reid.export import write_geojson

    typer.echo(f"wrote {write_geojson(out, *_everything(generalise))}")


@export_app.command("csv")
def export_csv(out: OutFile, generalise: Generalise = False) -> None:
    """Write OUT-sightings.csv and OUT-movements.csv."""
    from reid.export import write_csv

    for path in write_csv(out, *_everything(generalise)):
        typer.echo(f"wrote {path}")


@import_app.command("camtrap-dp")
def import_camtrap(
    package: Annotated[Path, typer.Argument(help="Package folder (with datapackage.json).")],
    by: By = "",
) -> None:
    """Import a Camtrap DP package: all of it after checking every row, or nothing."""
    from reid.camtrap import import_package

    reg = _registry()
    with reg.session() as s:
        stats = import_package(s, package, decided_by=by or _user())
    typer.echo(f"imported {stats.deployments} deployments, {stats.media} media, "
               f"{stats.sightings} sightings, {stats.individuals} new individuals into {reg.url}")
    if stats.renamed_sites:
        typer.echo(f"{stats.renamed_sites} site code(s) looked like coordinates and were stored "
                   "as CC:site-<random> (site codes are shown to readers who may not see exact "
                   "positions)")


def map_cmd(
    out: OutFile,
    individual: Annotated[str | None, typer.Argument(help="Map this individual.")] = None,
    show_movements: Annotated[
        bool, typer.Option("--movements", help="Map every cross-border movement.")
    ] = False,
    generalise: Generalise = False,
) -> None:
    """Draw a map (PNG) with country borders, sightings and tracks.

    With --movements and no movement in the registry, the map shows the confirmed
    sightings instead (or the camera sites, or only borders when there are none).
    """
    from sqlalchemy import select

    from reid.maps import draw_map
    from reid.movements import derive_movements, movements
    from reid.registry import Site, get_individual, list_sightings

    if (individual is None) == (not show_movements):
        raise ReidError("give an INDIVIDUAL or --movements (one of them)")
    viewer = _viewer(generalise)
    sites: list[tuple[str, float, float]] = []
    with _registry().session() as s:
        derive_movements(s)
        if individual is not None:
            code = get_individual(s, individual).code
            views = list_sightings(s, viewer, individual=code, status="confirmed")
            moves = movements(s, viewer, individual=code)
            title = f"{code}: {len(views)} confirmed sightings, {len(moves)} border crossings"
            if not moves:
                typer.echo(f"no movements of {code}")
        else:
            moves = movements(s, viewer)
            views = []
            title = f"{len(moves)} cross-border movements"
            if not moves:
                # still a useful map: where the animals and cameras are
                views = list_sightings(s, viewer, status="confirmed")
                if not views:
                    for site in s.scalars(select(Site).order_by(Site.code)):
                        lat, lon = viewer.locate(site.lat, site.lon)
                        sites.append((viewer.shown_code(site.code), lat, lon))
                shown = (f"{len(views)} confirmed sightings" if views
                         else f"{len(sites)} sites" if sites else "borders only")  # fmt: skip
                title = f"no cross-border movements ({shown})"
                typer.echo(f"no movements: the map shows {shown}")
    typer.echo(f"wrote {draw_map(out, views, moves, title, sites=sites)}")


def register(app: typer.Typer, user_errors: Callable, export_model: Callable) -> None:
    """Add the registry commands to ``app``; ``user_errors`` wraps each for clean errors."""
    for sub in (sightings_app, individuals_app, export_app, import_app):
        for info in sub.registered_commands:
            info.callback = user_errors(info.callback)
    export_app.command("model")(export_model)
    from reid.cli_blend import blend

    export_app.command("blend")(user_errors(blend))
    app.add_typer(sightings_app, name="sightings")
    app.add_typer(individuals_app, name="individuals")
    app.command("movements")(user_errors(movements_cmd))
    app.add_typer(export_app, name="export")
    app.add_typer(import_app, name="import")
    app.command("map")(user_errors(map_cmd))
