"""Locating the flank: `reid locate` (class-activation map) against the torso given by
ATRW's pose keypoints, and the learned flank head (reid/boxhead.py).

Steps (each caches what it computes under --cache, default runs/locate-bench):

``cache``  the shipped model's feature maps (whole photo at 320 px on the longer side) of
           ATRW train photos with a torso box (reid.boxhead.torso_box of their
           keypoints). Training entities of the default entity split (0.8, seed 0;
           reid.atrw_eval.atrw_entity_split), every --stride-th photo: as it is and
           zoomed out onto a procedural camera-trap backdrop (the animal at 40-75 % of
           the frame, as in field photos), each mirrored at random, for fitting. The
           21 held-out entities, every --held-stride-th photo: as it is and zoomed out,
           for measuring, with the boxes of `reid locate --method cam` (default
           settings, the record's side) of the same images.
``fit``    fits the head on the training entities' cells only and measures IoU on the
           held-out entities (mean, median, share >= 0.5) for the CAM boxes and the
           head; with --save-to, writes the head into that release.
``synth``  on synthetic camera-trap frames with a known animal box (data/side-frames-4242,
           rendered by `reid side fit`'s recipe; never used for fitting): the IoU of
           the animal box of `reid locate` with the drawn animal, and the share of each
           flank box (CAM torso, head) inside the drawn animal.
``nyala``  boxes for nyala-dev's held-out individuals (split 0.8, seed 0): CAM and head,
           as manifests for `reid eval ... --train-ratio 0.8 --split-seed 0`.
``crops``  on flank crops (synth-bench-v1, whose photos have no head, tail or background):
           the share of each crop the head's box keeps, and `embedding` ranking whole
           and cropped to it.
``rank``   `embedding` ranking on the ATRW held-out entities (the protocol of reid eval:
           near-duplicates excluded) with whole photos, CAM torso crops, head crops and
           keypoint-torso crops.

    .venv/bin/python bench/bench_locate.py cache
    .venv/bin/python bench/bench_locate.py fit [--save-to models/bigcat-default]
    .venv/bin/python bench/bench_locate.py synth
    .venv/bin/python bench/bench_locate.py rank
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"
ATRW = SHARED / "atrw-train"


def zoom_out(fitted: np.ndarray, box, rng: np.random.Generator):
    """``fitted`` (RGB uint8) shrunk to 40-75 % and pasted at a random place on a
    procedural backdrop of the same size; the box moved with it."""
    import cv2

    from reid.data.records import BBox
    from reid.synthetic.backdrop import landscape

    h, w = fitted.shape[:2]
    s = float(rng.uniform(0.4, 0.75))
    small = cv2.resize(fitted, (max(1, round(w * s)), max(1, round(h * s))),
                       interpolation=cv2.INTER_AREA)  # fmt: skip
    back = landscape(rng, h, w, float(rng.uniform(0.15, 0.4)))[..., ::-1]
    canvas = np.clip(back, 0, 255).astype(np.uint8)
    sh, sw = small.shape[:2]
    y0 = int(rng.integers(0, h - sh + 1))
    x0 = int(rng.integers(0, w - sw + 1))
    canvas[y0 : y0 + sh, x0 : x0 + sw] = small
    moved = BBox(box.x * sw / w + x0, box.y * sh / h + y0, box.w * sw / w, box.h * sh / h)
    return np.ascontiguousarray(canvas), moved


def mirrored(fitted: np.ndarray, box):
    from reid.data.records import BBox

    w = fitted.shape[1]
    return np.ascontiguousarray(fitted[:, ::-1]), BBox(w - box.x - box.w, box.y, box.w, box.h)


def aslist(box) -> list[float]:
    return [float(box.x), float(box.y), float(box.w), float(box.h)]


def scaled(box, s: float):
    from reid.data.records import BBox

    return BBox(box.x * s, box.y * s, box.w * s, box.h * s)


def atrw_records():
    from reid.atrw_eval import atrw_entity_split
    from reid.data.atrw import read_atrw_keypoints, read_atrw_train
    from reid.images import load_image

    records = read_atrw_train(ATRW / "reid_list_train.csv")
    train, held = atrw_entity_split(records)
    kp = read_atrw_keypoints(ATRW / "reid_keypoints_train.json")
    return records, set(train), set(held), kp, load_image


def cache(args) -> None:
    import torch

    from reid.boxhead import coverage_grid, feature_map, fit_input, torso_box
    from reid.locate import FlankLocator, cam_box, flank_box
    from reid.release import load_release

    torch.set_num_threads(1)
    out = Path(args.cache)
    out.mkdir(parents=True, exist_ok=True)
    records, train, held, kp, load_image = atrw_records()
    model, manifest = load_release(Path(args.model))
    locator = FlankLocator()
    cfg = locator.config
    cells, targets, owners = [], [], []
    held_rows: list[dict] = []
    held_maps: list[np.ndarray] = []
    started = time.time()
    n_train = n_none = 0
    # held-out entities first (the CAM baseline), then every --stride-th training photo
    # (consecutive frames of one walk are near-duplicates)
    order = [i for i, r in enumerate(records) if r.individual_id in held][:: args.held_stride]
    order += [i for i, r in enumerate(records) if r.individual_id in train][:: args.stride]
    for step, i in enumerate(order):
        r = records[i]
        k = kp.get(Path(r.path).name)
        image = load_image(r.path)
        h, w = image.shape[:2]
        box = torso_box(k, (w, h)) if k is not None else None
        if box is None:
            n_none += 1
            continue
        fitted = fit_input(image, args.size)
        s = fitted.shape[1] / w
        fbox = scaled(box, s)
        rng = np.random.default_rng(10_000 + i)
        if r.individual_id in train:
            n_train += 1
            # as it is and zoomed out onto a backdrop, each mirrored at random
            versions = [(fitted, fbox), zoom_out(fitted, fbox, rng)]
            versions = [mirrored(*v) if rng.uniform() < 0.5 else v for v in versions]
            for im, b in versions:
                f = feature_map(model, im).numpy()  # (C, gh, gw)
                gh, gw = f.shape[1:]
                cells.append(f.reshape(f.shape[0], -1).T.astype(np.float16))
                targets.append(coverage_grid(b, (gh, gw)).ravel())
                owners.append(np.full(gh * gw, int(r.individual_id), np.int32))
        elif r.individual_id in held:
            zoomed, zbox = zoom_out(fitted, fbox, rng)
            kinds = (("photo", image, box, image), ("zoomed", zoomed, zbox, zoomed))
            for kind, im, b, full in kinds:
                fim = fit_input(im, args.size)
                f = feature_map(model, fim).numpy().astype(np.float16)
                held_maps.append(f)
                amap = locator.activation_maps([full])[0]
                cam_animal = cam_box(amap, cfg.threshold)
                cam = flank_box(cam_animal, r.side, cfg.head_trim, cfg.leg_trim)
                held_rows.append({
                    "path": str(r.path), "entity": r.individual_id, "side": r.side,
                    "kind": kind, "image_hw": list(full.shape[:2]),
                    "input_hw": list(fim.shape[:2]), "truth": aslist(b),
                    "cam": aslist(cam), "cam_animal": aslist(cam_animal),
                })  # fmt: skip
        if step % 50 == 0:
            print(f"{step}/{len(order)} {time.time() - started:.0f}s", flush=True)
    np.savez(out / "train_cells.npz", cells=np.concatenate(cells),
             targets=np.concatenate(targets), owners=np.concatenate(owners))  # fmt: skip
    np.savez(out / "held_maps.npz", *held_maps)
    (out / "held.json").write_text(json.dumps({
        "rows": held_rows, "size": args.size, "train_photos": n_train,
        "without_torso": n_none, "model_sha256": manifest["sha256"],
        "seconds": round(time.time() - started),
    }))  # fmt: skip
    print(
        f"cached: {n_train} training photos x 2, {len(held_rows)} held-out images, "
        f"{n_none} photos without a torso box, {time.time() - started:.0f}s"
    )


def iou_stats(pairs) -> dict:
    from reid.boxhead import iou
    from reid.data.records import BBox

    v = np.array([iou(BBox(*a), BBox(*b)) for a, b in pairs])
    if not len(v):
        return {"n": 0}
    return {"n": int(len(v)), "mean_iou": round(float(v.mean()), 3),
            "median_iou": round(float(np.median(v)), 3),
            "share_iou_ge_0.5": round(float((v >= 0.5).mean()), 3)}  # fmt: skip


def head_boxes(head, rows, maps, threshold: float) -> list[list[float]]:
    import torch

    from reid.boxhead import grid_box

    out = []
    for row, f in zip(rows, maps, strict=True):
        with torch.inference_mode():
            prob = head(torch.from_numpy(f.astype(np.float32))[None])[0].numpy()
        box = grid_box(prob, tuple(row["input_hw"]), tuple(row["image_hw"]), threshold)
        out.append(aslist(box))
    return out


def fit(args) -> None:
    import torch

    from reid.boxhead import fit_flank_head

    torch.set_num_threads(1)
    cdir = Path(args.cache)
    data = np.load(cdir / "train_cells.npz")
    held = json.loads((cdir / "held.json").read_text())
    hm = np.load(cdir / "held_maps.npz")
    maps = [hm[f"arr_{i}"] for i in range(len(hm.files))]
    rows = held["rows"]
    started = time.time()
    if args.head:  # measure a head fitted before (on another cache) instead
        from reid.boxhead import FlankHead

        head = FlankHead.load(Path(args.head), data["cells"].shape[1])
    else:
        head = fit_flank_head(data["cells"].astype(np.float32), data["targets"],
                              hidden=args.hidden, epochs=args.epochs, seed=args.seed)  # fmt: skip
    fit_s = time.time() - started
    result = {"cells": int(len(data["targets"])), "hidden": args.hidden,
              "epochs": args.epochs, "fit_seconds": round(fit_s, 1), "held_out": {}}  # fmt: skip
    for kind in ("photo", "zoomed"):
        idx = [i for i, r in enumerate(rows) if r["kind"] == kind]
        sub = [rows[i] for i in idx]
        res = {
            "cam_torso (reid locate)": iou_stats((r["cam"], r["truth"]) for r in sub),
            "cam_animal": iou_stats((r["cam_animal"], r["truth"]) for r in sub),
            "whole_image": iou_stats(
                ([0, 0, r["image_hw"][1], r["image_hw"][0]], r["truth"]) for r in sub
            ),
        }
        for t in args.thresholds:
            boxes = head_boxes(head, sub, [maps[i] for i in idx], t)
            res[f"head (threshold {t})"] = iou_stats(
                zip(boxes, [r["truth"] for r in sub], strict=True)
            )
        result["held_out"][kind] = res
    print(json.dumps(result, indent=2))
    tag = Path(args.head).stem if args.head else f"head-h{args.hidden}-e{args.epochs}"
    tag += f"-s{args.seed}" if args.seed and not args.head else ""
    (cdir / f"fit-{tag}.json").write_text(json.dumps(result, indent=2))
    if not args.head:
        head.save(cdir / f"{tag}.safetensors")
    if args.save_to:
        from reid.boxhead import save_to_release

        info = {
            "fitted_on": f"../shared/data/atrw-train training entities (entity split 0.8, "
            f"seed 0): {held.get('train_photos')} photos with a keypoint torso, each as it "
            "is and zoomed out onto a procedural backdrop, each mirrored at random",
            "fit": f"bench/bench_locate.py fit: hidden {result['hidden']}, "
            f"{result['epochs']} epochs, seed {args.seed}",
            "size": held["size"],
            "threshold": args.thresholds[0],
            "held_out_iou": {
                k: v[f"head (threshold {args.thresholds[0]})"]
                for k, v in result["held_out"].items()
            },  # fmt: skip
        }
        save_to_release(Path(args.save_to), head, info)
        print(f"wrote the flank head into {args.save_to}")


def synth(args) -> None:
    import torch

    from reid.boxhead import FlankBoxer, iou
    from reid.data.load import load_catalogue
    from reid.images import load_image
    from reid.locate import FlankLocator, cam_box, flank_box

    torch.set_num_threads(1)
    records = [r for r in load_catalogue(ROOT / args.frames) if r.bbox is not None]
    boxer = FlankBoxer(model_with_head(args))
    locator = FlankLocator()
    rows = {"cam_animal_iou": [], "cam_torso_inside": [], "head_inside": [], "head_iou": []}

    def inside(a, b) -> float:
        ix = max(0.0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
        iy = max(0.0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
        return ix * iy / max(a.w * a.h, 1e-9)

    for r in records[: args.limit]:
        image = load_image(r.path)
        cfg = locator.config
        animal = cam_box(locator.activation_maps([image])[0], cfg.threshold)
        torso = flank_box(animal, r.side, cfg.head_trim, cfg.leg_trim)
        hb = boxer.box(image)
        rows["cam_animal_iou"].append(iou(animal, r.bbox))
        rows["cam_torso_inside"].append(inside(torso, r.bbox))
        rows["head_inside"].append(inside(hb, r.bbox))
        rows["head_iou"].append(iou(hb, r.bbox))
    out = {k: round(float(np.mean(v)), 3) for k, v in rows.items()}
    out["frames"] = len(rows["head_iou"])
    out["data"] = args.frames
    print(json.dumps(out, indent=2))


def rank(args) -> None:
    """`embedding` (and --methods) ranking of the held-out ATRW photos that have a keypoint
    torso (reid eval's protocol on that subset: near-duplicate frames out of a query's
    gallery), each cropped to: nothing, the CAM torso, the flank head's box, the
    keypoint torso itself."""
    from reid.atrw_eval import atrw_validation_set, evaluate_atrw_validation
    from reid.boxhead import FlankBoxer
    from reid.data.atrw import read_atrw_train
    from reid.data.records import BBox
    from reid.images import load_image
    from reid.methods import get_method

    cdir = Path(args.cache)
    held = json.loads((cdir / "held.json").read_text())
    truth = {r["path"]: r for r in held["rows"] if r["kind"] == "photo"}
    records = read_atrw_train(ATRW / "reid_list_train.csv")
    full = atrw_validation_set(records, workers=1)
    keep = np.array([str(r.path) in truth for r in full.records])
    validation = replace(
        full,
        records=[r for r, k in zip(full.records, keep, strict=True) if k],
        groups=full.groups[keep],
        exclude=full.exclude[np.ix_(keep, keep)],
    )
    boxer = FlankBoxer(model_with_head(args))
    head_boxes = {}
    if not args.variants or "flank head" in args.variants:
        head_boxes = {str(r.path): boxer.box(load_image(r.path)) for r in validation.records}
    variants = {
        "whole photo": lambda r: None,
        "reid locate (CAM) torso": lambda r: BBox(*truth[str(r.path)]["cam"]),
        "flank head": lambda r: head_boxes[str(r.path)],
        "keypoint torso (truth)": lambda r: BBox(*truth[str(r.path)]["truth"]),
    }
    out = {}
    for name, box_of in variants.items():
        if args.variants and name not in args.variants:
            continue
        v = replace(validation, records=[replace(r, bbox=box_of(r)) for r in validation.records])
        for method in args.methods:
            scorer = get_method(method, model=Path(args.model))
            res = evaluate_atrw_validation(v, scorer)
            kept = {k: res[k] for k in ("top1", "top5", "mAP", "queries") if k in res}
            out[f"{name} / {method}"] = kept
            print(name, method, json.dumps(kept), flush=True)
    tag = Path(args.head).stem if args.head else "release"
    (cdir / f"rank-{tag}-{'-'.join(args.methods)}.json").write_text(json.dumps(out, indent=2))


def crops(args) -> None:
    """What the flank head does to photos that are already flank crops (synth-bench-v1:
    no head, tail or background): the share of the crop its box keeps, and `embedding`
    ranking of the first --individuals individuals' photos, whole and cropped to it."""
    import torch

    from reid.boxhead import FlankBoxer
    from reid.data.load import load_catalogue
    from reid.evaluate import evaluate
    from reid.images import load_image
    from reid.methods import get_method

    torch.set_num_threads(1)
    records = load_catalogue(ROOT / "data" / "synth-bench-v1")
    keep = sorted({r.individual_id for r in records})[: args.individuals]
    records = [r for r in records if r.individual_id in set(keep)]
    boxer = FlankBoxer(model_with_head(args))
    boxes, shares = [], []
    for r in records:
        image = load_image(r.path)
        b = boxer.box(image)
        boxes.append(b)
        shares.append(b.w * b.h / (image.shape[0] * image.shape[1]))
    out = {"photos": len(records), "individuals": len(keep),
           "kept_share_mean": round(float(np.mean(shares)), 3)}  # fmt: skip
    scorer = get_method("embedding", model=Path(args.model))
    located = [replace(r, bbox=b) for r, b in zip(records, boxes, strict=True)]
    for name, recs in (("whole", records), ("flank head", located)):
        res = evaluate(recs, scorer, show_progress=False)
        out[name] = {k: round(float(res[k]), 3) for k in ("top1", "top5", "mAP")}
        out[name]["queries"] = res["queries"]
    print(json.dumps(out, indent=2))


