"""Local features on real photos: accuracy of re-ranking the embedding's top k with each
kind of local features (local score alone, and fused with the cosine), and their speed.

Splits (individuals no shipped model trained on):

- ``atrw``: ATRW train's 21 held-out entities (entity split 0.8 / seed 0, the split
  ``reid train`` makes with atrw.yaml), each query's near-duplicates out of its gallery:
  ``reid eval ../shared/data/atrw-train``'s validation protocol (333 queries);
- ``nyala``: nyala-dev's held-out individuals (``reid.splits.disjoint_split`` 0.8 /
  seed 0, as ``reid train -c nyala.yaml``: 36 individuals), whole photos, a left flank
  compared with left flanks only (``reid eval``'s groups).

For each query, the embedding's ``k`` best gallery images (after exclusions) are scored
by the local matcher; ranking ``local``: by local score (inliers + tentative matches /
1000) within the top k, cosine below; ``fused``: w·(cosine, log(1 + inliers),
sqrt(tentative)) within the top k, the weights fitted (logistic, non-negative) on the same
top-k pairs of ``--fit-images`` photos of the *training* individuals (near-duplicates of
a query out of its pairs); ``fused_xfit``: the same features with weights cross-fitted
on the evaluated individuals, as ``reid eval --method fused`` does (8 random halvings
averaged; ``fused_xfit_single``: one halving, the fusion before issue 25's fix).
Everything outside the top k keeps its cosine order below.

Keypoints and embeddings are cached under ``--cache`` (never committed); pair scores too.

    nice -n 10 .venv/bin/python bench/bench_local.py --split atrw --kinds rootsift,xfeat-mnn,xfeat

Kinds: any of :data:`reid.local.KINDS` (rootsift, xfeat, xfeat-mnn, aliked); ``--top-k``
sets the keypoints kept by xfeat (``top_k``) or aliked (``max_keypoints``), ``--max-side``
the image size of any kind. With ``--queries``, keypoints are extracted only for the
sampled queries and their top-k gallery photos.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from reid.data.load import load_catalogue
from reid.local import local_config
from reid.metrics import retrieval_metrics
from reid.verify import LocalFeatures

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def _key(*parts) -> str:
    return hashlib.sha1("\0".join(map(str, parts)).encode()).hexdigest()[:20]


def cached_features(
    records, config, cache: Path, workers: int = 2, needed=None
) -> tuple[list, float]:
    """Local features of every record (cached per image), or of the ``needed`` indices
    only (others None); seconds per image extracted."""
    from concurrent.futures import ThreadPoolExecutor

    from reid.embed import load_record_image

    # keyed by the extraction alone: xfeat and xfeat-mnn share one XFeat extraction
    fp = json.dumps(getattr(config, "extraction_fingerprint", config.fingerprint)(), sort_keys=True)
    folder = cache / "local" / _key(fp)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "fingerprint.json").write_text(fp)
    times: list[float] = []

    def one(r):
        path = folder / f"{_key(r.path, r.bbox)}.npz"
        if path.is_file():
            with np.load(path) as z:
                return LocalFeatures(
                    z["xy"], z["desc"].astype(np.float32), float(z["scale"]), tuple(z["size"])
                )
        image = load_record_image(r)
        t = time.perf_counter()
        f = config.extract(image)
        times.append(time.perf_counter() - t)
        with path.open("wb") as fh:
            np.savez(
                fh, xy=f.xy, desc=f.desc.astype(np.float16), scale=f.scale, size=np.array(f.size)
            )
        return f

    want = range(len(records)) if needed is None else sorted(set(map(int, needed)))
    serial = not hasattr(config, "n_features")  # torch uses the cores itself
    if serial:
        got = [one(records[i]) for i in want]
    else:
        with ThreadPoolExecutor(workers) as pool:
            got = list(pool.map(one, [records[i] for i in want]))
    feats: list = [None] * len(records)
    for i, f in zip(want, got, strict=True):
        # float16 round trip as the gallery cache stores them
        feats[i] = replace(f, desc=f.desc.astype(np.float16).astype(np.float32))
    return feats, (float(np.median(times)) if times else float("nan"))


def cached_embeddings(records, model: Path, cache: Path) -> np.ndarray:
    from reid.methods.embedding import EmbeddingMethod

    m = EmbeddingMethod(model=model)
    path = cache / f"emb-{_key(m.fingerprint, *[(r.path, r.bbox) for r in records])}.npy"
    if path.is_file():
        return np.load(path)
    e = m.embeddings(records)
    np.save(path, e)
    return e


def split_records(split: str, manifest: Path | None = None):
    """(query/gallery records, exclusion mask, training-individual records)."""
    from reid.splits import disjoint_split

    if split == "atrw":
        from reid.atrw_eval import atrw_validation_set

        records = load_catalogue(DATA / "atrw-train")
        v = atrw_validation_set(records)
        held = set(v.heldout_entities)
        train = [r for r in records if r.individual_id not in held]
        return v.records, v.exclude, train
    if split == "nyala":
        # --manifest: nyala-dev with boxes (e.g. reid locate's), same individuals
        records = load_catalogue(manifest or DATA / "nyala-dev")
        s = disjoint_split(records, 0.8, 0)
        test = list(s.test)
        side = np.array([f"{r.species}/{r.side}" for r in test])
        exclude = (side[:, None] != side[None, :]) | np.eye(len(test), dtype=bool)
        return test, exclude, list(s.train)
    raise SystemExit(f"unknown split {split}")


def load_split(args):
    """(records, exclusion mask, training records, labels, cosine of ``args.model``'s
    embeddings) of ``args.split`` (``args.manifest``: nyala-dev with boxes)."""
    if args.manifest and args.split != "nyala":
        raise SystemExit("--manifest applies to --split nyala")
    records, exclude, train = split_records(args.split, args.manifest)
    labels = [r.individual_id for r in records]
    e = cached_embeddings(records, args.model, args.cache)
    return records, exclude, train, labels, (e @ e.T).astype(np.float64)


def with_settings(config, items):
    """``config`` with the fields named in ``items`` (``"field=value"`` strings, each value
    of the field's own type: ``max_keypoints=1024``, ``model=aliked-n32``) replaced."""
    over: dict = {}
    for item in filter(None, items):
        field, _, value = item.partition("=")
        over[field] = type(getattr(config, field))(value)
    return replace(config, **over) if over else config


def topk(cosine: np.ndarray, exclude: np.ndarray, k: int) -> np.ndarray:
    c = np.where(exclude, -np.inf, cosine)
    return np.argsort(-c, axis=1, kind="stable")[:, :k]


def pair_scores(feats, top: np.ndarray, config, cache_file: Path) -> tuple[dict, float]:
    """Local score of each (i, j) pair in the top-k lists (symmetric, cached)."""
    done: dict = {}
    if cache_file.is_file():
        saved = json.loads(cache_file.read_text())
        done = {tuple(map(int, k.split(","))): v for k, v in saved.items()}
    todo: dict[int, list[int]] = {}
    for i, row in enumerate(top):
        for j in row[row >= 0]:
            a, b = (i, int(j)) if i < j else (int(j), i)
            if (a, b) not in done:
                todo.setdefault(a, []).append(b)
    times = []
    for n, (a, bs) in enumerate(sorted(todo.items())):
        bs = sorted(set(bs))
        t = time.perf_counter()
        s = config.scores_against(feats[a], [feats[b] for b in bs])
        times.append((time.perf_counter() - t) / len(bs))
        for b, v in zip(bs, s, strict=True):
            done[(a, b)] = float(v)
        if n % 25 == 0:
            cache_file.write_text(json.dumps({f"{a},{b}": v for (a, b), v in done.items()}))
    cache_file.write_text(json.dumps({f"{a},{b}": v for (a, b), v in done.items()}))
    return done, (float(np.median(times)) if times else float("nan"))


def local_matrix(top: np.ndarray, pairs: dict, n: int) -> np.ndarray:
    m = np.full((n, n), np.nan)
    for i, row in enumerate(top):
        for j in row[row >= 0]:
            m[i, j] = pairs[(min(i, int(j)), max(i, int(j)))]
    return m


def reranked(cosine, local, fused_w=None) -> np.ndarray:
    """Top-k entries (local not NaN) above all others, ordered by local score or fused."""
    inside = ~np.isnan(local)
    s = np.nan_to_num(local)
    if fused_w is None:
        score = s + 1e-4 * cosine
    else:
        inl = np.floor(s)
        tent = np.round((s - inl) * 1000)
        score = fused_w[0] * cosine + fused_w[1] * np.log1p(inl) + fused_w[2] * np.sqrt(tent)
    return np.where(inside, 1e3 + score, cosine)


def why_wrong(ranking, local, top, labels, exclude) -> dict:
    """Why a query's first answer is wrong, for a re-ranking of the top k (``local``: the
    verifier's score, NaN outside the top k; inliers are its integer part). Counted over
    the queries that have an answer (another photo of their flank, not excluded):

    - ``shortlist_miss``: no photo of the query's flank is in its top k;
    - ``no_inliers``: some are, none with a single inlier (the verifier found nothing);
    - ``outranked``: one has inliers, another flank's photo ranks above it;
    - ``right``: the first answer is of the query's flank;

    and ``recall_at_k``: the share of queries with a photo of their flank in the top k.
    """
    labels = np.asarray(labels)
    out = {"queries": 0, "right": 0, "shortlist_miss": 0, "no_inliers": 0, "outranked": 0}
    listed_any = 0
    for i in range(len(labels)):
        answers = (labels == labels[i]) & ~exclude[i]
        answers[i] = False
        if not answers.any():
            continue
        out["queries"] += 1
        listed_any += bool(answers[top[i]].any())
        order = np.where(exclude[i], -np.inf, ranking[i])
        order[i] = -np.inf
        if answers[int(np.argmax(order))]:
            out["right"] += 1
            continue
        listed = [int(j) for j in top[i] if answers[int(j)]]
        if not listed:
            out["shortlist_miss"] += 1
        elif max(np.floor(np.nan_to_num(local[i, j])) for j in listed) < 1:
            out["no_inliers"] += 1
        else:
            out["outranked"] += 1
    out["recall_at_k"] = round(listed_any / max(out["queries"], 1), 3)
    return out


def pair_features(cos: np.ndarray, s: float | np.ndarray):
    inl = np.floor(s)
    return cos, np.log1p(inl), np.sqrt(np.round((s - inl) * 1000))


def cross_fitted(cosine, local, labels, seed: int = 0, repeats: int | None = None) -> np.ndarray:
    """``fused`` with weights cross-fitted on the evaluated individuals, as ``reid eval
    --method fused`` does on a labelled catalogue
    (:func:`reid.methods.fused.cross_fitted_fusion`): the rows of one half of them are
    ranked with weights fitted on the top-k pairs within the other half (no query is
    ranked by a model that saw its own label), averaged over ``repeats`` random halvings
    (None: the product's :data:`~reid.methods.fused.CROSS_FIT_REPEATS`; 1: one halving,
    as before issue 25's fix)."""
    from reid.methods.fused import CROSS_FIT_REPEATS, cross_fitted_fusion

    inside = ~np.isnan(local)
    s = np.nan_to_num(local)
    feats = [np.asarray(x, np.float64) for x in pair_features(cosine, s)]
    fused = cross_fitted_fusion(
        feats,
        list(labels),
        fallback=s + 1e-4 * cosine,  # no half fitted: the local score alone
        seed=seed,
        repeats=CROSS_FIT_REPEATS if repeats is None else repeats,
        pairs=inside,
    )
    return np.where(inside, 1e3 + fused, cosine)


def fit_weights(train, args, config, cache: Path, tag: str):
    from reid.methods.fused import fusion_weights
    from reid.near_duplicates import near_duplicate_groups, same_group

    rng = np.random.default_rng(0)
    sample = [train[i] for i in sorted(rng.permutation(len(train))[: args.fit_images])]
    e = cached_embeddings(sample, args.model, cache)
    cos = e @ e.T
    ex = same_group(near_duplicate_groups(sample)) | np.eye(len(sample), dtype=bool)
    if args.split == "nyala":
        side = np.array([r.side for r in sample])
        ex |= side[:, None] != side[None, :]
    top = topk(cos, ex, args.k)
    feats, _ = cached_features(sample, config, cache)
    pairs, _ = pair_scores(feats, top, config, cache / f"pairs-fit-{tag}.json")
    lab = np.array([r.individual_id for r in sample], dtype=object)
    xs, ys = [], []
    for i, row in enumerate(top):
        for j in row:
            s = pairs[(min(i, int(j)), max(i, int(j)))]
            inl = np.floor(s)
            xs.append((cos[i, j], np.log1p(inl), np.sqrt(np.round((s - inl) * 1000))))
            ys.append(lab[i] == lab[j])
    x = np.array(xs)
    return fusion_weights([x[:, 0], x[:, 1], x[:, 2]], np.array(ys))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--split", default="atrw", choices=["atrw", "nyala"])
    ap.add_argument("--manifest", type=Path, help="nyala: nyala-dev with boxes (reid locate's)")
    ap.add_argument("--kinds", default="rootsift,xfeat-mnn,xfeat")
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "bigcat-default")
    ap.add_argument("--fit-images", type=int, default=150, help="0: skip that fit")
    ap.add_argument("--queries", type=int, default=0, help="subsample queries (0: all)")
    ap.add_argument("--cache", type=Path, default=ROOT / "runs" / "local-cache")
    ap.add_argument(
        "--top-k", type=int, default=0, help="xfeat/aliked keypoints kept (0: default)"
    )
    ap.add_argument("--max-side", type=int, default=0, help="image long side (0: default)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: the CPU is shared)")
    ap.add_argument(
        "--rerank",
        action="store_true",
        help="k-reciprocal re-ranked similarity instead of the cosine (top k, fused "
        "feature, order below): reid eval --method fused-rerank",
    )
    args = ap.parse_args()
    if args.rerank and args.fit_images:
        ap.error("--rerank fits by cross-fitting only: give --fit-images 0 (the training-photo "
                 "fit works on the cosine)")  # fmt: skip
    import torch

    torch.set_num_threads(args.threads)
    args.cache.mkdir(parents=True, exist_ok=True)

    records, exclude, train, labels, cosine = load_split(args)
    if args.rerank:  # over all the split's images, near-duplicates included, as reid eval
        from reid.rerank import k_reciprocal_rerank

        cosine = k_reciprocal_rerank(cosine)
    n = len(records)
    rows = np.arange(n)
    if args.queries:
        rows = np.sort(np.random.default_rng(0).permutation(n)[: args.queries])
    top = topk(cosine, exclude, args.k)[rows]

    def score(sim) -> dict:
        m = retrieval_metrics(
            sim[rows], [labels[i] for i in rows], labels, ks=(1, 5), exclude=exclude[rows]
        )
        return {k: round(float(v), 3) if isinstance(v, float) else v for k, v in m.items()}

    results = {"split": args.split, "k": args.k, "images": n, "rerank": args.rerank,
               "embedding": score(cosine)}  # fmt: skip
    print(json.dumps({"embedding": results["embedding"]}), flush=True)
    for name in args.kinds.split(","):
        config = local_config(name)
        if args.top_k and hasattr(config, "top_k"):
            config = replace(config, top_k=args.top_k)
        if args.top_k and hasattr(config, "max_keypoints"):
            config = replace(config, max_keypoints=args.top_k)
        if args.max_side:
            config = replace(config, max_side=args.max_side)
        # pair scores depend on the images and the matcher, not on k or the queries
        boxes = [args.manifest] if args.manifest else []  # whole photos: the old keys
        tag = f"{args.split}-{name}-{_key(repr(config), args.model, *boxes)}"
        full = np.zeros((n, args.k), np.int64)
        full[rows] = top
        # a sample of queries needs the keypoints of its rows and their top k only
        needed = np.union1d(rows, top.ravel()) if args.queries else None
        feats, t_extract = cached_features(records, config, args.cache, needed=needed)
        pairs, t_pair = pair_scores(
            [feats[i] for i in range(n)],
            _rows_only(full, rows),
            config,
            args.cache / f"pairs-{tag}.json",
        )
        local = local_matrix(_rows_only(full, rows), pairs, n)
        w = None
        if args.fit_images:
            w = fit_weights(train, args, config, args.cache, f"{tag}-f{args.fit_images}")
        out = {
            "local": score(reranked(cosine, local)),
            "fused": None if w is None else score(reranked(cosine, local, w)),
            "fused_xfit": score(cross_fitted(cosine, local, labels)),
            "fused_xfit_single": score(cross_fitted(cosine, local, labels, repeats=1)),
            "weights": None if w is None else [round(float(x), 4) for x in w],
            "extract_s_per_image": round(t_extract, 4),
            "match_s_per_pair": round(t_pair, 5),
        }
        results[name] = out
        print(json.dumps({name: out}), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


def _rows_only(full: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Top-k lists of the sampled rows; other rows get an empty list (-1 filtered)."""
    out = np.full_like(full, -1)
    out[rows] = full[rows]
    return out


if __name__ == "__main__":
    main()
