"""``reid export blend``: average the weights of two releases (WiSE-FT) into a new one.

``reid export model --blend`` averages a training checkpoint with the release it started
from. This command averages two *releases*, or a release's backbone with the ImageNet
weights it once started from (``--with imagenet``): weight-space ensembling toward the
general features a fine-tuned network drifted away from (Wortsman et al., CVPR 2022).
On real photos it traded ATRW and nyala accuracy as BENCHMARKS.md records; choose the
weight on validation data.

The blend has new weights, so heads tied to the old ones (side head, flank head) and a
gallery's index are not carried over: refit them (``reid side fit``) and re-enrol.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from reid.errors import ReidError


def blend(
    release: Annotated[Path, typer.Argument(help="The release whose weights to start from.")],
    other: Annotated[
        str,
        typer.Option(
            "--with",
            help="A release of the same architecture, or 'imagenet' (the "
            "ImageNet backbone weights, from the registry package; needs --part "
            "backbone).",
        ),
    ],
    out: Annotated[Path, typer.Option(help="Release folder to write.")],
    weight: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of RELEASE in the average.")
    ] = 0.5,
    part: Annotated[
        str,
        typer.Option(
            help="all: every tensor; backbone: the backbone only (the "
            "release's pooling and projection kept); backbone:N: the "
            "backbone's stages N and later and its last convolution (e.g. "
            "backbone:7 on EfficientNet-Lite0: the last 1x1 convolution "
            "only)."
        ),
    ] = "all",
    name: Annotated[str | None, typer.Option(help="Release name (default: the folder's).")] = None,
) -> None:
    """Average two releases' weights (or a release's backbone with ImageNet's) into a new
    release, keeping RELEASE's input size and inheriting both licences."""
    from reid.licence import combine, of_release
    from reid.model import build_model
    from reid.release import (
        blend_weights,
        load_release,
        read_manifest,
        release_folder,
        save_release,
    )

    folder = release_folder(release)
    if Path(out).resolve() == folder.resolve():
        raise ReidError(f"--out {out} is the release itself: write the blend elsewhere")
    model, manifest = load_release(folder, for_inference=False)
    if other == "imagenet":
        if not part.startswith("backbone"):
            raise ReidError("--with imagenet blends the backbone only: add --part backbone "
                            "(ImageNet has no embedding projection)")  # fmt: skip
        base = build_model(dataclasses.replace(model.config, pretrained="imagenet"))
        described, other_licence = "the ImageNet backbone weights", None
    else:
        other_folder = release_folder(Path(other))
        base, other_manifest = load_release(other_folder, for_inference=False)
        described = (f"release {other_manifest.get('name', other_folder.name)} "
                     f"{other_manifest['sha256'][:12]}")  # fmt: skip
        other_licence = of_release(other_folder)
    blend_weights(model, base, weight, part)
    what = "" if part == "all" else f"{part}: "
    training_data = (f"{what}{weight:g} x ({manifest.get('training_data', 'unknown')}) + "
                     f"{1 - weight:g} x {described} (weights averaged)")  # fmt: skip
    saved = save_release(
        model.eval(), out, name=name or Path(out).resolve().name, training_data=training_data,
        metrics={}, input_size=tuple(manifest["input_size"]),
        licence=combine(of_release(folder), other_licence),
    )  # fmt: skip
    written = read_manifest(saved)
    typer.echo(f"released {written['name']} to {saved}")
    typer.echo(f"sha256 {written['sha256']}")
    if written.get("licence"):
        typer.echo(f"licence {written['licence']} (inherited)")
    dropped = [what for key, what in (("side_head", "side head (reid side fit)"),
                                      ("flank_head", "flank head (bench/bench_locate.py fit)"),
                                      ("calibration", "calibration (reid calibrate --save)"))
               if manifest.get(key)]  # fmt: skip
    if dropped:
        typer.echo("not carried over, tied to the old weights: refit the " + ", the ".join(dropped))
