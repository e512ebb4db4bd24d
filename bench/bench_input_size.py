"""Choose the size a release embeds at: retrieval metrics of one model at several sizes.

Training crops a random 75-100 % of a cached image 1.15 times the input size, so the
animal looks larger in training than a whole photo scaled to the same input does at
inference. A model therefore often matches best when served somewhat larger than it was
trained at (Touvron et al., "Fixing the train-test resolution discrepancy", 2019). GeM
pooling takes any size, so this costs nothing but inference time (which grows with the
pixel count: 192x384 is 1.44 times 160x320).

Choose on a validation catalogue, never on the benchmark the model is reported on
(``synth-val-v1`` for the shipped model: ``reid synth --preset synth-val-v1 --out
data/synth-val-v1``), then release with ``reid export model CKPT --out DIR --input-size
HxW``. Prints one JSON object per size (top-1 and mAP overall and per species) and a
table::

    .venv/bin/python bench/bench_input_size.py data/synth-val-v1 \\
        --model models/bigcat-default --sizes 160x320,176x352,192x384,208x416
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("catalogue", type=Path, help="a catalogue folder or manifest")
    ap.add_argument("--model", type=Path, default=None, help="release (default: shipped)")
    ap.add_argument("--sizes", default="160x320,176x352,192x384,208x416")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)

    from reid.data.load import load_catalogue
    from reid.evaluate import evaluate
    from reid.methods.embedding import EmbeddingMethod
    from reid.release import parse_size

    sizes = [parse_size(s, "--sizes") for s in args.sizes.split(",") if s.strip()]
    records = load_catalogue(args.catalogue)
    rows = []
    for size in sizes:
        method = EmbeddingMethod(workers=args.workers, model=args.model, input_size=size)
        started = time.perf_counter()
        m = evaluate(records, method, show_progress=False)
        row = {
            "size": f"{size[0]}x{size[1]}",
            "trained_at": method.manifest.get("train_input_size"),
            "top1": round(m["top1"], 4),
            "mAP": round(m["mAP"], 4),
            "queries": m["queries"],
            "species": {
                k: {"top1": round(v["top1"], 4), "mAP": round(v["mAP"], 4)}
                for k, v in m["species"].items()
            },
            "seconds": round(time.perf_counter() - started, 1),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    species = sorted({k for r in rows for k in r["species"]})
    head = "| size | top-1 | mAP | " + " | ".join(f"{s} top-1 / mAP" for s in species) + " |"
    print("\n" + head + "\n|" + "---|" * (3 + len(species)))
    for r in rows:
        cells = [f"{r['species'][s]['top1']:.3f} / {r['species'][s]['mAP']:.3f}" for s in species]
        print(f"| {r['size']} | {r['top1']:.3f} | {r['mAP']:.3f} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
