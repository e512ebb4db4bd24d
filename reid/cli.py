"""The ``reid`` command line: one sub-command per job, each with its own --help."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from reid import __version__
from reid.errors import ReidError
from reid.paths import data_home

app = typer.Typer(
    name="reid",
    help=(
        "bigcat-reid: recognise individual tigers and leopards from the stripes and "
        "rosettes on their flanks.\n\n"
        "Run the demo (demo), generate synthetic catalogues (synth), find the flank in "
        "whole-animal photos (locate), measure how well a method re-identifies "
        "individuals on a catalogue (eval), and show where data lives (info)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # reflow docstring paragraphs in --help
)

F = TypeVar("F", bound=Callable[..., object])


def _user_errors(fn: F) -> F:
    """Turn a :class:`ReidError` into one line on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ReidError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


@app.command()
@_user_errors
def info() -> None:
    """Print the version and where things are."""
    typer.echo(f"bigcat-reid {__version__}")
    typer.echo(f"python {sys.version.split()[0]}")
    typer.echo(f"package {Path(__file__).parent}")
    typer.echo(f"data    {data_home()}  (set REID_HOME to move it)")
    from reid.registry.db import database_url, hidden_password

    typer.echo(f"registry {hidden_password(database_url())}  (set REID_DATABASE_URL to move it)")


@app.command()
@_user_errors
def synth(
    out: Annotated[Path, typer.Option(help="Folder to write images and manifest.csv into.")],
    species: Annotated[str, typer.Option(help="tiger, leopard or both.")] = "both",
    individuals: Annotated[int, typer.Option(min=1, help="Individuals per species.")] = 20,
    images_per_side: Annotated[
        int, typer.Option(min=1, help="Photos of each flank (left and right) per individual.")
    ] = 4,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives byte-identical output.")] = 0,
    frames: Annotated[
        bool,
        typer.Option(
            "--frames/--flanks",
            help="Render whole camera-trap frames with background and a bounding box "
            "(--frames) or flank crops (--flanks).",
        ),
    ] = False,
    workers: Annotated[int, typer.Option(min=1, help="Parallel rendering processes.")] = 2,
    contact_sheet: Annotated[
        Path | None, typer.Option(help="Also save a contact sheet PNG of the catalogue here.")
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            help="A named catalogue (synth-bench-v1, synth-val-v1, synth-train-v1, synth-train-v2, "
            "demo): "
            "sets species, individuals, images per side, seed and mode."
        ),
    ] = None,
) -> None:
    """Generate a synthetic catalogue of tiger and/or leopard camera-trap photos.

    Each individual has its own seed and two unrelated flank patterns (left, right);
    every photo is a new rendering of one flank (pose, light, infrared night shots,
    blur, noise, vegetation, JPEG). Writes OUT/manifest.csv beside the images.
    """
    from reid.presets import SynthPreset, get_preset, render_preset

    if preset is not None:
        p = get_preset(preset)
    else:
        if species not in ("tiger", "leopard", "both"):
            raise ReidError(f"--species {species!r} is not one of tiger, leopard, both")
        p = SynthPreset(
            "custom",
            ("tiger", "leopard") if species == "both" else (species,),
            individuals,
            images_per_side,
            seed,
            "frame" if frames else "flank",
            "",
        )
    records = render_preset(p, out, workers=workers)
    typer.echo(f"wrote {len(records)} images and {out / 'manifest.csv'}")
    if contact_sheet is not None:
        from reid.contact_sheet import save_contact_sheet

        save_contact_sheet(records, contact_sheet)
        typer.echo(f"contact sheet: {contact_sheet}")


