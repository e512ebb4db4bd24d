"""``reid serve`` (the matching API) and ``reid keys`` (its API keys).

Keys live in the registry (``$REID_DATABASE_URL`` or the data-home SQLite), hashed; the
full key is printed once, at creation, and cannot be shown again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from reid.errors import ReidError

keys_app = typer.Typer(help="Create, list and revoke API keys of the matching API.",
                       no_args_is_help=True)  # fmt: skip


@keys_app.command("create")
def keys_create(
    org: Annotated[str, typer.Option("--org", help="Organisation code the key acts for.")],
    role: Annotated[str, typer.Option(help="viewer, contributor, reviewer or admin.")],
    precise_location: Annotated[
        bool,
        typer.Option("--precise-location", help="May see exact coordinates (else 0.25° cells)."),
    ] = False,
    country: Annotated[
        str | None, typer.Option(help="ISO 3166-1 alpha-2 code, to create a new organisation.")
    ] = None,
    label: Annotated[str | None, typer.Option(help="Who or what holds the key.")] = None,
) -> None:
    """Create a key and print it (once: only its hash is kept)."""
    from reid.registry import Registry
    from serve.access import create_key

    with Registry().session() as s:
        row, key = create_key(s, org, role, precise_location, label=label, country=country)
        key_id = row.key_id
    typer.echo(key)
    typer.echo(f"key {key_id}: {org}, {role}"
               f"{', precise locations' if precise_location else ''} (shown once; keep it safe)",
               err=True)  # fmt: skip


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="The key id (or the whole key).")],
) -> None:
    """End a key at once."""
    from reid.registry import Registry
    from serve.access import revoke_key

    with Registry().session() as s:
        row = revoke_key(s, key)
        typer.echo(f"revoked key {row.key_id} ({row.organisation.code}, {row.role})")


@keys_app.command("list")
def keys_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every key: id, organisation, role, permission, created, revoked."""
    from reid.registry import Registry
    from serve.access import list_keys

    with Registry().session() as s:
        rows = [
            {"key_id": k.key_id, "organisation": k.organisation.code, "role": k.role,
             "precise_location": k.precise_location, "label": k.label,
             "created_at": k.created_at.isoformat() + "Z",
             "revoked_at": None if k.revoked_at is None else k.revoked_at.isoformat() + "Z"}
            for k in list_keys(s)
        ]  # fmt: skip
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        state = f"revoked {r['revoked_at']}" if r["revoked_at"] else "active"
        typer.echo(f"{r['key_id']}  {r['organisation']:<12}{r['role']:<12}"
                   f"{'precise' if r['precise_location'] else 'general':<9}{state}")  # fmt: skip


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    index: Annotated[
        Path | None, typer.Option(help="Gallery index (default: $REID_SERVE_INDEX).")
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="Model release (default: the index's model).")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Matches computed at once.")] = 2,
) -> None:
    """Run the matching API and the review page (/review); OpenAPI docs at /docs.

    Settings come from REID_SERVE_* environment variables or an env file (see
    serve/settings.py); the options here override them.
    """
    import uvicorn

    from serve import create_app
    from serve.settings import Settings

    overrides: dict = {"match_workers": workers}
    if index is not None:
        overrides["index"] = index
    if model is not None:
        overrides["model"] = model
    settings = Settings(**overrides)
    if settings.index is not None and not (Path(settings.index) / "CURRENT").is_file():
        raise ReidError(f"{settings.index} is not a gallery index (build one with reid enroll)")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")


def register(app: typer.Typer, user_errors: Callable) -> None:
    """Add ``serve`` and ``keys`` to ``app``; ``user_errors`` wraps each for clean errors."""
    for info in keys_app.registered_commands:
        info.callback = user_errors(info.callback)
    app.add_typer(keys_app, name="keys")
    app.command("serve")(user_errors(serve))