def model_with_head(args):
    """The release of --model, with the flank head of --head when given."""
    from reid.boxhead import FlankHead, attach
    from reid.release import load_release

    model, _ = load_release(Path(args.model))
    if args.head:
        attach(model, FlankHead.load(Path(args.head), model.num_features))
    return model


def nyala(args) -> None:
    """Boxes of nyala-dev's held-out individuals (split 0.8, seed 0, as reid eval
    --train-ratio 0.8 --split-seed 0 and reid train make it): CAM (reid locate's
    defaults, the record's side) and the flank head, each written as a manifest of the
    whole catalogue whose held-out rows carry the box (reid eval scores only those)."""
    import torch

    from reid.boxhead import FlankBoxer
    from reid.data.load import load_catalogue
    from reid.data.manifest import write_manifest
    from reid.locate import FlankLocator
    from reid.splits import disjoint_split

    torch.set_num_threads(1)
    records = load_catalogue(SHARED / "nyala-dev" / "labels.csv")
    test = disjoint_split(records, 0.8, 0).test
    keys = {(str(r.path), r.side) for r in test}
    out = Path(args.cache)
    locators = {"cam": FlankLocator(), "head": None}
    for name in args.locators:
        started = time.time()
        if name == "head":
            model = model_with_head(args)
            boxes = FlankBoxer(model).locate_records(test)
        else:
            boxes = locators["cam"].locate_records(test)
        by_key = {(str(r.path), r.side): b for r, b in zip(test, boxes, strict=True)}
        located = [replace(r, bbox=by_key[(str(r.path), r.side)])
                   if (str(r.path), r.side) in keys else r for r in records]  # fmt: skip
        tag = name if name == "cam" or not args.head else f"{name}-{Path(args.head).stem}"
        write_manifest(located, out / f"nyala-{tag}.csv")
        print(
            f"{name}: {len(test)} held-out photos in {time.time() - started:.0f}s -> "
            f"{out / f'nyala-{tag}.csv'}",
            flush=True,
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("step", choices=["cache", "fit", "synth", "rank", "nyala", "crops"])
    p.add_argument("--individuals", type=int, default=20)
    p.add_argument("--locators", nargs="+", default=["cam", "head"])
    p.add_argument("--model", default=str(ROOT / "models" / "bigcat-default"))
    p.add_argument("--cache", default=str(ROOT / "runs" / "locate-bench"))
    p.add_argument("--size", type=int, default=320)
    p.add_argument("--stride", type=int, default=5)
    p.add_argument("--held-stride", type=int, default=2)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.5, 0.4, 0.3])
    p.add_argument("--save-to", default=None)
    p.add_argument("--head", default=None, help="a fitted head file (fit writes them)")
    p.add_argument("--frames", default="data/side-frames-4242")
    p.add_argument("--limit", type=int, default=200)
    p.add_argument("--methods", nargs="+", default=["embedding"])
    p.add_argument("--variants", nargs="+", default=None, help="rank: only these crops")
    args = p.parse_args()
    if not (ATRW / "reid_list_train.csv").is_file() and args.step != "synth":
        sys.exit(f"{ATRW} is not here: nothing to measure")
    steps = {"cache": cache, "fit": fit, "synth": synth, "rank": rank, "nyala": nyala,
             "crops": crops}  # fmt: skip
    steps[args.step](args)


if __name__ == "__main__":
    main()
