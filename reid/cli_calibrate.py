"""``reid calibrate``: fit the matcher's calibration on a real labelled catalogue and ship
it with a model release (see :mod:`reid.release_calibration`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer, user_errors) -> None:
    @app.command(
        epilog=(
            "Example (the shipped model: ATRW's 21 held-out entities, which v0.15 never "
            "trained on):\n\n"
            "reid calibrate ../shared/data/atrw-train --train-ratio 0.8 --split-seed 0 --save"
        )
    )
    @user_errors
    def calibrate(
        catalogue: Annotated[
            Path, typer.Argument(help="A labelled catalogue in any format reid eval accepts.")
        ],
        model: Annotated[
            Path | None,
            typer.Option(help="Model release to calibrate (default: the shipped one)."),
        ] = None,
        train_ratio: Annotated[
            float | None,
            typer.Option(
                help="Fit only on the individuals that `reid train` holds out with the same "
                "data.train_ratio and data.split_seed: those a model trained on the "
                "catalogue never saw (their embeddings are not as tight as trained ones')."
            ),
        ] = None,
        split_seed: Annotated[int, typer.Option(help="Seed of that identity split.")] = 0,
        sample: Annotated[
            int, typer.Option(min=10, help="Photos used as held-out calibration queries.")
        ] = 1000,
        seed: Annotated[int, typer.Option(help="Seed of the query draw.")] = 0,
        local: Annotated[
            str | None,
            typer.Option(help="Local features that verify candidates (reid.local kinds) "
                         "[default: the project's default kind]."),
        ] = None,
        workers: Annotated[int, typer.Option(min=1, help="Parallel workers.")] = 2,
        save: Annotated[
            bool,
            typer.Option(
                "--save",
                help="Write the calibration into the release (calibration.json, manifest).",
            ),
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    ) -> None:
        """Fit the match calibration (fusion weights, known/new decision, screening) on a
        real labelled catalogue, each photo a held-out query with its near-duplicates out,
        as reid enroll fits a gallery's; --save ships it in the model release, where reid
        enroll uses it for galleries too small to calibrate themselves (or always, with
        --calibration release)."""
        from reid.data.load import load_catalogue
        from reid.errors import ReidError
        from reid.match import resolve_model
        from reid.release_calibration import fit_on_catalogue, save_to_release

        records = load_catalogue(catalogue)
        what = str(catalogue)
        if train_ratio is not None:
            from reid.splits import disjoint_split

            if not 0 < train_ratio < 1:
                raise ReidError(f"--train-ratio must be between 0 and 1, got {train_ratio}")
            records = disjoint_split(records, train_ratio, split_seed).test
            what += f" (individuals held out by split {train_ratio:g}, seed {split_seed})"
        from reid.local import local_config
        from reid.match import MatchConfig

        release = resolve_model(model)
        calibration, info = fit_on_catalogue(
            records, release, sample=sample, seed=seed, workers=workers,
            config=MatchConfig(local=local_config(local)), show_progress=not as_json,
        )  # fmt: skip
        info = {"fitted_on": what, **info}
        if save:
            save_to_release(release, calibration, info)
        if as_json:
            typer.echo(json.dumps({**info, "saved": save, "release": str(release)}, indent=2))
            return
        stats = info["stats"]
        typer.echo(
            f"calibrated on {stats['queries']} held-out queries of {info['flanks']} flanks "
            f"({info['photos']} photos; best candidate right for {stats['top1_known']:.1%} of "
            f"known ones; fusion weights on pairs {stats['genuine_pairs']} genuine of "
            f"{stats['pairs']})"
        )
        typer.echo(f"saved in {release}" if save else "not saved (--save writes it)")
