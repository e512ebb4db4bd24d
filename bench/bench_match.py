"""Single-image ``reid match`` latency against a 10k gallery, broken down by stage.

The gallery holds the 800 photos of synth-bench-v1 (embedded, keypoints cached) plus
filler entries up to ``--gallery`` vectors: perturbed copies of real embeddings in the
same species/side partitions, each sharing the cached keypoints of its real image, so
that search scans the full size and verification works on real keypoints. Queries are
synth-bench-v1 photos; each is timed stage by stage (decode the JPEG, embed, search and
aggregate, extract the query's keypoints, verify the shortlisted candidates) and end to
end through ``Matcher.match``.

    .venv/bin/python bench/bench_match.py --model runs/interim-release [--gallery 10000]

``--local xfeat`` (or ``xfeat-mnn``) times learned local features instead of RootSIFT;
``--images N`` uses only N catalogue photos (the rest of the gallery is filler), for
extractors too slow to extract all 800 on a CPU.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from reid.data.load import load_catalogue
from reid.embed import embed_records
from reid.images import load_image
from reid.index import GalleryEntry, GalleryIndex
from reid.local import INDEX_KEY, local_config
from reid.match import (
    FeatureStore,
    MatchConfig,
    Matcher,
    entry_of,
    extract_records,
    fit_calibration,
)
from reid.paths import data_home
from reid.release import load_release, model_fingerprint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--catalogue", type=Path, default=data_home() / "synth-bench-v1")
    parser.add_argument("--gallery", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--local", default="rootsift", help="kind of local features (reid.local)")
    parser.add_argument("--images", type=int, default=0, help="catalogue photos used (0: all)")
    args = parser.parse_args()

    records = load_catalogue(args.catalogue)
    if args.images:
        pick = np.random.default_rng(1).permutation(len(records))[: args.images]
        records = [records[i] for i in sorted(pick)]
    net, manifest = load_release(args.model)
    vectors = embed_records(net, records)
    index = GalleryIndex.create(model_fingerprint(manifest), net.embedding_dim, model_name="b")
    local = local_config(args.local)
    index.attachments[INDEX_KEY] = local.fingerprint()
    matcher = Matcher(net, manifest, index, FeatureStore(None), MatchConfig(local=local))
    feats = extract_records(records, matcher.local)
    ids = index.add(vectors, [entry_of(r) for r in records])
    for i, f in zip(ids, feats, strict=True):
        matcher.features.put(i, f)
    rng = np.random.default_rng(0)
    extra = args.gallery - len(records)
    if extra > 0:
        src = rng.integers(0, len(records), extra)
        noisy = vectors[src] + 0.3 * rng.standard_normal((extra, vectors.shape[1])).astype(
            np.float32
        ) / np.sqrt(vectors.shape[1])
        fill = [
            GalleryEntry(
                image=str(records[s].path),
                individual=f"filler-{k}",
                species=records[s].species,
                side=records[s].side,
            )
            for k, s in enumerate(src)
        ]
        for i, s in zip(index.add(noisy, fill), src, strict=True):
            matcher.features.put(i, feats[s])
    matcher.calibration = fit_calibration(matcher, sample=200, show_progress=False)
    stages: dict[str, list[float]] = {
        k: [] for k in ("decode", "embed", "search", "keypoints", "verify", "total", "match")
    }
    n_queries = min(args.queries, len(records))
    for r in [records[i] for i in rng.choice(len(records), n_queries, replace=False)]:
        t0 = time.perf_counter()
        image = load_image(r.path)
        t1 = time.perf_counter()
        emb = matcher.embed([image])
        t2 = time.perf_counter()
        raw = matcher.candidates(emb, [], side=r.side, species=r.species, verify=False)
        t3 = time.perf_counter()
        qf = matcher.local_features(image)
        t4 = time.perf_counter()
        matcher._verify(raw[: matcher.config.verify_top], [qf])
        t5 = time.perf_counter()
        matcher.match(image, side=r.side, species=r.species)
        t6 = time.perf_counter()
        for k, v in zip(
            stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t5 - t0, t6 - t5), strict=True
        ):
            stages[k].append(v * 1e3)
    out = {
        "local": args.local,
        "gallery": len(index),
        "queries": args.queries,
        "verified_pairs": matcher.config.verify_top * matcher.config.verify_images,
        **{
            f"{k}_ms": {
                "p50": round(float(np.percentile(v, 50)), 1),
                "p95": round(float(np.percentile(v, 95)), 1),
            }
            for k, v in stages.items()
        },
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
