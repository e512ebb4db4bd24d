"""``fused`` ranking all pairs, as ``reid eval --method fused`` ranks a labelled catalogue:
the local score alone, the embedding alone, and the fused score cross-fitted on the
evaluated individuals over one halving (before issue 25's fix) and over
:data:`~reid.methods.fused.CROSS_FIT_REPEATS` halvings (now).

Splits as in ``bench/bench_local.py``: ``atrw`` (ATRW train's 21 held-out entities, their
near-duplicates out of each query's gallery; cross-fitted on their labels, as ``reid
eval`` does for any labelled catalogue: ``reid eval ../shared/data/atrw-train --method
fused`` itself fits on the training entities instead) and ``nyala`` (nyala-dev held out
0.8 / seed 0, left compared with left: ``reid eval ../shared/data/nyala-dev --train-ratio
0.8 --method fused``). The all-pairs local scores are cached under ``--cache``.

    nice -n 10 .venv/bin/python bench/bench_fused_allpairs.py --split atrw --local rootsift
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_local as B  # noqa: E402

from reid.evaluate import evaluate  # noqa: E402
from reid.methods.fused import CROSS_FIT_REPEATS, cross_fitted_fusion, sift_features  # noqa: E402
from reid.methods.sift import SiftMethod  # noqa: E402
from reid.metrics import retrieval_metrics  # noqa: E402


class _Slices:
    """A ``reid eval`` method that ranks each comparison group by ``rank(rows)``."""

    def __init__(self, name, rank, records) -> None:
        self.name, self.rank = name, rank
        self.at = {id(r): i for i, r in enumerate(records)}

    def work(self, n: int) -> int:
        return 1

    def similarity(self, subset, progress=None) -> np.ndarray:
        return self.rank(np.array([self.at[id(r)] for r in subset]))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--split", default="atrw", choices=["atrw", "nyala"])
    ap.add_argument("--local", default="rootsift")
    ap.add_argument("--model", type=Path, default=B.ROOT / "models" / "bigcat-default")
    ap.add_argument("--cache", type=Path, default=B.ROOT / "runs" / "local-cache")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)

    records, exclude, _ = B.split_records(args.split)
    labels = [r.individual_id for r in records]
    e = B.cached_embeddings(records, args.model, args.cache)
    cosine = (e @ e.T).astype(np.float64)
    sift = SiftMethod(args.workers, local=args.local)
    key = B._key(repr(sift.config), *[(r.path, r.bbox) for r in records])
    path = args.cache / f"allpairs-{args.split}-{args.local}-{key}.npy"
    if path.is_file():
        scores = np.load(path)
    else:
        scores = sift.similarity(records).astype(np.float64)
        np.save(path, scores)
    inliers, tentative = sift_features(scores)
    feats = [cosine, inliers, tentative]

    def fused(repeats):
        return lambda rows: cross_fitted_fusion(
            [f[np.ix_(rows, rows)] for f in feats],
            [labels[i] for i in rows],
            scores[np.ix_(rows, rows)],
            repeats=repeats,
        )

    rankings = {
        "embedding": lambda rows: cosine[np.ix_(rows, rows)],
        "local": lambda rows: (scores + 1e-4 * cosine)[np.ix_(rows, rows)],
        "fused_single": fused(1),
        "fused": fused(CROSS_FIT_REPEATS),
    }
    out = {"split": args.split, "local_features": args.local}
    for name, rank in rankings.items():
        if args.split == "atrw":  # one matrix, as reid.atrw_eval scores it
            rows = np.arange(len(records))
            m = retrieval_metrics(rank(rows), labels, labels, ks=(1, 5), exclude=exclude)
        else:  # reid.evaluate.evaluate: one matrix (and one cross-fit) per species/side
            m = evaluate(records, _Slices(name, rank, records), show_progress=False)
        out[name] = {k: round(float(m[k]), 3) for k in ("top1", "top5", "mAP")}
        out[name]["queries"] = m["queries"]
    print(json.dumps(out))
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
