"""Embedding throughput on this machine: end to end from JPEG files vs the bare network.

    .venv/bin/python bench/bench_embed.py [--images 200] [--batch-size 32] [--workers 2]

Builds (or reuses) a synthetic catalogue of flank photos, then measures images/s of
``embed_records`` (safe decode + letterbox + normalise in worker processes, forward in
this one, channels_last) and of the model's forward pass alone on tensors already in
memory (contiguous and channels_last memory formats), for the model as trained and with
its batch norms folded into the convolutions (:func:`reid.model.fuse_batchnorm`, what
``load_release`` gives every command). The default ModelConfig with random weights
(speed does not depend on them). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

# isort: off
import reid  # noqa: F401  (before torch: OpenMP's wait policy, reid/__init__.py)
import torch

# isort: on

from reid.data.load import load_catalogue
from reid.embed import embed_records
from reid.model import ModelConfig, build_model, fuse_batchnorm
from reid.synthetic.catalogue import write_catalogue


def catalogue(folder: Path, images: int) -> list:
    if (folder / "manifest.csv").exists():
        records = load_catalogue(folder)
        if len(records) >= images:
            return records[:images]
    per_individual = 4  # 2 sides x 2 photos
    n = -(-images // per_individual)
    write_catalogue(folder, species=("tiger",), individuals=n, images_per_side=2, seed=7, workers=2)
    return load_catalogue(folder)[:images]


def rate(fn, n_images: int, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n_images / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "bench-embed-cat")
    args = ap.parse_args()

    records = catalogue(args.data, args.images)
    config = ModelConfig(pretrained=None)
    model = build_model(config).eval()
    h, w = config.input_size
    x = torch.randn(len(records), 3, h, w)
    cl = torch.channels_last
    result = {
        "images": len(records),
        "batch_size": args.batch_size,
        "workers": args.workers,
        "backbone": config.backbone,
        "input_size": list(config.input_size),
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
    }
    for fmt_name, fmt in (("contiguous", torch.contiguous_format), ("channels_last", cl)):
        model = model.to(memory_format=fmt)
        xs = x.contiguous(memory_format=fmt)

        def bare(model=model, xs=xs) -> None:
            with torch.inference_mode():
                for i in range(0, len(xs), args.batch_size):
                    model(xs[i : i + args.batch_size])

        result[f"forward_images_per_s_{fmt_name}"] = round(rate(bare, len(xs), args.repeats), 1)

    # what load_release gives every command: batch norms folded into the convolutions
    fused = fuse_batchnorm(model).to(memory_format=cl)
    xs = x.contiguous(memory_format=cl)

    def bare_fused() -> None:
        with torch.inference_mode():
            for i in range(0, len(xs), args.batch_size):
                fused(xs[i : i + args.batch_size])

    result["forward_images_per_s_channels_last_fused"] = round(
        rate(bare_fused, len(xs), args.repeats), 1
    )

    for name, net, bare_key in (
        ("", model, "forward_images_per_s_channels_last"),
        ("_fused", fused, "forward_images_per_s_channels_last_fused"),
    ):

        def end_to_end(net=net) -> None:  # embed_records runs the model in channels_last
            embed_records(net, records, batch_size=args.batch_size, workers=args.workers)

        key = f"end_to_end{name}_images_per_s"
        result[key] = round(rate(end_to_end, len(records), args.repeats), 1)
        result[f"end_to_end{name}_over_forward"] = round(result[key] / result[bare_key], 3)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
