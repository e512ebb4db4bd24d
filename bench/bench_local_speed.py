"""Speed of each kind of local features on real photos: seconds to extract one image and
to score one pair (p50), every kind on the same images in one process.

Kinds are ``--local`` names, optionally with settings of their config after a colon
(``aliked:max_keypoints=512``; several settings separated by ``;``)::

    nice -n 10 .venv/bin/python bench/bench_local_speed.py runs/nyala-all-head.csv \\
        --kinds rootsift,aliked:max_keypoints=512,aliked --n 12
    nice -n 10 .venv/bin/python bench/bench_local_speed.py ../shared/data/atrw-train \\
        --kinds rootsift,aliked:max_keypoints=512,aliked --n 12

Each image is scored against every other (``scores_against``, one query against the rest,
as the matcher verifies a shortlist), and its descriptors' mutual nearest neighbours are
counted against every other (``mutual_neighbour_counts_to``, the descriptor shortlist);
the first image and pair of each kind warm it up and are not counted. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_local import with_settings  # noqa: E402

from reid.data.load import load_catalogue  # noqa: E402
from reid.embed import load_record_image  # noqa: E402
from reid.local import local_config  # noqa: E402
from reid.local.recall import mutual_neighbour_counts_to  # noqa: E402


def config_of(spec: str):
    """``kind`` or ``kind:field=value;...`` (:func:`bench_local.with_settings`)."""
    name, _, settings = spec.partition(":")
    return with_settings(local_config(name), settings.split(";"))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("catalogue", type=Path, help="a catalogue (folder or list) of real photos")
    ap.add_argument("--kinds", default="rootsift,aliked:max_keypoints=512,aliked")
    ap.add_argument("--n", type=int, default=12, help="images (the first n of the catalogue)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    records = load_catalogue(args.catalogue)[: args.n + 1]
    images = [load_record_image(r) for r in records]
    out: dict = {"catalogue": str(args.catalogue), "images": len(images) - 1,
                 "threads": args.threads}  # fmt: skip
    for spec in args.kinds.split(","):
        config = config_of(spec)
        extract, feats = [], []
        for image in images:
            t = time.perf_counter()
            feats.append(config.extract(image))
            extract.append(time.perf_counter() - t)
        per_pair, per_count = [], []
        for i, f in enumerate(feats):
            rest = feats[:i] + feats[i + 1 :]
            t = time.perf_counter()
            config.scores_against(f, rest)
            per_pair.append((time.perf_counter() - t) / len(rest))
            t = time.perf_counter()
            mutual_neighbour_counts_to(f, rest)
            per_count.append((time.perf_counter() - t) / len(rest))
        out[spec] = {
            "s_per_image": round(float(np.median(extract[1:])), 4),
            "s_per_pair": round(float(np.median(per_pair[1:])), 4),
            # the descriptor shortlist's cost per gallery image (--shortlist-local)
            "s_per_mutual_count": round(float(np.median(per_count[1:])), 5),
            "keypoints": int(np.median([len(f) for f in feats])),
        }
        print(json.dumps({spec: out[spec]}), flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
