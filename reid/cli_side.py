"""``reid side fit|eval``: the flank-side head of a model release (see :mod:`reid.side`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from reid.errors import ReidError
from reid.side import DEFAULT_SIDE_THRESHOLD

side_app = typer.Typer(
    help="Decide the flank side from the photo: fit a release's side head, measure it.",
    no_args_is_help=True,
)


def _photo_truth(catalogue: Path, records) -> list[str]:
    """Each record's side as the photo shows it: for ATRW training data, from the photo's
    own keypoints where they tell (else ``unknown``); otherwise the record's side."""
    from reid.data.atrw import keypoints_facing, read_atrw_keypoints

    folder = catalogue if catalogue.is_dir() else catalogue.parent
    kp_path = folder / "reid_keypoints_train.json"
    if not kp_path.is_file():
        return [r.side for r in records]
    keypoints = read_atrw_keypoints(kp_path)
    out = []
    for r in records:
        kp = keypoints.get(Path(r.path).name)
        out.append((keypoints_facing(kp) if kp is not None else None) or "unknown")
    return out


def _pooled(model, records, workers: int, device: str, what: str):
    from reid.progress import progress_bar
    from reid.side import pooled_records

    with progress_bar(len(records), what) as advance:
        return pooled_records(model, records, workers=workers, device=device, progress=advance)


