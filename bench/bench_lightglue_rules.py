"""What makes a LightGlue match an inlier, measured on real photos: ALIKED + LightGlue's raw
matches of every pair in the embedding's top k are saved once, then each rule re-scores
them and re-ranks the top k (BENCHMARKS.md, "ALIKED matches counted by confidence").

Rules (``--rules``, comma-separated):

- ``homography``: the USAC homography check every kind ended in before (inliers of
  :func:`reid.verify.verify_tentative`, matches of confidence >= 0.1);
- ``count:T``: matches of confidence >= T, no geometric model (WildFusion counts T = 0.5);
- ``count-min:T``: the same, fewer than ``min_inliers`` (6) scoring 0 (ALIKED's default
  with T = 0.5, :class:`reid.local.AlikedConfig` geometry ``"none"``);
- ``fundamental``: fundamental-matrix inliers (USAC MAGSAC, 3 px);
- ``similarity``: similarity-transform inliers (RANSAC, 10 px).

Every rule adds tentative matches (confidence >= 0.1) / 1000 as the tie-breaker, as every
kind's score does. Splits and rankings as ``bench/bench_local.py`` (``local``: the rule's
score within the top k; ``fused``: cross-fitted as ``reid eval --method fused``;
``local_top1``: why the local ranking's first answer is wrong, :func:`bench_local.why_wrong`)::

    nice -n 10 .venv/bin/python bench/bench_lightglue_rules.py --split nyala \\
        --manifest runs/nyala-all-head.csv --k 40
    nice -n 10 .venv/bin/python bench/bench_lightglue_rules.py --split atrw --k 20

Raw matches are cached under ``--cache`` per split, boxes and keypoint settings, keyed by
image pair, so a larger k or another model's top k adds only the new pairs. ``--aliked
max_keypoints=1024`` (any :class:`reid.local.AlikedConfig` extraction field) measures other
extraction settings; their keypoints and matches are cached apart.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_local import (  # noqa: E402
    ROOT,
    _key,
    cached_features,
    cross_fitted,
    load_split,
    reranked,
    topk,
    why_wrong,
    with_settings,
)

from reid.local import local_config  # noqa: E402
from reid.metrics import retrieval_metrics  # noqa: E402
from reid.verify import _ransac  # noqa: E402

DEFAULT_RULES = (
    "homography,count:0,count:0.1,count:0.2,count:0.5,count-min:0.5,count:0.8,"
    "fundamental,similarity"
)


def raw_matches(feats, pairs, config, cache_file: Path) -> dict:
    """LightGlue's matches (indices, confidences) of each pair, every match kept: the
    product's matching (:class:`reid.local.AlikedConfig`) with ``min_conf`` 0."""
    done = pickle.loads(cache_file.read_bytes()) if cache_file.is_file() else {}
    todo = [p for p in pairs if p not in done]
    print(f"LightGlue: {len(todo)} pairs to match, {len(pairs) - len(todo)} cached", flush=True)
    every = replace(config, min_conf=0.0)
    t0 = time.perf_counter()
    for n, (a, b) in enumerate(todo):
        matches, conf = every._glue(feats[a], feats[b])
        done[(a, b)] = (matches.astype(np.int16), conf.astype(np.float16))
        if n % 250 == 249 or n == len(todo) - 1:
            cache_file.write_bytes(pickle.dumps(done))
            rate = (time.perf_counter() - t0) / (n + 1)
            print(f"  {n + 1}/{len(todo)} pairs, {rate:.3f} s a pair", flush=True)
    return done


def rule_score(rule: str, matches, conf, fa, fb, config) -> float:
    """One pair's score under ``rule`` (plus tentative matches / 1000)."""
    tentative = conf >= 0.1
    tie = min(int(tentative.sum()), 999) / 1000
    name, _, arg = rule.partition(":")
    if name == "homography":
        k, _, _ = _ransac(fa.xy[matches[tentative, 0]], fb.xy[matches[tentative, 1]], config)
        return k + tie
    if name in ("count", "count-min"):
        c = int((conf >= float(arg)).sum())
        if name == "count-min" and c < config.min_inliers:
            c = 0
        return c + tie
    if name in ("fundamental", "similarity"):
        src = fa.xy[matches[tentative, 0]].astype(np.float32)
        dst = fb.xy[matches[tentative, 1]].astype(np.float32)
        if len(src) < 8:
            return tie
        try:
            if name == "fundamental":
                _, inl = cv2.findFundamentalMat(src, dst, cv2.USAC_MAGSAC, 3.0, 0.999, 2000)
            else:
                _, inl = cv2.estimateAffinePartial2D(
                    src, dst, method=cv2.RANSAC, ransacReprojThreshold=10.0
                )
        except cv2.error:  # degenerate samples
            inl = None
        return (0 if inl is None else int(inl.sum())) + tie
    raise SystemExit(f"unknown rule {rule!r}")


