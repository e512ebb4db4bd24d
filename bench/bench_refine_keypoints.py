"""More ALIKED keypoints for the few best candidates only: each query's shortlist (the
embedding's top k, joined by ``--local-top`` photos by descriptors) is ranked by the
confident-match count at the default 1,024 keypoints, then its first ``--refine`` are
matched again with ``--keypoints`` keypoints and put in that order, ahead of the rest
(BENCHMARKS.md, "More keypoints for the first five"). The product's version is ``reid eval
--refine N`` (:func:`reid.methods.sift.refined_ranking`), which picks each query's first
N by the ranking it makes (``fused``'s, within the shortlist) rather than by the count.

At 2,048 keypoints LightGlue costs about 4x per pair (1.3-1.9 s on the 2-core CPU), too
much for the whole shortlist here but not for 5 pairs a query; a GPU would take the
whole shortlist. Splits, caches and the count rule as ``bench/bench_lightglue_rules.py``
(the raw matches of both settings are cached per pair)::

    nice -n 5 .venv/bin/python bench/bench_refine_keypoints.py --split nyala \\
        --manifest runs/nyala-all-head.csv --k 40 --local-top 20 --refine 5 --keypoints 2048 \\
        [--model runs/nyala-head-ft-release]

Prints JSON: top-1 / top-5 / mAP of the 1,024 ranking and of the refined one, where the
first ``--refine`` are ordered by the new count alone or plus the 1,024 count.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_lightglue_rules import raw_matches, rule_matrix, with_descriptor_shortlist  # noqa: E402
from bench_local import _key, cached_features, load_split, reranked, topk, with_settings  # noqa: E402

from reid.local import local_config  # noqa: E402
from reid.local.recall import MUTUAL_SIMILARITY  # noqa: E402
from reid.metrics import retrieval_metrics  # noqa: E402

RULE = "count-min:0.5"  # ALIKED's default: confident matches, fewer than 6 score 0


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--split", choices=("atrw", "nyala"), default="nyala")
    ap.add_argument("--manifest", type=Path, help="nyala-dev with boxes (reid locate)")
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "bigcat-default")
    ap.add_argument("--k", type=int, default=40)
    ap.add_argument("--local-top", type=int, default=20)
    ap.add_argument("--refine", type=int, default=5)
    ap.add_argument("--keypoints", type=int, default=2048)
    ap.add_argument("--cache", type=Path, default=ROOT / "runs" / "local-cache")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    args.cache.mkdir(parents=True, exist_ok=True)
    records, exclude, _, labels, cosine = load_split(args)
    cosine = cosine.astype(np.float64)
    n = len(records)
    boxes = [args.manifest] if args.manifest else []

    def setting(config):
        feats, _ = cached_features(records, config, args.cache)
        return feats, _key(json.dumps(config.extraction_fingerprint(), sort_keys=True), *boxes)

    def score(sim) -> list[float]:
        m = retrieval_metrics(sim, labels, labels, ks=(1, 5), exclude=exclude)
        return [round(float(m[key]), 3) for key in ("top1", "top5", "mAP")]

    base = local_config("aliked")
    feats, key = setting(base)
    top = topk(cosine, exclude, args.k)
    if args.local_top:
        counts_file = args.cache / f"mutual-{args.split}-{MUTUAL_SIMILARITY:g}-{key}.npy"
        top = with_descriptor_shortlist(top, feats, cosine, exclude, args, counts_file)
    pairs = sorted({(min(i, int(j)), max(i, int(j))) for i, row in enumerate(top) for j in row})
    raw = raw_matches(feats, pairs, base, args.cache / f"lightglue-raw-{args.split}-{key}.pkl")
    local = rule_matrix(RULE, raw, feats, base, top)
    ranking = reranked(cosine, local)
    # each query's first --refine by the 1,024 ranking (label-blind: only what reid eval
    # leaves out is skipped)
    first = [
        np.argsort(-np.where(exclude[i], -np.inf, ranking[i]))[: args.refine] for i in range(n)
    ]
    more = with_settings(local_config("aliked"), [f"max_keypoints={args.keypoints}"])
    feats2, key2 = setting(more)
    pairs2 = sorted({(min(i, int(j)), max(i, int(j))) for i, row in enumerate(first) for j in row})
    print(f"{len(pairs2)} pairs at {args.keypoints} keypoints", flush=True)
    raw2 = raw_matches(feats2, pairs2, more, args.cache / f"lightglue-raw-{args.split}-{key2}.pkl")
    local2 = rule_matrix(RULE, raw2, feats2, more, first)
    out = {"split": args.split, "model": str(args.model), "k": args.k,
           "local_top": args.local_top, "refine": args.refine, "keypoints": args.keypoints,
           "pairs": len(pairs), "refined_pairs": len(pairs2), "1024": score(ranking)}  # fmt: skip
    for name, weight in (("refined", 0.0), ("refined + 1024 count", 1.0)):
        sim = ranking.copy()
        for i, row in enumerate(first):
            for j in map(int, row):
                sim[i, j] = 1e5 + local2[i, j] + weight * local[i, j] + 1e-4 * cosine[i, j]
        out[name] = score(sim)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