def register(app: typer.Typer, user_errors) -> None:
    @side_app.command("fit")
    @user_errors
    def fit(
        catalogues: Annotated[
            list[Path],
            typer.Argument(help="Catalogues (any format reid eval reads) with sides given."),
        ],
        model: Annotated[Path, typer.Option(help="The release folder to fit and write into.")],
        no_cue: Annotated[
            list[Path] | None,
            typer.Option(
                "--no-cue",
                help="A catalogue of crops that do not show which way the animal faces "
                "(flank-only crops, no head or tail): trained toward P = 0.5, so that such "
                "a crop is searched on both sides. Repeatable.",
            ),
        ] = None,
        held_out: Annotated[
            float,
            typer.Option(help="Share of individuals of each catalogue held out to measure "
                         "the head before it is refitted on all (0: no measurement)."),
        ] = 0.2,
        split_seed: Annotated[int, typer.Option(help="Seed of the held-out split.")] = 0,
        l2: Annotated[float, typer.Option(help="L2 penalty of the logistic regression.")] = 1e-2,
        workers: Annotated[int, typer.Option(min=0, help="Image decoding processes.")] = 2,
        device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    ) -> None:
        """Fit the side head of a release on photos of known side and their mirror images,
        measure it on held-out individuals, refit on all, and store it in the release.

        Each catalogue is split by individual as reid train splits it (the same
        --held-out and seed as data.train_ratio and data.split_seed give the same
        held-out individuals: for ATRW train, those the model never trained on). Photos
        of unknown side are left out. The head reads the release's own feature map, so
        refit it whenever the weights change (a new release has none)."""
        import torch

        from reid.data.load import load_catalogue
        from reid.release import load_release
        from reid.side import fit_side_head, save_to_release, side_accuracy
        from reid.splits import disjoint_split

        net, _ = load_release(model, device=device)
        sources = [(c, False) for c in catalogues] + [(c, True) for c in no_cue or []]
        parts = []  # (name, no cue, records, photo truth, held out?)
        for c, cueless in sources:
            every = load_catalogue(c)
            sided = [r for r in every if cueless or r.side in ("left", "right")]
            if not sided:
                raise ReidError(f"{c}: no photo has a side (left or right)")
            test_ids: set = set()
            if held_out > 0:
                test_ids = {r.individual_id
                            for r in disjoint_split(every, 1.0 - held_out, split_seed).test}
            truth = ["unknown"] * len(sided) if cueless else _photo_truth(c, sided)
            is_test = np.array([r.individual_id in test_ids for r in sided])
            parts.append((str(c), cueless, sided, truth, is_test))
        records = [r for part in parts for r in part[2]]
        plain, mirror = _pooled(net, records, workers, device, "side features")

        def targets(part) -> np.ndarray:
            _, cueless, recs, _, _ = part
            return np.array([0.5 if cueless else float(r.side == "left") for r in recs],
                            np.float32)  # fmt: skip

        def fit_on(mask: np.ndarray):
            y = np.concatenate([targets(p) for p in parts])[mask]
            x = np.concatenate([plain[mask], mirror[mask]])
            return fit_side_head(x, np.concatenate([y, 1.0 - y]), l2=l2)

        names = [f"{name}{' (no cue)' if cueless else ''}" for name, cueless, *_ in parts]
        info: dict = {"fitted_on": f"{len(records)} photos and their mirrors: {', '.join(names)}"}
        if held_out > 0:
            is_test = np.concatenate([p[4] for p in parts])
            head = fit_on(~is_test)
            with torch.no_grad():
                p_left = torch.sigmoid(head.logit_of_pooled(torch.as_tensor(plain))).numpy()
            info["held_out"] = {"split": f"{held_out:g} of individuals, seed {split_seed}"}
            at = 0
            for (_, cueless, recs, truth, test), label in zip(parts, names, strict=True):
                p = p_left[at : at + len(recs)]
                at += len(recs)
                if cueless:
                    sure = np.maximum(p[test], 1 - p[test]) >= DEFAULT_SIDE_THRESHOLD
                    sub = {"photos": int(test.sum()),
                           "decided_share": float(sure.mean()) if test.any() else None}
                    typer.echo(f"held out {label}: {sub['photos']} photos, decided "
                               f"{sub['decided_share']} (should be near 0)")  # fmt: skip
                else:
                    pick = test & np.array([t in ("left", "right") for t in truth])
                    sub = side_accuracy(p[pick], [t for t, k in zip(truth, pick, strict=True)
                                                  if k])  # fmt: skip
                    sub["individuals"] = len({r.individual_id
                                              for r, k in zip(recs, test, strict=True) if k})
                    if sub["photos"]:
                        typer.echo(f"held out {label}: {sub['individuals']} individuals, "
                                   f"{sub['photos']} photos, accuracy {sub['accuracy']:.3f}, "
                                   f"decided {sub['decided_share']:.3f} with accuracy "
                                   f"{sub['decided_accuracy']}")  # fmt: skip
                info["held_out"][label] = sub
        head = fit_on(np.ones(len(records), bool))
        save_to_release(model, head, info)
        typer.echo(f"side head fitted on {2 * len(records)} photos (with mirrors), "
                   f"written to {model}")  # fmt: skip

    @side_app.command("eval")
    @user_errors
    def eval_(
        catalogue: Annotated[Path, typer.Argument(help="A catalogue with sides given.")],
        model: Annotated[
            Path | None, typer.Option(help="Release (default: the shipped model).")
        ] = None,
        workers: Annotated[int, typer.Option(min=0, help="Image decoding processes.")] = 2,
        device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Accuracy of the side decision on photos of known side (for ATRW, each photo's
        own keypoints give the truth), and on their mirror images."""
        from reid.data.load import load_catalogue
        from reid.match import resolve_model
        from reid.release import load_release
        from reid.side import head_of, side_accuracy

        net, _ = load_release(resolve_model(model), device=device)
        head = head_of(net)
        if head is None:
            raise ReidError("the model has no side head: fit one with reid side fit")
        records = load_catalogue(catalogue)
        truth = _photo_truth(catalogue, records)
        keep = [i for i, t in enumerate(truth) if t in ("left", "right")]
        if not keep:
            raise ReidError(f"{catalogue}: no photo has a known side")
        records = [records[i] for i in keep]
        truth = [truth[i] for i in keep]
        plain, mirror = _pooled(net, records, workers, device, "side features")
        import torch

        with torch.no_grad():
            p = torch.sigmoid(head.logit_of_pooled(torch.as_tensor(plain))).numpy()
            pm = torch.sigmoid(head.logit_of_pooled(torch.as_tensor(mirror))).numpy()
        flipped = ["right" if t == "left" else "left" for t in truth]
        result = {"photos": side_accuracy(p, truth), "mirrored": side_accuracy(pm, flipped)}
        if as_json:
            typer.echo(json.dumps(result, indent=2))
            return
        for name, r in result.items():
            typer.echo(f"{name:<9} {r['photos']} photos: accuracy {r['accuracy']:.3f}; "
                       f"decided {r['decided_share']:.3f}, of those right "
                       f"{r['decided_accuracy']}")  # fmt: skip

    app.add_typer(side_app, name="side")
