"""``reid side fit|eval``: the flank-side head of a model release (see :mod:`reid.side`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from reid.errors import ReidError

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


def _with_mirrors(plain: np.ndarray, mirror: np.ndarray, sides: list[str]):
    keep = np.array([s in ("left", "right") for s in sides])
    left = np.array([s == "left" for s in sides])[keep].astype(np.float32)
    x = np.concatenate([plain[keep], mirror[keep]])
    y = np.concatenate([left, 1.0 - left])  # a mirrored left-facing animal faces right
    return x, y


def register(app: typer.Typer, user_errors) -> None:
    @side_app.command("fit")
    @user_errors
    def fit(
        catalogues: Annotated[
            list[Path],
            typer.Argument(help="Catalogues (any format reid eval reads) with sides given."),
        ],
        model: Annotated[Path, typer.Option(help="The release folder to fit and write into.")],
        held_out: Annotated[
            float,
            typer.Option(help="Share of individuals held out to measure the head before "
                         "it is refitted on all of them (0: no measurement)."),
        ] = 0.2,
        split_seed: Annotated[int, typer.Option(help="Seed of the held-out split.")] = 0,
        l2: Annotated[float, typer.Option(help="L2 penalty of the logistic regression.")] = 1e-2,
        workers: Annotated[int, typer.Option(min=0, help="Image decoding processes.")] = 2,
        device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    ) -> None:
        """Fit the side head of a release on photos of known side and their mirror images,
        measure it on held-out individuals, refit on all, and store it in the release.

        Photos of unknown side are left out. The head reads the release's own feature
        map, so refit it whenever the weights change (a new release has none)."""
        from reid.data.load import load_catalogue
        from reid.release import load_release
        from reid.side import fit_side_head, save_to_release, side_accuracy
        from reid.splits import disjoint_split

        net, _ = load_release(model, device=device)
        records, truths, names = [], [], []
        for c in catalogues:
            recs = [r for r in load_catalogue(c) if r.side in ("left", "right")]
            if not recs:
                raise ReidError(f"{c}: no photo has a side (left or right)")
            records += recs
            truths += _photo_truth(c, recs)
            names.append(str(c))
        plain, mirror = _pooled(net, records, workers, device, "side features")
        sides = [r.side for r in records]
        info: dict = {"fitted_on": f"{len(records)} photos and their mirrors: {', '.join(names)}"}
        if held_out > 0:
            split = disjoint_split(records, 1.0 - held_out, split_seed)
            train_ids = {r.individual_id for r in split.train}
            is_train = np.array([r.individual_id in train_ids for r in records])
            train_sides = [s for s, t in zip(sides, is_train, strict=True) if t]
            x, y = _with_mirrors(plain[is_train], mirror[is_train], train_sides)
            head = fit_side_head(x, y, l2=l2)
            test = ~is_train
            truth = [t for t, k in zip(truths, test, strict=True) if k]
            known = np.array([t in ("left", "right") for t in truth])
            import torch

            with torch.no_grad():
                p = torch.sigmoid(head.logit_of_pooled(torch.as_tensor(plain[test]))).numpy()
            score = side_accuracy(p[known], [t for t, k in zip(truth, known, strict=True) if k])
            info["held_out"] = {
                "individuals": len({r.individual_id for r in split.test}),
                "split": f"{held_out:g} of individuals, seed {split_seed}",
                **score,
            }
            typer.echo(f"held out ({info['held_out']['individuals']} individuals, "
                       f"{score['photos']} photos): accuracy {score['accuracy']:.3f}, "
                       f"decided {score['decided_share']:.3f} with accuracy "
                       f"{score['decided_accuracy']}")  # fmt: skip
        x, y = _with_mirrors(plain, mirror, sides)
        head = fit_side_head(x, y, l2=l2)
        save_to_release(model, head, info)
        typer.echo(f"side head fitted on {len(x)} photos (with mirrors), written to {model}")

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