def rule_matrix(rule: str, raw: dict, feats, config, top) -> np.ndarray:
    """N×N: ``rule``'s score of each row's shortlisted pairs (``top``), NaN elsewhere;
    each pair's raw matches scored once."""
    n = len(feats)
    memo = {}
    local = np.full((n, n), np.nan)
    for i, row in enumerate(top):
        for j in map(int, row):
            key = (min(i, j), max(i, j))
            if key not in memo:
                m, s = raw[key]
                memo[key] = rule_score(
                    rule, m.astype(np.int64), s.astype(np.float32),
                    feats[key[0]], feats[key[1]], config,
                )  # fmt: skip
            local[i, j] = memo[key]
    return local


def with_descriptor_shortlist(top, feats, cosine, exclude, args, path: Path) -> list:
    """Each row of ``top`` joined by its ``args.local_top`` images with the most mutual
    descriptor neighbours (:mod:`reid.local.recall`; the counts of every pair cached in
    ``path``).
    As ``reid eval --shortlist-local``: within a comparison group (nyala: one side), and
    blind to ATRW's near-duplicate frames, which take their places among the M and are
    then dropped as answers."""
    from reid.local.recall import descriptor_shortlist, mutual_neighbour_counts

    if path.is_file():
        counts = np.load(path)
    else:
        t0 = time.perf_counter()
        counts = mutual_neighbour_counts(feats)
        np.save(path, counts)
        n = len(feats)
        print(f"mutual neighbours: {n * (n - 1) // 2} pairs in {time.perf_counter() - t0:.0f} s",
              flush=True)
    # reid eval compares each species/side group apart (the other side is never a
    # candidate); near-duplicates are found with the labels, which the method never sees
    other_group = exclude if args.split == "nyala" else np.eye(len(counts), dtype=bool)
    extra = descriptor_shortlist(np.where(other_group, -1.0, counts), cosine, args.local_top)
    rows = [sorted(set(map(int, row)) | set(map(int, np.flatnonzero(extra[i] & ~exclude[i]))))
            for i, row in enumerate(top)]
    grew = sum(len(r) for r in rows) - sum(len(r) for r in top)
    print(f"descriptor shortlist: {grew} more (query, image) pairs than the top {args.k}",
          flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--split", default="nyala", choices=["atrw", "nyala"])
    ap.add_argument("--manifest", type=Path, help="nyala: nyala-dev with boxes (reid locate's)")
    ap.add_argument("--k", type=int, default=40)
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "bigcat-default")
    ap.add_argument("--rules", default=DEFAULT_RULES)
    ap.add_argument("--cache", type=Path, default=ROOT / "runs" / "local-cache")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--aliked",
        default="",
        help="ALIKED settings other than the product's, e.g. max_keypoints=1024,max_side=640 "
        "(their keypoints and matches are cached apart)",
    )
    ap.add_argument(
        "--local-top",
        type=int,
        default=0,
        help="also each query's M images with the most mutual descriptor neighbours "
        "(reid.local.recall, as reid eval --shortlist-local M; counts cached)",
    )
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    args.cache.mkdir(parents=True, exist_ok=True)
    records, exclude, _, labels, cosine = load_split(args)
    top = topk(cosine, exclude, args.k)
    config = with_settings(local_config("aliked"), args.aliked.split(","))
    print(f"ALIKED: {config.extraction_fingerprint()}", flush=True)
    feats, per_image = cached_features(records, config, args.cache)
    if not np.isnan(per_image):  # some images were extracted now
        print(f"ALIKED: {per_image:.3f} s an image (median)", flush=True)
    # the caches of this split, boxes and extraction setting
    boxes = [args.manifest] if args.manifest else []
    setting = _key(json.dumps(config.extraction_fingerprint(), sort_keys=True), *boxes)
    if args.local_top:
        from reid.local.recall import MUTUAL_SIMILARITY

        counts_file = args.cache / f"mutual-{args.split}-{MUTUAL_SIMILARITY:g}-{setting}.npy"
        top = with_descriptor_shortlist(top, feats, cosine, exclude, args, counts_file)
    pairs = sorted({(min(i, int(j)), max(i, int(j))) for i, row in enumerate(top) for j in row})
    cache_file = args.cache / f"lightglue-raw-{args.split}-{setting}.pkl"
    raw = raw_matches(feats, pairs, config, cache_file)

    def score(sim) -> dict:
        m = retrieval_metrics(sim, labels, labels, ks=(1, 5), exclude=exclude)
        return {k: round(float(v), 3) if isinstance(v, float) else v for k, v in m.items()}

    results = {"split": args.split, "k": args.k, "local_top": args.local_top,
               "pairs": len(pairs), "model": str(args.model),
               "aliked": config.extraction_fingerprint(), "embedding": score(cosine)}  # fmt: skip
    print(json.dumps({"embedding": results["embedding"]}), flush=True)
    for rule in args.rules.split(","):
        local = rule_matrix(rule, raw, feats, config, top)
        ranking = reranked(cosine, local)
        results[rule] = {
            "local": score(ranking),
            "fused": score(cross_fitted(cosine, local, labels)),
            "local_top1": why_wrong(ranking, local, top, labels, exclude),
        }
        print(json.dumps({rule: results[rule]}), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
