"""Real photos, the yardstick: ATRW train's held-out entities (near-duplicates excluded)
and nyala-dev zero-shot, for several model releases and methods.

ATRW: the default validation split of :mod:`reid.atrw_eval` (80 % of the 107 entities
train, seed 0: 21 held out), each held-out photo a query against the other held-out
photos, its near-duplicate frames removed from its gallery. nyala-dev: every photo a query
against the other photos of the same side (179 individuals; a model shipped by this
project is never trained on them, so all are unseen). ``imagenet`` stands for untrained
ImageNet features: EfficientNet-Lite0's ImageNet weights with GeM pooling and a seeded
random 1280 -> 512 projection (cosine similarities are nearly preserved). Prints one
JSON object per (model, data, method) and writes them all to ``--out``::

    .venv/bin/python bench/bench_real.py --model models/bigcat-default --model imagenet \\
        --methods embedding,embedding-rerank --out runs/bench-real.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def imagenet_release(folder: Path, backbone: str = "efficientnet_lite0") -> Path:
    """A release of untrained ImageNet features (see the module text)."""
    import torch

    from reid.model import ModelConfig, build_model
    from reid.release import save_release

    if (folder / "manifest.json").is_file():
        return folder
    torch.manual_seed(0)
    config = ModelConfig(backbone=backbone, input_size=(192, 384), pretrained="imagenet")
    model = build_model(config).eval()
    name = backbone.replace("efficientnet_", "")
    return save_release(model, folder, name=f"imagenet-{name}-gem", metrics={},
                        training_data="none: ImageNet weights, random projection")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--model",
        action="append",
        default=None,
        help="release folder, or 'imagenet' (Lite0), 'imagenet-lite1' or "
        "'imagenet-lite2' (their packages installed); repeatable "
        "(default: the shipped)",
    )
    ap.add_argument("--methods", default="embedding,embedding-rerank")
    ap.add_argument("--data", default="atrw,nyala", help="atrw and/or nyala")
    ap.add_argument("--atrw", type=Path, default=SHARED / "atrw-train")
    ap.add_argument("--nyala", type=Path, default=SHARED / "nyala-dev" / "labels.csv")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    from reid.atrw_eval import atrw_validation_set, evaluate_atrw_validation
    from reid.data.load import load_catalogue
    from reid.evaluate import evaluate
    from reid.methods import get_method
    from reid.methods.embedding import DEFAULT_MODEL

    models = args.model or [str(DEFAULT_MODEL)]
    data = args.data.split(",")
    validation = None
    if "atrw" in data:
        validation = atrw_validation_set(args.atrw, workers=args.workers, show_progress=True)
    nyala = load_catalogue(args.nyala) if "nyala" in data else None
    rows = []
    for name in models:
        if name == "imagenet":
            release = imagenet_release(Path("runs/imagenet-release"))
        elif name.startswith("imagenet-lite"):
            backbone = "efficientnet_" + name.removeprefix("imagenet-")
            release = imagenet_release(Path(f"runs/{name}-release"), backbone)
        else:
            release = Path(name)
        for method in args.methods.split(","):
            scorer = get_method(method, model=release, workers=args.workers)
            if validation is not None:
                out = evaluate_atrw_validation(validation, scorer, show_progress=True)
                row = {"model": name, "data": "atrw-train held-out (0.8, seed 0)",
                       "method": method,
                       **{k: out[k] for k in ("top1", "top5", "mAP", "queries", "excluded",
                                              "seconds")}}  # fmt: skip
                rows.append(row)
                print(json.dumps(row), flush=True)
            if nyala is not None:
                started = time.perf_counter()
                res = evaluate(nyala, scorer, show_progress=True)
                row = {"model": name, "data": "nyala-dev zero-shot (all 179)", "method": method,
                       "top1": res["top1"], "top5": res["top5"], "mAP": res["mAP"],
                       "queries": res["queries"],
                       "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(f"\n{'model':<34}{'data':<36}{'method':<18}{'top-1':>7}{'top-5':>7}{'mAP':>7}")
    for r in rows:
        print(f"{Path(r['model']).name:<34}{r['data']:<36}{r['method']:<18}"
              f"{r['top1']:>7.3f}{r['top5']:>7.3f}{r['mAP']:>7.3f}")  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