@app.command()
@_user_errors
def demo(
    home: Annotated[
        Path | None, typer.Option(help="Where to put the demo data (default: the data home).")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Parallel worker processes.")] = 2,
    model: Annotated[
        Path | None,
        typer.Option(help="Model release folder for matching (default: the shipped model)."),
    ] = None,
) -> None:
    """Run the demo on the built-in demo catalogue of synthetic tigers and leopards.

    Builds the catalogue (or reuses it) and draws a contact sheet; then enrolls six
    tigers and six leopards in a gallery index and matches new photos of them and of
    two animals never enrolled, printing each decision ("known" individual or "new")
    with its calibrated probability. Without a model release (none installed and no
    --model) it measures the training-free sift method instead.
    """
    from reid.contact_sheet import save_contact_sheet
    from reid.data.load import load_catalogue
    from reid.evaluate import evaluate
    from reid.methods import get_method
    from reid.presets import get_preset, render_preset

    folder = (home or data_home()) / "demo"
    catalogue = folder / "catalogue"
    p = get_preset("demo")
    if (catalogue / "manifest.csv").exists():
        records = load_catalogue(catalogue)
        typer.echo(f"demo catalogue: {catalogue} ({len(records)} images, reused)")
    else:
        records = render_preset(p, catalogue, workers=workers)
        typer.echo(f"demo catalogue: {catalogue} ({len(records)} images, {p.purpose})")
    sheet = save_contact_sheet(records, folder / "contact_sheet.png")
    typer.echo(f"contact sheet:  {sheet}")
    try:
        from reid.match import resolve_model

        release = resolve_model(model)
    except ReidError as e:
        if model is not None:
            raise
        typer.echo(f"\nno model for matching ({e}); showing the training-free sift method")
    else:
        _demo_matching(records, folder, release, workers)
        return
    result = evaluate(records, get_method("sift", workers=workers))
    typer.echo("")
    typer.echo("re-identification with method sift (every photo against all others of its side)")
    typer.echo(f"{'species':<10}{'queries':>8}{'top-1':>8}{'top-5':>8}{'mAP':>8}")
    for name, m in [*result["species"].items(), ("all", result)]:
        typer.echo(f"{name:<10}{m['queries']:>8}{m['top1']:>8.3f}{m['top5']:>8.3f}{m['mAP']:>8.3f}")
    typer.echo(f"\n{result['images']} images in {result['seconds']:.1f} s")


def _demo_matching(records: list, folder: Path, release: Path, workers: int) -> None:
    """Enroll individuals 1-6 of each species (all but one photo per flank) and match the
    held-out photos and photos of individuals 7-8, which were never enrolled."""
    from collections import defaultdict

    from reid.images import load_image
    from reid.match import Matcher, enroll
    from reid.release import read_manifest

    flanks: dict[tuple, list] = defaultdict(list)
    for r in records:
        flanks[(r.species, r.individual_id, r.side)].append(r)
    enrolled = sorted({k[1] for k in flanks if not k[1].endswith(("7", "8"))})
    gallery = [r for k, rs in flanks.items() if k[1] in enrolled for r in rs[:-1]]
    queries = [rs[-1] for k, rs in flanks.items() if k[1] in enrolled]
    queries += [rs[0] for k, rs in flanks.items() if k[1] not in enrolled]
    index_dir = folder / f"index-{read_manifest(release)['sha256'][:12]}"
    summary = enroll(gallery, index_dir, release, workers=workers)
    typer.echo(f"gallery index:  {index_dir} ({summary.total} photos of {len(enrolled)} "
               f"individuals, model {release})")
    matcher = Matcher.open(index_dir, release)
    typer.echo("\nmatching new photos (side and species given; known = enrolled individual)")
    typer.echo(
        f"{'species':<9}{'photo':<34}{'truth':<12}{'decision':<18}{'P(right)':>9}{'P(new)':>8}"
    )
    right = {"known": [0, 0], "new": [0, 0]}
    for r in queries:
        truth = r.individual_id if r.individual_id in enrolled else "new"
        res = matcher.match(load_image(r.path), side=r.side, species=r.species)
        said = res.individual if res.decision == "known" else "new"
        tally = right["new" if truth == "new" else "known"]
        tally[0] += said == truth
        tally[1] += 1
        name = f"{r.path.parent.name}/{r.path.name}"[-33:]
        typer.echo(f"{r.species:<9}{name:<34}{truth:<12}{said:<18}{res.probability:>9.2f}"
                   f"{res.new_probability:>8.2f}")
    typer.echo(f"\nenrolled animals named right: {right['known'][0]}/{right['known'][1]}; "
               f"never-enrolled animals called new: {right['new'][0]}/{right['new'][1]}")


@app.command(name="eval")
@_user_errors
def eval_(
    catalogue: Annotated[
        Path,
        typer.Argument(
            help="A manifest CSV, a folder with manifest.csv, a folder-per-individual tree, "
            "nyala-dev's labels.csv or an ATRW annotation file."
        ),
    ],
    method: Annotated[
        str, typer.Option(help="Scoring method: sift, embedding, embedding-rerank, fused or "
                          "fused-rerank (BENCHMARKS.md, Real photos).")
    ] = "sift",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    workers: Annotated[int, typer.Option(min=1, help="Parallel worker processes.")] = 2,
    limit: Annotated[
        int | None, typer.Option(help="Use only the first N images (quick checks).")
    ] = None,
    train_ratio: Annotated[
        float | None,
        typer.Option(
            help="Evaluate only the individuals that `reid train` holds out with the same "
            "data.train_ratio and data.split_seed (e.g. 0.8): the unseen-individual score "
            "of a model trained on the rest. ATRW train (a folder with "
            "reid_list_train.csv) is always scored this way, by default on the fixed "
            "validation split 0.8 / seed 0 (86 entities train, 21 held out), with "
            "near-duplicate frames removed from each query's gallery."
        ),
    ] = None,
    split_seed: Annotated[int, typer.Option(help="Seed of that identity split.")] = 0,
    model: Annotated[
        Path | None,
        typer.Option(
            help="Model release folder for --method embedding or fused, and whose flank "
            "head --locate uses (default: the shipped model)."
        ),
    ] = None,
    open_set: Annotated[
        bool,
        typer.Option(
            "--open-set",
            help="Open-set evaluation of the matcher instead: enroll part of the flanks, "
            "hold the others out of the gallery, and score the known/new decisions on the "
            "remaining photos (BAKS, BAUS, their geometric mean, calibration error).",
        ),
    ] = False,
    gallery_ratio: Annotated[
        float, typer.Option(help="--open-set: share of the images enrolled in the gallery.")
    ] = 0.5,
    unknown_ratio: Annotated[
        float,
        typer.Option(help="--open-set: share of the images from flanks never enrolled."),
    ] = 0.3,
    verify_top: Annotated[
        int, typer.Option(min=1, help="--open-set: candidates verified geometrically per query.")
    ] = 10,
    new_prior: Annotated[
        float | None,
        typer.Option(help="--open-set: P(new)'s prior [default: the share of queries from "
                     "flanks never enrolled, the evaluation's base rate]."),
    ] = None,
    submission: Annotated[
        Path | None,
        typer.Option(help="ATRW test: also write the official submission JSON here."),
    ] = None,
    reliability: Annotated[
        Path | None,
        typer.Option(help="--open-set: also draw the reliability diagram of the decisions "
                     "(PNG): each probability bin's share of right decisions, with the band "
                     "a perfectly calibrated matcher's share would fall in."),
    ] = None,
    near_duplicate_threshold: Annotated[
        float,
        typer.Option(
            help="ATRW train: signature similarity from which two photos of one entity are "
            "near-duplicates, excluded from each other's gallery (reid/near_duplicates.py)."
        ),
    ] = 0.88,
    fusion_fit: Annotated[
        Path | None,
        typer.Option(
            help="ATRW, --method fused or fused-rerank: a labelled catalogue whose pairs fit "
            "the fused weights (never the evaluated images' labels). Required for an ATRW "
            "test folder; given ATRW train there, only its held-out entities (split 0.8 / "
            "seed 0) fit: fused on one photo per near-duplicate group, fused-rerank on all "
            "(the frames shape the re-ranking) but no pair within a group. ATRW train's own "
            "default is its training entities."
        ),
    ] = None,
    fusion_sample: Annotated[
        int,
        typer.Option(min=10, help="--fusion-fit: images drawn (seeded) to fit on; all pairs."),
    ] = 300,
    local: Annotated[
        str | None,
        typer.Option(help="Local features of --method sift, fused or fused-rerank (and of "
                     "--open-set's "
                     "verification): rootsift, xfeat (XFeat + LighterGlue), xfeat-mnn or "
                     "aliked (ALIKED + LightGlue) (BENCHMARKS.md, Local features) "
                     "[default: rootsift]."),
    ] = None,
    locate: Annotated[
        bool,
        typer.Option(help="Crop each photo without a box to the flank that the model's flank "
                     "head finds (as reid locate does; CAM without a head): for catalogues "
                     "of whole-animal field photos, not of flank crops (BENCHMARKS.md, "
                     "Locating the flank)."),
    ] = False,
    shortlist: Annotated[
        int | None,
        typer.Option(min=1, help="--method fused (fused-rerank): verify only each query's N "
                     "nearest images by the embedding's cosine (re-ranked similarity), ranked "
                     "first by the fused score, the rest below by that similarity (the "
                     "matcher's way; for learned local features on a CPU). "
                     "Label-blind: on ATRW, near-duplicate frames the protocol removes "
                     "afterwards take some of the N places [default: every pair]."),
    ] = None,
    shortlist_local: Annotated[
        int | None,
        typer.Option(min=1, help="--method fused or fused-rerank: each query's M images with "
                     "the most mutual "
                     "nearest neighbours among the local descriptors join its shortlist "
                     "(every pair's descriptors compared, no network, also on --fusion-fit's "
                     "sample: recovers answers a weak embedding misses; about 12 ms a pair "
                     "with ALIKED on 2 cores). Label-blind: near-duplicate frames take some "
                     "of the M places (BENCHMARKS.md, A second shortlist from the "
                     "descriptors). With --open-set: the matcher verifies each query's M "
                     "gallery images with the most mutual descriptor neighbours too "
                     "(reid enroll --shortlist-local)."),
    ] = None,
    refine: Annotated[
        int | None,
        typer.Option(min=1, help="--method sift or fused with --local aliked: each query's "
                     "first N by the ranking (with fused: of its shortlist) are matched "
                     "again on --refine-keypoints keypoints and put first in that order "
                     "(about 1.5 s a pair at 2,048 on 2 CPU cores, 4x a pair at 1,024; "
                     "BENCHMARKS.md, More keypoints for the first five). Label-blind: on "
                     "ATRW, near-duplicate frames the protocol removes afterwards take some "
                     "of the N places [default: off]."),
    ] = None,
    refine_keypoints: Annotated[
        int | None,
        typer.Option(min=3, help="--refine: keypoints kept per image for it; every pair is "
                     "still matched on the kind's own number (ALIKED's 1,024) [default: "
                     "2048]."),
    ] = None,
) -> None:
    """Measure re-identification accuracy of a method on a catalogue.

    Every image is a query against all other images of the same species and side; a
    query counts when its individual has another image there. Prints top-1, top-5, mAP
    and the number of queries (see --method). With --open-set, the matcher's decisions
    are scored instead (see --open-set).

    ATRW: a folder with gt_test_plain.json (images beside it or in test/) is scored with
    the official plain protocol (every image a query against all others, same tiger and
    camera within 3 frames excluded): single- and cross-camera mAP, top-1, top-5. A
    folder with reid_list_train.csv (ATRW train) is scored on its held-out entities
    (--train-ratio, default 0.8, --split-seed, default 0) with near-duplicates excluded.
    The method never sees the ATRW labels; --method fused and fused-rerank need
    --fusion-fit for the test.
    """
    from reid.atrw_eval import find_atrw_test, is_atrw_train
    from reid.data.load import load_catalogue
    from reid.evaluate import evaluate

    if local is not None:
        from reid.local import local_config

        local_config(local)  # an unknown kind (or XFeat without its package) is refused
        if not open_set and method not in LOCAL_METHODS:
            raise ReidError(f"--local applies to --method {LOCAL_METHODS_TEXT} "
                            f"(and --open-set), not to --method {method}")
    if (shortlist is not None and (open_set or method not in FUSED_METHODS)) or (
        shortlist_local is not None and not open_set and method not in FUSED_METHODS
    ):
        raise ReidError("--shortlist and --shortlist-local apply to --method fused or "
                        "fused-rerank (--open-set verifies its --verify-top candidates, and "
                        "--shortlist-local more)")
    if refine is not None and not open_set and method not in LOCAL_METHODS:
        raise ReidError(f"--refine applies to --method {LOCAL_METHODS_TEXT} (and "
                        f"--open-set with --local aliked), not to --method {method}")
    if refine_keypoints is not None and refine is None:
        raise ReidError("--refine-keypoints applies with --refine N only")
    if reliability is not None:
        if not open_set:
            raise ReidError("--reliability applies to --open-set (its decisions' probabilities)")
        from reid.reliability import check_plot_path

        check_plot_path(reliability)  # refused now, not after the evaluation
    if refine is not None:
        from reid.local.aliked import REFINE_KEYPOINTS

        refined = (refine, refine_keypoints or REFINE_KEYPOINTS)
    else:
        refined = None
    if locate and (find_atrw_test(catalogue) or is_atrw_train(catalogue)):
        raise ReidError("--locate does not apply to ATRW: its photos are already boxes around "
                        "the tiger, and its protocol scores them as they are")
    if not open_set and (
        submission is not None or find_atrw_test(catalogue) or is_atrw_train(catalogue)
    ):
        _eval_atrw(catalogue, method, workers, model, limit, as_json, submission,
                   train_ratio, split_seed, near_duplicate_threshold, fusion_fit, fusion_sample,
                   local, shortlist, shortlist_local, refined)
        return
    atrw_test = find_atrw_test(catalogue)
    if atrw_test is not None:
        from reid.data.atrw import read_atrw_test_records

        records = read_atrw_test_records(*atrw_test)
    else:
        records = load_catalogue(catalogue)
    if train_ratio is not None:
        from reid.splits import disjoint_split

        split = disjoint_split(records, train_ratio, split_seed)
        records = split.test
        if not as_json:
            typer.echo(
                f"held-out individuals of the {train_ratio:g}/{1 - train_ratio:g} split "
                f"(seed {split_seed}): {len(split.test)} images"
            )
    if limit is not None:
        records = records[:limit]
    if locate:
        from reid.locate import box_missing
        from reid.match import resolve_model

        records, boxed = box_missing(records, resolve_model(model), workers=workers,
                                     show_progress=not as_json)
        if not as_json:
            typer.echo(f"located the flank in {boxed} of {len(records)} images")
    else:
        boxed = None
    if open_set:
        _eval_open_set(records, model, gallery_ratio, unknown_ratio, split_seed, verify_top,
                       workers, as_json, new_prior, near_duplicates=is_atrw_train(catalogue),
                       local=local, local_shortlist=shortlist_local, refined=refined,
                       reliability=reliability)
        return
    scorer = _method_with_model(method, workers, model, local, shortlist, shortlist_local,
                                refined)  # fmt: skip
    result = evaluate(records, scorer, show_progress=not as_json)
    result.update(_scoring_options(local, shortlist, shortlist_local, refined))
    if boxed is not None:
        result["located"] = boxed
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(f"method   {method}" + _scoring_label(local, shortlist, shortlist_local, refined))
    typer.echo(f"images   {result['images']}")
    typer.echo(f"queries  {result['queries']}")
    typer.echo(f"top-1    {result['top1']:.3f}")
    typer.echo(f"top-5    {result['top5']:.3f}")
    typer.echo(f"mAP      {result['mAP']:.3f}")
    typer.echo(f"time     {result['seconds']:.1f} s")


def _eval_atrw(
    catalogue: Path,
    method: str,
    workers: int,
    model: Path | None,
    limit: int | None,
    as_json: bool,
    submission: Path | None,
    train_ratio: float | None,
    split_seed: int,
    threshold: float,
    fusion_fit: Path | None,
    fusion_sample: int,
    local: str | None = None,
    shortlist: int | None = None,
    shortlist_local: int | None = None,
    refined: tuple[int, int] | None = None,
) -> None:
    """``reid eval`` of an ATRW test folder (official protocol) or of ATRW train
    (held-out entities, near-duplicates excluded)."""
    from reid import atrw_eval

    test = atrw_eval.find_atrw_test(catalogue)
    if test is None and not atrw_eval.is_atrw_train(catalogue):
        raise ReidError(f"--submission needs an ATRW test folder (gt_test_plain.json): {catalogue}")
    if test is not None and train_ratio is not None:
        raise ReidError("--train-ratio does not apply to the ATRW test: it has its own protocol")
    if test is not None and method in FUSED_METHODS and fusion_fit is None:
        raise ReidError(
            f"--method {method} on the ATRW test needs weights fitted elsewhere: "
            "--fusion-fit CATALOGUE (e.g. ../shared/data/atrw-train), never the test labels"
        )
    scorer = _method_with_model(method, workers, model, local, shortlist, shortlist_local,
                                refined)  # fmt: skip
    echo = (lambda *_: None) if as_json else typer.echo
    if test is not None:
        if method in FUSED_METHODS:
            fit = _fusion_records(fusion_fit, exclude=set())
            if atrw_eval.is_atrw_train(fusion_fit):
                # weights that rank unseen tigers come from tigers the model never saw:
                # the entities reid train -c atrw.yaml holds out (fitted on the training
                # entities, the embedding's cosine was all the fit would trust), one photo
                # per near-duplicate group (consecutive frames are not other encounters)
                from reid.near_duplicates import near_duplicate_groups

                ratio, seed = atrw_eval.ATRW_TRAIN_RATIO, atrw_eval.ATRW_SPLIT_SEED
                _, held = atrw_eval.atrw_entity_split(fit, ratio, seed)
                fit = [r for r in fit if r.individual_id in held]
                groups = near_duplicate_groups(fit, workers=workers)
                if scorer.rerank:
                    # the re-ranked similarity depends on the neighbourhoods, and the test
                    # keeps its consecutive frames: so does the fit, learning from none of
                    # the pairs within a near-duplicate group (the protocol's exclusion)
                    how = "consecutive frames kept as neighbours, not learnt from as pairs"
                else:
                    first = sorted({int(g): i for i, g in reversed(list(enumerate(groups)))}
                                   .values())  # fmt: skip
                    fit, groups = [fit[i] for i in first], None
                    how = "one per near-duplicate group"
                echo(f"fused weights fitted on ATRW train's {len(held)} held-out entities "
                     f"(split {ratio:g} / seed {seed}; {len(fit)} photos, {how}): the "
                     "shipped model never trained on them (a model trained on all of ATRW "
                     "train did)")
            else:
                groups = None
            _fit_fusion(scorer, fit, fusion_sample, split_seed, as_json, echo, groups)
        result = atrw_eval.evaluate_atrw_test(
            catalogue, scorer, submission=submission, limit=limit, show_progress=not as_json
        )
        if method in FUSED_METHODS:
            result["fusion_weights"] = [float(w) for w in scorer.weights]
        result.update(_scoring_options(local, shortlist, shortlist_local, refined))
        if as_json:
            typer.echo(json.dumps(result, indent=2))
            return
        typer.echo(f"ATRW plain re-ID protocol (official scorer), method {method}"
                   + _scoring_label(local, shortlist, shortlist_local, refined))
        typer.echo(f"images   {result['images']}; queries {result['queries_single']} "
                   f"single-camera, {result['queries_cross']} cross-camera")
        for label, key in atrw_eval.ATRW_TEST_ROWS:
            typer.echo(f"{label:<21}{result[key]:.3f}")
        typer.echo(f"time     {result['seconds']:.1f} s")
        if submission is not None:
            typer.echo(f"submission written to {submission}")
        return
    if submission is not None:
        raise ReidError("--submission applies to the ATRW test folder only")
    if limit is not None:
        raise ReidError("--limit does not apply to ATRW train: its split is fixed by "
                        "--train-ratio and --split-seed")
    from reid.data.load import load_catalogue

    ratio = atrw_eval.ATRW_TRAIN_RATIO if train_ratio is None else train_ratio
    records = load_catalogue(catalogue)
    validation = atrw_eval.atrw_validation_set(
        records, ratio, split_seed, threshold, workers=workers, show_progress=not as_json
    )
    if method in FUSED_METHODS:
        held = set(validation.heldout_entities)
        if fusion_fit is None:
            fit = [r for r in records if r.individual_id not in held]
            echo(f"fused weights fitted on {min(fusion_sample, len(fit))} images of the "
                 f"{len(validation.train_entities)} training entities")
        else:
            fit = _fusion_records(fusion_fit, exclude={r.path.resolve() for r in records
                                                       if r.individual_id in held})
        _fit_fusion(scorer, fit, fusion_sample, split_seed, as_json, echo)
    result = atrw_eval.evaluate_atrw_validation(validation, scorer, show_progress=not as_json)
    if method in FUSED_METHODS:
        result["fusion_weights"] = [float(w) for w in scorer.weights]
    result.update(_scoring_options(local, shortlist, shortlist_local, refined))
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(f"ATRW train validation: held-out entities of the {result['split']} "
               f"({result['entities']} entities, {result['images']} images), method {method}"
               + _scoring_label(local, shortlist, shortlist_local, refined))
    typer.echo(f"near-duplicates excluded from the galleries: {result['excluded']} "
               f"({result['excluded_per_query']:.1f} per query, threshold "
               f"{result['threshold']:g}); {result['queries_without_positive']} queries "
               "left without a positive are not counted")
    typer.echo(f"queries  {result['queries']}")
    typer.echo(f"top-1    {result['top1']:.3f}")
    typer.echo(f"top-5    {result['top5']:.3f}")
    typer.echo(f"mAP      {result['mAP']:.3f}")
    typer.echo(f"time     {result['seconds']:.1f} s")


def _fusion_records(path: Path, exclude: set) -> list:
    """The labelled records of ``path`` to fit fused weights on, minus any evaluated image."""
    from reid.data.load import load_catalogue

    return [r for r in load_catalogue(path)
            if r.individual_id is not None and r.path.resolve() not in exclude]


def _fit_fusion(
    scorer, records: list, sample: int, seed: int, as_json: bool, echo, groups=None
) -> None:
    """Fit ``scorer``'s fused weights on at most ``sample`` of ``records`` (seeded draw);
    ``groups`` (one near-duplicate group per record): pairs within a group are not
    learnt from."""
    import numpy as np

    from reid.progress import progress_bar

    if len(records) > sample:
        pick = sorted(np.random.default_rng(seed).choice(len(records), sample, replace=False))
        records = [records[i] for i in pick]
        groups = None if groups is None else [groups[i] for i in pick]
    exclude = None
    if groups is not None:
        g = np.asarray(groups)
        exclude = g[:, None] == g[None, :]
    with progress_bar(scorer.work(len(records)), "fit fused", enabled=not as_json) as advance:
        w = scorer.fit(records, advance, exclude=exclude)
    first = "re-ranked similarity" if scorer.rerank else "cosine"
    echo(f"fused weights ({first}, log inliers, sqrt tentative): "
         f"{', '.join(f'{x:.3f}' for x in w)} from {len(records)} images")


def _eval_open_set(
    records: list,
    model: Path | None,
    gallery_ratio: float,
    unknown_ratio: float,
    seed: int,
    verify_top: int,
    workers: int,
    as_json: bool,
    new_prior: float | None = None,
    near_duplicates: bool = False,
    local: str | None = None,
    local_shortlist: int | None = None,
    refined: tuple[int, int] | None = None,
    reliability: Path | None = None,
) -> None:
    from reid.evaluate import evaluate_open_set
    from reid.match import MatchConfig, check_new_prior

    for name, v in (("--gallery-ratio", gallery_ratio), ("--unknown-ratio", unknown_ratio)):
        if not 0 < v < 1:
            raise ReidError(f"{name} must be between 0 and 1, got {v}")
    if new_prior is not None:
        check_new_prior(new_prior)
    result = evaluate_open_set(
        records,
        model,
        train_ratio=gallery_ratio,
        unknown_ratio=unknown_ratio,
        seed=seed,
        workers=workers,
        config=MatchConfig(verify_top=verify_top,
                           local=_refining(local, refined),
                           local_shortlist=local_shortlist or 0,
                           refine=refined[0] if refined else 0),
        new_prior=new_prior,
        show_progress=not as_json,
        near_duplicates=near_duplicates,
    )
    _report_open_set(result, as_json, reliability)


def _report_open_set(result: dict, as_json: bool, diagram: Path | None = None) -> None:
    """Print an open-set result (text or JSON) and draw its reliability diagram to
    ``diagram``. The figures are printed whatever becomes of the drawing; a drawing that
    fails is then reported as an error (exit status 2)."""
    failed = None
    if diagram is not None:
        from reid.reliability import plot_reliability

        try:
            plot_reliability(result["reliability"], diagram, ece=result["ECE"],
                             mean=result["ECE_perfect"], p_value=result["ECE_p"],
                             title=f"open set: {result['queries']} queries, gallery of "
                             f"{result['gallery']} ({result.get('model') or 'model'})")
            result["reliability_diagram"] = str(diagram)
        except Exception as err:  # noqa: BLE001 - hours of evaluation must not be lost
            failed = f"the reliability diagram was not written ({diagram}): {err}"
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        from reid.metrics import format_p

        typer.echo(f"gallery  {result['gallery']} images; queries {result['queries']} "
                   f"({result['n_known']} of enrolled flanks, {result['n_unknown']} of new "
                   "ones)")
        for key in ("BAKS", "BAUS", "gm", "ECE", "top1_known"):
            typer.echo(f"{key:<9}{result[key]:.3f}")
            if key == "ECE":
                typer.echo(f"         (a perfectly calibrated matcher on these "
                           f"{result['queries']} queries: {result['ECE_perfect']:.3f} on "
                           f"average, 95 % below {result['ECE_perfect_p95']:.3f}; "
                           f"{format_p(result['ECE_p'])})")
        typer.echo(f"time     {result['seconds']:.1f} s")
        if "reliability_diagram" in result:
            typer.echo(f"reliability diagram: {result['reliability_diagram']}")
    if failed is not None:
        raise ReidError(failed)


def _refining(local: str | None, refined: tuple[int, int] | None):
    """The local features config of kind ``local`` (None: None, the index's or the
    default kind), keeping ``refined[1]`` keypoints per image for a matcher that refines
    (``refined``: (N, keypoints); ALIKED only)."""
    from reid.local import local_config

    if refined is None:
        return None if local is None else local_config(local)
    if local is None:
        raise ReidError("--refine needs --local aliked: only ALIKED keeps more keypoints per "
                        "image than it matches on")
    from reid.methods.sift import with_refinement

    return with_refinement(local_config(local), refined[1])


@app.command(
    epilog=(
        "Examples:\n\n"
        "reid locate ../shared/data/nyala-dev/labels.csv --out runs/nyala-located.csv "
        "--sheet runs/nyala-located.png\n\n"
        "reid eval runs/nyala-located.csv --method sift --train-ratio 0.8 --split-seed 0\n\n"
        "reid train -c training/configs/nyala.yaml data.manifest=runs/nyala-located.csv "
        "--out runs/nyala-located\n\n"
        "reid locate season/manifest.csv --out season/located.csv --overwrite-boxes"
    ),
)
@_user_errors
def locate(
    catalogue: Annotated[
        Path, typer.Argument(help="A catalogue in any format reid eval accepts.")
    ],
    out: Annotated[
        Path,
        typer.Option(
            help="Manifest CSV to write: the catalogue with bbox_x, bbox_y, bbox_w, bbox_h "
            "filled in (image paths relative to it where the images lie below its folder, "
            "else absolute)."
        ),
    ],
    overwrite_boxes: Annotated[
        bool,
        typer.Option("--overwrite-boxes", help="Replace the boxes the catalogue already has."),
    ] = False,
    sheet: Annotated[
        Path | None, typer.Option(help="Also save a contact sheet PNG with the boxes drawn.")
    ] = None,
    threshold: Annotated[
        float, typer.Option(help="Share of the activation map's range that counts as animal.")
    ] = 0.3,
    head_trim: Annotated[
        float, typer.Option(help="Share of the animal box's width cut at the head end.")
    ] = 0.2,
    leg_trim: Annotated[
        float, typer.Option(help="Share of the animal box's height cut at the bottom (legs).")
    ] = 0.3,
    size: Annotated[
        int, typer.Option(help="Longer side of the image as the network sees it (pixels).")
    ] = 320,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per network batch.")] = 16,
    workers: Annotated[int, typer.Option(min=1, help="Image decoding threads.")] = 2,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    method: Annotated[
        str,
        typer.Option(help="head: the flank head of the --model release (learned from ATRW "
                     "pose keypoints; --size and the CAM options do not apply); cam: the "
                     "ImageNet class-activation map with the trims below; auto: head when "
                     "the release has one, else cam."),
    ] = "auto",
    model: Annotated[
        Path | None,
        typer.Option(help="Model release whose flank head finds the boxes (--method head; "
                     "default: the shipped one)."),
    ] = None,
) -> None:
    """Find the flank in whole-animal photos and write a manifest with boxes.

    Field photos show the whole animal in clutter. --method head (auto, the default,
    when the release has one): the model release's flank head, a small head on the
    embedding network's feature map learned from the torso that ATRW's pose keypoints
    give, marks the torso directly.
    --method cam: the ImageNet classifier of EfficientNet-Lite0 (no detector weights)
    marks where it sees an animal (class activation map); the largest region above
    --threshold is the animal, and its torso (without --head-trim at the head end, which
    the side tells, and --leg-trim at the bottom) is the flank box. BENCHMARKS.md
    ("Locating the flank") compares them. Rows that have a box keep it unless
    --overwrite-boxes.
    reid eval, reid enroll and reid train crop to the boxes of the new manifest.
    """
    from reid.contact_sheet import save_contact_sheet
    from reid.data.load import load_catalogue
    from reid.data.manifest import write_manifest
    from reid.locate import FlankLocator, LocateConfig, locate_catalogue
    from reid.progress import progress_bar

    if out.exists() and out.resolve() == catalogue.resolve():
        raise ReidError(f"--out {out} is the catalogue itself: write the boxes to a new file")
    if out.is_dir():
        raise ReidError(f"--out {out} is a folder: give a CSV file name")
    if device not in ("cpu", "cuda"):
        raise ReidError(f"--device {device!r} is not cpu or cuda")
    if method not in ("auto", "head", "cam"):
        raise ReidError(f"--method {method!r} is not auto, head or cam")
    config = LocateConfig(
        size=size, threshold=threshold, head_trim=head_trim, leg_trim=leg_trim,
        batch_size=batch_size,
    )
    records = load_catalogue(catalogue)
    todo = sum(1 for r in records if overwrite_boxes or r.bbox is None)
    locator = None
    if method != "cam":
        from reid.boxhead import boxer_of
        from reid.match import resolve_model
        from reid.release import load_release

        net, manifest = load_release(resolve_model(model), device=device)
        locator = boxer_of(net, manifest, device)
        if locator is None and method == "head":
            raise ReidError(f"{manifest.get('name', model)}: the model release has no flank "
                            "head; use --method cam")  # fmt: skip
    if locator is None:
        locator = FlankLocator(config, device=device, workers=workers)
    with progress_bar(todo, "locating flanks") as advance:
        located, n = locate_catalogue(
            records, locator, overwrite=overwrite_boxes, progress=advance
        )
    write_manifest(located, out)
    typer.echo(f"located {n} of {len(records)} images ({len(records) - n} kept their box); "
               f"wrote {out}")
    if sheet is not None:
        save_contact_sheet(located, sheet)
        typer.echo(f"contact sheet: {sheet}")


@app.command()
@_user_errors
def enroll(
    catalogue: Annotated[
        Path, typer.Argument(help="A catalogue in any format reid eval accepts.")
    ],
    index: Annotated[Path, typer.Option(help="Gallery index folder to create or extend.")],
    model: Annotated[
        Path | None,
        typer.Option(help="Model release (default: the index's model, else the shipped one)."),
    ] = None,
    organisation: Annotated[
        str, typer.Option(help="Organisation that owns these images (for filtered search).")
    ] = "",
    workers: Annotated[int, typer.Option(min=1, help="Parallel workers.")] = 2,
    calibration_sample: Annotated[
        int, typer.Option(min=10, help="Gallery images used as held-out calibration queries.")
    ] = 1000,
    new_prior: Annotated[
        float | None,
        typer.Option(help="Expected share of queries that show an animal (flank) not in "
                     "the gallery: P(new)'s prior, stored with the index "
                     "[default: the index's, else 0.5]."),
    ] = None,
    calibration: Annotated[
        str,
        typer.Option(help="Match calibration: 'gallery' fits it on the gallery (the model "
                     "release's when the gallery is too small), 'release' uses the "
                     "release's (reid calibrate)."),
    ] = "gallery",
    local: Annotated[
        str | None,
        typer.Option(help="Local features that verify candidates: rootsift, xfeat (XFeat + "
                     "LighterGlue), xfeat-mnn or aliked (ALIKED + LightGlue) (BENCHMARKS.md, "
                     "Local features) "
                     "[default: the index's, else rootsift]."),
    ] = None,
    shortlist_local: Annotated[
        int | None,
        typer.Option(min=0, help="Verify, besides the embedding's best candidates, each "
                     "query's M gallery images whose local descriptors share the most mutual "
                     "nearest neighbours with it (for species the model ranks poorly, e.g. "
                     "a new species zero-shot; every gallery image compared, about 12 ms an "
                     "image with aliked on 2 cores: for galleries of hundreds of photos). "
                     "Stored with the index and used by reid match, serve and bulk; a "
                     "gallery that calibrates itself is calibrated with it "
                     "[default: the index's, else 0]."),
    ] = None,
    refine: Annotated[
        int | None,
        typer.Option(min=0, help="With --local aliked: keep --refine-keypoints keypoints "
                     "per photo, and match each query's first N verified candidates again "
                     "on all of them (every pair is matched on 1,024 first). For species "
                     "whose right flank is found but not put first (nyala zero-shot); about "
                     "1.5 s a pair on 2 CPU cores. Stored with the index and used by reid "
                     "match, serve and bulk; a new index only (its keypoints must hold "
                     "them) [default: the index's, else 0]."),
    ] = None,
    refine_keypoints: Annotated[
        int | None,
        typer.Option(min=3, help="--refine: keypoints kept per photo [default: 2048]."),
    ] = None,
    locate: Annotated[
        bool,
        typer.Option(help="Crop each new photo without a box to the flank that the model's flank "
                     "head finds (as reid locate does); queries are then cropped the same "
                     "way. For galleries of whole-animal field photos, not of flank crops "
                     "(BENCHMARKS.md, Locating the flank)."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Enroll a catalogue's identified flank photos in a gallery index (build or extend).

    Embeds each new image, caches its keypoints for geometric verification, refits the
    calibration of match probabilities on the whole gallery and saves the index
    atomically. Images already enrolled, unidentified ones and those of an unknown side
    are skipped. An index built with another model is refused. With --locate, field
    photos of whole animals are cropped to their flank first (the model's flank head),
    and queries to the gallery are then cropped the same way.
    """
    from reid.data.load import load_catalogue
    from reid.index import is_index
    from reid.local import local_config
    from reid.match import MatchConfig
    from reid.match import enroll as enroll_catalogue

    if refine_keypoints is not None and not refine:
        raise ReidError("--refine-keypoints applies with --refine N (N >= 1) only")
    if refine and local is None and refine_keypoints is None and is_index(index):
        chosen = None  # the index's own features: refused below if they keep no more
    elif refine:
        from reid.local.aliked import REFINE_KEYPOINTS

        chosen = _refining(local, (refine, refine_keypoints or REFINE_KEYPOINTS))
    else:
        chosen = None if local is None else local_config(local)
    records = load_catalogue(catalogue)
    summary = enroll_catalogue(
        records, index, model, organisation=organisation, workers=workers,
        calibration_sample=calibration_sample, new_prior=new_prior,
        config=MatchConfig(local=chosen, local_shortlist=shortlist_local, refine=refine),
        show_progress=not as_json, calibration=calibration, locate=locate,
    )
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
        return
    skipped = ", ".join(f"{n} {why}" for why, n in summary.skipped.items() if n) or "none"
    if locate:
        typer.echo(f"located the flank in {summary.located} photos without a box")
    typer.echo(f"enrolled {summary.added} images into {index} ({summary.total} in all; "
               f"skipped: {skipped})")
    cal = summary.calibration
    if cal.get("gallery_refused"):
        typer.echo(f"the gallery cannot calibrate itself: {cal['gallery_refused']}")
    where = "the model release's calibration, fitted on" if cal.get("source") == "release" else (
        "calibrated on")
    typer.echo(f"{where} {cal['queries']} held-out gallery queries "
               f"(best candidate right for {cal['top1_known']:.1%} of known ones)")


@app.command()
@_user_errors
def match(
    images: Annotated[
        list[Path],
        typer.Argument(help="Photos to identify: flank crops, or whole photos (see --locate)."),
    ],
    index: Annotated[Path, typer.Option(help="Gallery index folder (from reid enroll).")],
    side: Annotated[
        str, typer.Option(help="Flank shown: left, right or unknown (searches both).")
    ] = "unknown",
    species: Annotated[
        str | None, typer.Option(help="Species to search (default: all).")
    ] = None,
    top: Annotated[int, typer.Option(min=1, help="Candidates to show.")] = 5,
    encounter: Annotated[
        bool,
        typer.Option("--encounter", help="The images are frames of one animal: match as one."),
    ] = False,
    model: Annotated[
        Path | None,
        typer.Option(help="Model release (default: the index's model, else the shipped one)."),
    ] = None,
    new_prior: Annotated[
        float | None,
        typer.Option(help="Expected share of queries that show an animal (flank) not in "
                     "the gallery: P(new)'s prior for this run "
                     "[default: the one stored with the index]."),
    ] = None,
    side_threshold: Annotated[
        float,
        typer.Option(min=0.5, max=1.0,
                     help="With --side unknown, search only the side the photo shows when the "
                     "model's side head gives it at least this probability (1: always both)."),
    ] = 0.95,
    locate: Annotated[
        bool,
        typer.Option("--locate/--no-locate",
                     help="Crop each photo to the flank that the model's flank head finds, "
                     "when the gallery's photos were cropped to boxes (a gallery of crops "
                     "or whole photos is matched with whole photos); no effect for a model "
                     "without one. --no-locate matches the photos as they are."),
    ] = True,
    local: Annotated[
        str | None,
        typer.Option(help="Local features that verify candidates: rootsift, xfeat (XFeat + "
                     "LighterGlue), xfeat-mnn or aliked (ALIKED + LightGlue) (BENCHMARKS.md, "
                     "Local features) "
                     "[default: the kind the index caches]."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (a list per image).")] = False,
) -> None:
    """Identify flank photos against a gallery: known individual or new, with probability.

    Prints for each photo the decision and a ranked table of candidates with their
    embedding (global), keypoint (local, RANSAC inliers) and fused scores and calibrated
    probabilities. --json adds the evidence: the best gallery images and the matched
    keypoint coordinates.
    """
    from reid.data.records import BBox
    from reid.images import crop, load_image
    from reid.match import MatchConfig, Matcher, write_json

    if side not in ("left", "right", "unknown"):
        raise ReidError(f"--side {side!r} is not left, right or unknown")
    from reid.local import local_config

    config = MatchConfig(new_prior=new_prior, side_threshold=side_threshold,
                         local=None if local is None else local_config(local))
    matcher = Matcher.open(index, model, config=config)
    pictures = [load_image(p) for p in images]
    boxes = [matcher.locate(pic) if locate else None for pic in pictures]
    pictures = [pic if b is None else crop(pic, BBox(*b), name=str(p))
                for pic, b, p in zip(pictures, boxes, images, strict=True)]  # fmt: skip
    located = [None if b is None else list(b) for b in boxes]
    kw = dict(side=None if side == "unknown" else side, species=species, top=top)
    if encounter:
        results = [matcher.match_encounter(pictures, **kw)]
        names = [", ".join(p.name for p in images)]
        results[0].query_boxes = located if any(located) else None
    else:
        results = [matcher.match(pic, **kw) for pic in pictures]
        names = [str(p) for p in images]
        for res, b in zip(results, located, strict=True):
            res.query_boxes = None if b is None else [b]
    if as_json:
        typer.echo(write_json(results))
        return
    for name, res in zip(names, results, strict=True):
        said = f"known: {res.individual} ({res.side} flank)" if res.decision == "known" else "new"
        typer.echo(f"{name}: {said}  P(right) {res.probability:.2f}  "
                   f"P(new) {res.new_probability:.2f}")
        for b in res.query_boxes or []:
            if b is not None:
                typer.echo(f"  flank box (x, y, w, h) found by the model: {b[0]}, {b[1]}, "
                           f"{b[2]}, {b[3]}")
        if res.left_probability is not None:
            typer.echo(f"  side from the photo: P(left) {res.left_probability:.2f}; "
                       f"searched {' and '.join(res.searched)}")
        typer.echo(f"  {'#':<3}{'individual':<16}{'side':<7}{'global':>8}{'inliers':>9}"
                   f"{'fused':>8}{'P(same)':>9}  best gallery image")
        for k, c in enumerate(res.candidates, 1):
            best = Path(c.evidence[0].image).name if c.evidence else ""
            count = f"{c.local_score:.0f}" + ("*" if c.refined else "")
            typer.echo(f"  {k:<3}{c.individual:<16}{c.side:<7}{c.global_score:>8.3f}"
                       f"{count:>9}{c.fused_score:>8.2f}{c.probability:>9.2f}  {best}")
        if any(c.refined for c in res.candidates):
            typer.echo("  * inliers counted on all the keypoints the gallery keeps (--refine)")
    typer.echo(f"model {results[0].model_version}")


def _scoring_options(
    local: str | None,
    shortlist: int | None,
    shortlist_local: int | None = None,
    refined: tuple[int, int] | None = None,
) -> dict:
    """The ``reid eval --json`` keys of the scoring options given (``local``,
    ``shortlist``, ``shortlist_local``, ``refine`` and ``refine_keypoints``)."""
    given = {"local": local, "shortlist": shortlist, "shortlist_local": shortlist_local}
    if refined is not None:
        given.update(refine=refined[0], refine_keypoints=refined[1])
    return {k: v for k, v in given.items() if v is not None}


def _scoring_label(
    local: str | None,
    shortlist: int | None,
    shortlist_local: int | None = None,
    refined: tuple[int, int] | None = None,
) -> str:
    """What ``reid eval`` prints after the method's name for those options."""
    return (
        (f" (local features {local})" if local else "")
        + (f", each query's {shortlist} nearest verified" if shortlist else "")
        + (
            f", and its {shortlist_local} with the most mutual descriptor neighbours"
            if shortlist_local
            else ""
        )
        + (
            f", its first {refined[0]} matched again on {refined[1]} keypoints"
            if refined
            else ""
        )
    )


#: The ``reid eval`` methods that fuse the embedding with local features (``--shortlist``,
#: ``--fusion-fit``), and those that take ``--local`` (a kind of local features).
FUSED_METHODS = ("fused", "fused-rerank")
LOCAL_METHODS = ("sift", *FUSED_METHODS)
#: LOCAL_METHODS as a message names them: "sift, fused or fused-rerank"
LOCAL_METHODS_TEXT = f"{', '.join(LOCAL_METHODS[:-1])} or {LOCAL_METHODS[-1]}"


def _method_with_model(method: str, workers: int, model: Path | None, local: str | None = None,
                       shortlist: int | None = None, shortlist_local: int | None = None,
                       refined: tuple[int, int] | None = None):
    """``get_method``, passing ``model``, ``local`` (a kind of local features, for
    :data:`LOCAL_METHODS`), ``shortlist`` (fused's ``top``), ``shortlist_local``
    (fused's ``local_top``) and ``refined`` ((refine, refine_keypoints)) only when given;
    a clear error for a method that uses no trained model."""
    from reid.methods import get_method

    options = {} if local is None else {"local": local}
    if refined is not None:
        options.update(refine=refined[0], refine_keypoints=refined[1])
    if shortlist is not None:
        options["top"] = shortlist
    if shortlist_local is not None:
        options["local_top"] = shortlist_local
    if model is None:
        return get_method(method, workers=workers, **options)
    try:
        return get_method(method, workers=workers, model=model, **options)
    except TypeError as e:
        if "'model'" not in str(e):
            raise
        raise ReidError(
            f"method {method!r} uses no trained model, so --model does not apply; "
            "use --method embedding"
        ) from None


@_user_errors
def export(
    checkpoint: Annotated[Path, typer.Argument(help="A training checkpoint (.pt) to release.")],
    out: Annotated[Path, typer.Option(help="Release folder to write.")],
    name: Annotated[
        str | None, typer.Option(help="Release name (default: the folder's name).")
    ] = None,
    training_data: Annotated[
        str | None,
        typer.Option(help="What it was trained on (default: taken from the checkpoint)."),
    ] = None,
    input_size: Annotated[
        str | None,
        typer.Option(
            help="Size HxW to embed at, e.g. 192x384 (default: the training size). Choose "
            "it on a validation catalogue with bench/bench_input_size.py."
        ),
    ] = None,
    blend: Annotated[
        Path | None,
        typer.Option(
            help="A release of the same architecture (the one fine-tuning started from) "
            "to average the weights with (WiSE-FT): keeps what it knew."
        ),
    ] = None,
    blend_weight: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Share of the checkpoint in the --blend average."),
    ] = 0.5,
) -> None:
    """Turn a training checkpoint into a clean model release.

    Writes OUT/model.safetensors (weights only), OUT/manifest.json (architecture,
    preprocessing, training data, metrics, SHA-256 of the weights) and a README.md model
    card. Load it with --model OUT (reid eval) or reid.release.load_release.

    With --blend RELEASE the weights are --blend-weight x the checkpoint's + the rest x
    the release's (weight-space ensembling, WiSE-FT): a model fine-tuned on one catalogue
    keeps more of what the release knew. Choose the weight on validation data.
    """
    from reid.licence import Licence, combine, of_release
    from reid.release import (
        blend_weights,
        load_checkpoint_model,
        load_release,
        parse_size,
        read_manifest,
        release_folder,
        save_release,
        training_data_of,
    )

    net, ckpt = load_checkpoint_model(checkpoint)
    if training_data is None:
        training_data = training_data_of(ckpt)
    # the terms the weights inherit: the checkpoint's (its data and starting release) and
    # the blended release's
    licence = Licence.from_dict(ckpt.get("licence"))
    if blend is not None:
        licence = combine(licence, of_release(release_folder(blend)))
        base, _ = load_release(blend, for_inference=False)
        blend_weights(net, base, blend_weight)
        sha = read_manifest(release_folder(blend))["sha256"]
        training_data = (f"{blend_weight:g} x ({training_data}) + {1 - blend_weight:g} x "
                         f"release {sha[:12]} (weights averaged)")  # fmt: skip
    metrics = ckpt.get("metrics") if isinstance(ckpt.get("metrics"), dict) else {}
    folder = save_release(
        net,
        out,
        name=name or out.resolve().name,
        training_data=training_data,
        metrics=metrics,
        input_size=None if input_size is None else parse_size(input_size, "--input-size"),
        licence=licence,
    )
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    typer.echo(f"released {manifest['name']} to {folder}")
    if licence is not None:
        typer.echo(f"licence {licence.summary} (inherited; full terms in {folder / 'LICENSE'})")
    typer.echo(f"sha256 {manifest['sha256']}")


@app.command(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=(
        "Examples:\n\n"
        "reid train --config training/configs/default.yaml --out runs/lite0\n\n"
        "reid train -c training/configs/default.yaml optim.lr=3e-4 "
        "data.manifest=../shared/data/nyala-dev/labels.csv\n\n"
        "reid train --resume runs/lite0\n\n"
        "torchrun --nproc_per_node=2 -m training -c training/configs/default.yaml  (data parallel)"
    ),
)
@_user_errors
def train(
    overrides: Annotated[
        list[str] | None,
        typer.Argument(
            help="Config overrides section.key=value, e.g. optim.lr=3e-4 schedule.epochs=5 "
            "model.input_size=32,64 data.manifest=PATH (a data source given here replaces "
            "the file's).",
            metavar="KEY=VALUE",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Training config YAML (training/configs/*.yaml)."),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Continue the run in this folder from its last completed epoch; KEY=VALUE "
            "overrides apply on top of its config.yaml (schedule.epochs=N: train on to epoch "
            "N, the lr schedule rebuilt for N epochs); the model, data source and split "
            "cannot change."
        ),
    ] = None,
    init: Annotated[
        Path | None,
        typer.Option(help="Start from this model release (fine-tuning); the loss head is new."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Run folder to write (default: the config's run.out).")
    ] = None,
) -> None:
    """Train the embedding model on a catalogue (or a synthetic preset).

    Trains with identity-balanced P x K batches (a class is one flank of one individual),
    flank-aware augmentation (never a plain horizontal flip), sub-centre ArcFace plus
    batch-hard triplet loss, and evaluates on held-out individuals with the reid eval
    protocol. The run folder gets config.yaml, last.pt (resumable), best.pt (best mAP),
    log.csv and curves.png; make a release with reid export RUN/best.pt --out DIR.
    """
    from training.config import load_config
    from training.engine import fit

    overrides = list(overrides or [])
    if resume is not None:
        if config is not None or init is not None:
            raise ReidError(
                "--resume continues a run with its own config.yaml: leave out --config and --init"
            )
        if out is not None and out.resolve() != resume.resolve():
            raise ReidError("--resume writes into the run it continues: leave out --out")
        cfg = load_config(resume / "config.yaml", overrides)
        run_dir = resume
    else:
        if config is None:
            raise ReidError(
                "give --config FILE (e.g. training/configs/default.yaml), or --resume RUN_DIR"
            )
        extra = [] if init is None else [f"run.init={init}"]
        extra += [] if out is None else [f"run.out={out}"]
        cfg = load_config(config, [*overrides, *extra])
        run_dir = Path(cfg.run.out)
    summary = fit(cfg, run_dir, resume=resume is not None, echo=typer.echo)
    best = summary["best"]
    if best is not None:
        typer.echo(
            f"best: epoch {best['epoch']}  top-1 {best['top1']:.3f}  mAP {best['mAP']:.3f}  "
            f"({run_dir / 'best.pt'})"
        )


# Registry commands (sightings, individuals, movements, export/import, map); `reid export`
# keeps exporting model releases (reid export CHECKPOINT --out DIR).
from reid.cli_registry import register as _register_registry  # noqa: E402

_register_registry(app, _user_errors, export)

@app.command()
@_user_errors
def bulk(
    source: Annotated[
        Path,
        typer.Argument(
            help="The season: a Camtrap DP package folder, a folder with manifest.csv (or "
            "a manifest CSV), or a folder tree of images (time and place from EXIF)."
        ),
    ],
    index: Annotated[Path, typer.Option(help="Gallery index folder to match against.")],
    out: Annotated[Path, typer.Option(help="Run folder (rerun the same command to resume).")],
    model: Annotated[
        Path | None, typer.Option(help="Model release (default: the gallery's, else shipped).")
    ] = None,
    engine: Annotated[str, typer.Option(help="local (this machine) or ray.")] = "local",
    address: Annotated[
        str | None,
        typer.Option(help="Ray cluster address (auto, HOST:6379, ray://HOST:10001); "
                     "default: a local Ray instance."),
    ] = None,
    ray_workers: Annotated[
        int | None, typer.Option(min=1, help="Ray matcher actors (default: CPUs / 2).")
    ] = None,
    ray_cpus: Annotated[
        int | None, typer.Option(min=1, help="CPUs of a local Ray instance (default 2).")
    ] = None,
    gpus_per_worker: Annotated[
        float, typer.Option(min=0, help="GPUs per Ray matcher actor (with --device cuda).")
    ] = 0.0,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    gap: Annotated[
        float, typer.Option(min=0, help="Longest pause (s) between frames of one burst.")
    ] = 60.0,
    batch_size: Annotated[int, typer.Option(min=1, help="Frames per model batch.")] = 32,
    decode_threads: Annotated[int, typer.Option(min=1, help="Image decoding threads.")] = 2,
    match_threads: Annotated[
        int, typer.Option(min=1, help="Encounters matched at once (keypoints, verification).")
    ] = 2,
    top: Annotated[int, typer.Option(min=1, help="Candidates kept per encounter.")] = 5,
    screen: Annotated[
        float | None,
        typer.Option(min=0.0, max=0.999999,
                     help="Decide an encounter on the embedding alone, without keypoint "
                     "verification, when the gallery's calibrated screening model is at least "
                     "this sure (of the best candidate or of 'new'); 0 verifies every one "
                     "[default: BulkOptions.screen]."),
    ] = None,
    verify_frames: Annotated[
        int | None,
        typer.Option(min=1, help="Frames of a burst whose keypoints are verified (best first; "
                     "the next only when the first is not decisive) [default: "
                     "BulkOptions.verify_frames]."),
    ] = None,
    new_prior: Annotated[
        float | None,
        typer.Option(help="Expected share of the season's encounters that show an animal "
                     "(flank) not in the gallery: P(new)'s prior "
                     "[default: the one stored with the index]."),
    ] = None,
    side_threshold: Annotated[
        float | None,
        typer.Option(min=0.5, max=1.0,
                     help="Encounters of unknown side search only the side the photo shows "
                     "when the model's side head gives it at least this probability (1: "
                     "always both) [default: MatchConfig.side_threshold, 0.95]."),
    ] = None,
    new_threshold: Annotated[
        float,
        typer.Option(help="Calibrated P(same flank) at which unmatched encounters are "
                     "grouped into one proposed new individual (gallery-calibrated: "
                     "lower than 0.5 because unmatched neighbours are more often alike)."),
    ] = 0.2,
    species: Annotated[
        str | None, typer.Option(help="Species of images whose folder/file name says none.")
    ] = None,
    utc_offset: Annotated[
        float, typer.Option(help="Camera clock offset from UTC (h) where EXIF gives none.")
    ] = 0.0,
    locate: Annotated[
        bool,
        typer.Option("--locate/--no-locate",
                     help="Crop frames without a box to the flank that the model's flank head "
                     "finds, when the gallery's photos were cropped to boxes (no effect for "
                     "a model without one); the boxes are journalled."),
    ] = True,
    report: Annotated[bool, typer.Option("--report/--no-report", help="Write report.html.")] = True,
    registry: Annotated[
        bool,
        typer.Option("--registry/--no-registry",
                     help="Load the sightings into the registry as proposed, for review "
                     "(OUT/camtrap-dp; REID_DATABASE_URL, else the data home's SQLite)."),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Match a whole season of camera-trap captures against the gallery (crash-safe).

    Frames of one deployment within --gap seconds form one encounter, matched as one.
    Encounters that match nobody are clustered into proposed new individuals. Results are
    journalled as they are produced: after a crash or kill, the same command resumes.
    Writes OUT/encounters.csv, OUT/new_individuals.csv, OUT/report.html (+ map.png),
    OUT/summary.json and OUT/camtrap-dp/ with individualID filled (the input package, or
    one derived from a folder or manifest season), which --registry loads.
    """
    from reid.bulk import BulkOptions, run_bulk

    opts = BulkOptions(
        model=model, engine=engine, address=address, ray_workers=ray_workers,
        ray_cpus=ray_cpus, gpus_per_worker=gpus_per_worker, device=device, gap_s=gap,
        batch_size=batch_size, decode_threads=decode_threads, match_threads=match_threads,
        top=top,
        screen=BulkOptions.screen if screen is None else screen, new_prior=new_prior,
        verify_frames=BulkOptions.verify_frames if verify_frames is None else verify_frames,
        new_threshold=new_threshold, side_threshold=side_threshold, locate=locate,
        species=species, utc_offset_h=utc_offset, report=report,
        registry="" if registry else None, show_progress=not as_json,
    )
    summary = run_bulk(source, index, out, opts, echo=None if as_json else typer.echo)
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
        return
    typer.echo(
        f"{summary.encounters} encounters ({summary.frames} frames): {summary.known} known, "
        f"{summary.new} new in {summary.proposals} proposed individuals, "
        f"{summary.unreadable} unreadable; {summary.matched_now} matched now at "
        f"{summary.frames_per_s} frames/s"
        + (
            f" ({summary.network_s / summary.seconds:.0%} of the time in the network)"
            if summary.network_s and summary.seconds
            else ""
        )
    )
    for name, path in summary.outputs.items():
        typer.echo(f"{name:<16}{path}")


@app.command(name="synth-season")
@_user_errors
def synth_season(
    out: Annotated[Path, typer.Option(help="Folder for gallery/, season/ and season.csv.")],
    bench: Annotated[
        bool, typer.Option("--bench", help="The benchmark season (5,000 frames).")
    ] = False,
    known: Annotated[int, typer.Option(min=1, help="Gallery individuals per species.")] = 10,
    new: Annotated[int, typer.Option(min=0, help="New individuals per species.")] = 4,
    passes: Annotated[int, typer.Option(min=1, help="Passes per individual.")] = 3,
    frames_per_burst: Annotated[int, typer.Option(min=1, help="Frames per burst.")] = 3,
    seed: Annotated[int, typer.Option(help="Seed.")] = 11,
    workers: Annotated[int, typer.Option(min=1, help="Parallel rendering processes.")] = 2,
) -> None:
    """Generate a synthetic camera-trap season with known truth for reid bulk.

    OUT/gallery/ holds the known individuals (enroll it into an index), OUT/season/ the
    season as a Camtrap DP package, OUT/season.csv the same frames with the truth.
    """
    from reid.progress import progress_bar
    from reid.synthetic.season import SEASON_BENCH, SeasonSpec, write_season

    spec = SEASON_BENCH if bench else SeasonSpec(
        known=known, new=new, passes=passes, frames_per_burst=frames_per_burst, seed=seed
    )
    total = spec.frames + len(spec.species) * spec.known * spec.gallery_per_side * 2
    with progress_bar(total, "rendering season") as adv:
        records = write_season(out, spec, workers=workers, progress=adv)
    typer.echo(f"wrote {len(records)} season frames to {out / 'season'} and the gallery to "
               f"{out / 'gallery'}")


# The matching API (reid serve) and its keys (reid keys create|revoke|list).
from reid.cli_serve import register as _register_serve  # noqa: E402

_register_serve(app, _user_errors)

# The flank-side head of a release (reid side fit|eval).
from reid.cli_side import register as _register_side  # noqa: E402

_register_side(app, _user_errors)

from reid.cli_calibrate import register as _register_calibrate  # noqa: E402

_register_calibrate(app, _user_errors)

# Population assessment: capture histories, SCR density (reid population ...).
from reid.cli_population import register as _register_population  # noqa: E402

_register_population(app, _user_errors)


if __name__ == "__main__":  # pragma: no cover
    app()
