"""Calibration on real photos: does the matcher's known/new decision, fitted on one real
gallery, hold on queries of individuals the fit never saw? (BENCHMARKS.md, "Calibration
on real photos".)

Splits are the ones ``reid train`` makes (individuals 0.8 / seed 0). Per data set, a *fit
gallery* is calibrated as ``reid enroll`` does (:func:`reid.match.fit_calibration`: each
sampled photo a query against the rest, once known and once with its flank removed), with
and without each query's near-duplicates left out. The held-out individuals are split
open-set (:func:`reid.splits.open_set_split`: ``--gallery-ratio`` of their photos enrolled,
about ``--unknown-ratio`` from flanks never enrolled); the *evaluation gallery* is the fit
gallery plus the enrolled photos, and every other held-out photo is a query (species and
side given). The decisions of two calibrations are scored (BAKS, BAUS, gm, ECE with 90 %
bootstrap intervals, fused against its parts): the evaluation gallery's own and the fit
gallery's (a shipped one); also screening thresholds, ``decisive_inliers`` and the
new-individual clustering of ``reid bulk`` over the never-enrolled flanks.

- nyala-dev: the training individuals are the fit gallery (no shipped model trains on nyala).
- ATRW train: the shipped model trained on the training entities, so the 21 held-out ones
  are split in two halves, each the fit gallery for the other (``--atrw-fit training``
  uses the training entities instead). A query's near-duplicate frames
  (:mod:`reid.near_duplicates`) are out of its gallery, and a known query with no other
  photo of its flank left is not counted, as in the ATRW validation protocol.

``--rerank`` instead compares cosine ranking with exact k-reciprocal re-ranking of each
query against the gallery. Keypoints, embeddings and every verified pair are cached under
``runs/calib-cache`` (per model and local-feature kind, ``--local``)::

    .venv/bin/python bench/bench_calibration.py --data atrw,nyala --out runs/calib.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CACHE = Path("runs/calib-cache")


@dataclass
class RealSet:
    """One data set, split: flank-labelled records, their embeddings and keypoints."""

    name: str
    records: list  # ImageRecord, individual_id = the flank ("id/side"), side left/right
    query_side: list  # side given with each record as a query (None: search both)
    fit: list[int]  # records of the training individuals
    held: list[int]  # records of the held-out individuals
    groups: np.ndarray | None  # near-duplicate group per record (None: no exclusion)
    emb: np.ndarray | None = None
    feats: list | None = None


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def load_set(name: str, path: Path, train_ratio: float, seed: int, workers: int) -> RealSet:
    """Records of ``name`` (atrw or nyala) as flanks, split by individual as reid train does."""
    from reid.data.load import load_catalogue
    from reid.index import SIDES
    from reid.splits import disjoint_split

    raw = [r for r in load_catalogue(path) if r.individual_id]
    # A flank is (individual, side). An entity of unknown side (ATRW: side not given by its
    # keypoints) is one flank, enrolled in the left partition and searched on both sides.
    records = [
        replace(
            r,
            individual_id=f"{r.individual_id}/{r.side if r.side in SIDES else 'unknown'}",
            side=r.side if r.side in SIDES else SIDES[0],
        )  # fmt: skip
        for r in raw
    ]
    query_side = [r.side if r.side in SIDES else None for r in raw]
    if name == "atrw":
        from reid.atrw_eval import atrw_entity_split

        _, held_ids = atrw_entity_split(raw, train_ratio, seed)
    else:
        held_ids = {r.individual_id for r in disjoint_split(raw, train_ratio, seed).test}
    held_ids = set(held_ids)
    held = [i for i, r in enumerate(raw) if r.individual_id in held_ids]
    fit = [i for i, r in enumerate(raw) if r.individual_id not in held_ids]
    groups = None
    if name == "atrw":
        from reid.near_duplicates import near_duplicate_groups

        key = CACHE / f"{name}-ndup-{_digest([str(r.path) for r in raw])}.npy"
        if key.is_file():
            groups = np.load(key)
        else:
            groups = near_duplicate_groups(records, workers=workers)
            key.parent.mkdir(parents=True, exist_ok=True)
            np.save(key, groups)
    return RealSet(name, records, query_side, fit, held, groups)


def add_features(
    data: RealSet, release: Path, workers: int, keypoints: bool = True, args_local=None
) -> str:
    """Embeddings (per model) and RootSIFT keypoints (per config) of every record, cached."""
    from reid.embed import embed_records
    from reid.local import local_config
    from reid.match import extract_records
    from reid.release import load_release, model_fingerprint
    from reid.verify import LocalFeatures

    net, manifest = load_release(release)
    fp = model_fingerprint(manifest)
    paths = [str(r.path) + str(r.bbox) for r in data.records]
    key = CACHE / f"{data.name}-emb-{fp[:12]}-{_digest(paths)}.npy"
    if key.is_file():
        data.emb = np.load(key)
    else:
        t = time.perf_counter()
        data.emb = embed_records(net, data.records, workers=workers)
        np.save(key, data.emb)
        print(
            f"# {data.name}: embedded {len(paths)} in {time.perf_counter() - t:.0f} s",
            file=sys.stderr,
            flush=True,
        )
    if not keypoints:
        return fp
    local = local_config(args_local)
    key = CACHE / f"{data.name}-kp-{_digest(paths, asdict(local))}.pkl"
    if key.is_file():
        with key.open("rb") as f:
            # (xy, descriptors, scale[, size]): caches written before sizes were kept
            data.feats = [
                LocalFeatures(t[0], t[1].astype(np.float32), t[2],
                              tuple(t[3]) if len(t) > 3 else (0, 0))
                for t in pickle.load(f)
            ]  # fmt: skip
    else:
        t = time.perf_counter()
        data.feats = extract_records(data.records, local, workers)
        with key.open("wb") as f:
            pickle.dump([(x.xy, x.desc.astype(np.float16), x.scale, x.size) for x in data.feats],
                        f)  # fmt: skip
        print(
            f"# {data.name}: keypoints of {len(paths)} in {time.perf_counter() - t:.0f} s",
            file=sys.stderr,
            flush=True,
        )
    return fp


class PairCache:
    """Inlier counts of verified (query record, gallery record) pairs, kept on disk: the
    matcher's verifications are the slow part, and every variant reuses them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.inliers: dict[tuple[int, int], int] = {}
        if path.is_file():
            with path.open("rb") as f:
                self.inliers = pickle.load(f)
        self.saved = len(self.inliers)

    def save(self) -> None:
        if len(self.inliers) != self.saved:
            tmp = self.path.with_suffix(".tmp")
            with tmp.open("wb") as f:
                pickle.dump(dict(self.inliers), f)
            tmp.replace(self.path)
            self.saved = len(self.inliers)


def cached_matcher(data: RealSet, gallery: list[int], release: Path, cache: PairCache, config):
    """A :class:`reid.match.Matcher` over the records ``gallery`` (in memory) whose
    verifications go through ``cache``; ``matcher.gallery_id[record]`` is the record's id."""
    from reid.match import FeatureStore, Matcher, entry_of, new_gallery_index
    from reid.release import load_release
    from reid.verify import verify_many

    net, manifest = load_release(release)
    feature_record = {id(f): i for i, f in enumerate(data.feats)}

    class Cached(Matcher):
        def _verify(self, raws, feats) -> None:
            pairs = [(c, h) for c in raws for h in c.hits[: self.config.verify_images]]
            if not pairs:
                return
            for f in feats:
                q = feature_record[id(f)]
                todo = [h for _, h in pairs if (q, self.record[h.id]) not in cache.inliers]
                if todo:
                    gallery = [self.features.get(h.id) for h in todo]
                    found = verify_many(f, gallery, self.local)
                    for h, v in zip(todo, found, strict=True):
                        cache.inliers[(q, self.record[h.id])] = v.inliers
            for c, h in pairs:
                c.verified = True
                best = max(cache.inliers[(feature_record[id(f)], self.record[h.id])] for f in feats)
                c.inliers = max(c.inliers, best)

    index = new_gallery_index(manifest, net.embedding_dim, config)  # the kind cached
    ids = index.add(data.emb[gallery], [entry_of(data.records[i]) for i in gallery])
    m = Cached(net, manifest, index, FeatureStore(None), config)
    m.record = dict(zip(ids, gallery, strict=True))
    m.gallery_id = {r: i for i, r in m.record.items()}
    for i, r in m.record.items():
        m.features.put(i, data.feats[r])
    return m


def near_duplicates_of(data: RealSet, matcher):
    """``related`` for fit_calibration: the gallery ids of a gallery id's near-duplicates."""
    if data.groups is None:
        return None
    by_group: dict[int, list[int]] = {}
    for gid, r in matcher.record.items():
        by_group.setdefault(int(data.groups[r]), []).append(gid)

    def related(gid: int) -> list[int]:
        return [i for i in by_group[int(data.groups[matcher.record[gid]])] if i != gid]

    return related


def query_raws(data: RealSet, matcher, queries: list[int]) -> list:
    """The matcher's unfused candidates of each query record (species and side given;
    its near-duplicates out of the gallery)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(q: int):
        excl = ()
        if data.groups is not None:
            g = data.groups[q]
            excl = {matcher.gallery_id[r] for r in matcher.record.values() if data.groups[r] == g}
        r = data.records[q]
        return matcher.candidates(data.emb[q : q + 1], [data.feats[q]], side=data.query_side[q],
                                  species=r.species, exclude_ids=excl)  # fmt: skip

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(one, queries))


def decide(data: RealSet, matcher, queries: list[int], raws: list, calibration, known: set,
           screen: float = 0.0) -> dict:  # fmt: skip
    """The decisions ``calibration`` makes on the candidates ``raws``, as lists to pool."""
    from reid.match import rank

    keys = ("truth", "predicted", "confidence", "p_new", "known", "embedding", "local", "fused",
            "screened")  # fmt: skip
    out: dict[str, list] = {k: [] for k in keys}
    for q, raw in zip(queries, raws, strict=True):
        t = data.records[q].individual_id
        s = calibration.screen_decide(raw) if screen > 0 else None
        screened = s is not None and max(s) >= screen
        res = matcher._result(raw, calibration, 5, s if screened else None)
        out["truth"].append(t)
        out["predicted"].append(res.individual if res.decision == "known" else "new")
        out["confidence"].append(res.probability)
        out["p_new"].append(res.new_probability)
        out["known"].append(t in known)
        out["screened"].append(screened)
        if t in known and raw:
            out["embedding"].append(raw[0].key[1] == t)
            by_local = max(raw, key=lambda c: (c.inliers, c.global_score))
            out["local"].append(by_local.key[1] == t)
            out["fused"].append(rank(raw, calibration)[0].individual == t)
    return out


def summarise(d: dict) -> dict:
    """Open-set scores of pooled decisions (:func:`decide`)."""
    from reid.metrics import (
        calibration_summary,
        expected_calibration_error,
        open_set_scores,
        reliability_table,
    )

    known = {t for t, k in zip(d["truth"], d["known"], strict=True) if k}
    expected = [t if k else "new" for t, k in zip(d["truth"], d["known"], strict=True)]
    correct = np.array([p == e for p, e in zip(d["predicted"], expected, strict=True)])
    conf = np.array(d["confidence"])
    out = dict(open_set_scores(d["truth"], d["predicted"], known, new_label="new"))
    out.update(
        **calibration_summary(conf, correct),  # with a perfectly calibrated matcher's ECE
        ECE_new=expected_calibration_error(np.array(d["p_new"]), ~np.array(d["known"])),
        accuracy=float(correct.mean()),
        mean_confidence=float(conf.mean()),
        top1_known={k: round(float(np.mean(d[k])), 4) for k in ("embedding", "local", "fused")},
        screened=float(np.mean(d["screened"])),
        reliability=reliability_table(conf, correct),  # the ECE's 15 bins
    )
    # 90 % bootstrap intervals over queries (seeded): how far a few hundred queries pin
    # the figures down
    rng = np.random.default_rng(0)
    truth = np.array(d["truth"], dtype=object)
    pred = np.array(d["predicted"], dtype=object)
    eces, gms = [], []
    for _ in range(200):
        i = rng.integers(0, len(conf), len(conf))
        eces.append(expected_calibration_error(conf[i], correct[i]))
        gms.append(open_set_scores(list(truth[i]), list(pred[i]), known, new_label="new")["gm"])
    out["ECE_90"] = [round(float(v), 4) for v in np.nanpercentile(eces, [5, 95])]
    out["gm_90"] = [round(float(v), 4) for v in np.nanpercentile(gms, [5, 95])]
    return out


def open_set_queries(data: RealSet, held: list[int], gallery_ratio: float,
                     unknown_ratio: float, seed: int):  # fmt: skip
    """(enrolled records, query records, known flanks) of the held-out records ``held``."""
    from reid.splits import open_set_split

    key = {id(data.records[i]): i for i in held}
    split = open_set_split([data.records[i] for i in held], gallery_ratio, unknown_ratio,
                           seed)  # fmt: skip
    enrolled = sorted(key[id(r)] for r in split.train)
    queries = sorted(key[id(r)] for r in split.test)
    return enrolled, queries, set(split.known)


def folds(data: RealSet, args) -> list[tuple[list[int], list[int]]]:
    """(records the calibration is fitted on, held-out records to test on) pairs.

    nyala-dev: the training individuals fit, the held-out ones test (the shipped model never
    trained on nyala). ATRW: the shipped model trained on the training entities, whose
    embeddings are therefore tighter than any new tiger's; the held-out entities are split
    in two halves (seeded) and each half fits the calibration tested on the other
    (``--atrw-fit training``: the training entities fit instead)."""
    if data.name != "atrw" or args.atrw_fit == "training":
        return [(data.fit, data.held)]
    ents = sorted({data.records[i].individual_id for i in data.held})
    order = np.random.default_rng(args.split_seed).permutation(len(ents))
    first = {ents[i] for i in order[: len(ents) // 2]}
    a = [i for i in data.held if data.records[i].individual_id in first]
    b = [i for i in data.held if data.records[i].individual_id not in first]
    return [(a, b), (b, a)]


def evaluate_set(data: RealSet, release: Path, args) -> list[dict]:
    """Every variant's scores on one data set (see the module text), pooled over folds."""
    from reid.local import local_config
    from reid.match import MatchCalibration, MatchConfig, fit_calibration

    local = local_config(args.local)
    paths = [str(r.path) + str(r.bbox) for r in data.records]
    cache = PairCache(CACHE / f"{data.name}-pairs-{_digest(paths, asdict(local))}.pkl")
    parts = folds(data, args)
    setups = []
    unanswerable = 0
    for fit, held in parts:
        enrolled, queries, known = open_set_queries(
            data, held, args.gallery_ratio, args.unknown_ratio, args.split_seed
        )
        if data.groups is not None:
            # As the ATRW validation protocol: a query of an enrolled flank whose enrolled
            # photos are all its near-duplicates has no answer left, and is not counted.
            answerable = []
            for q in queries:
                t, g = data.records[q].individual_id, data.groups[q]
                if t not in known or any(
                    data.records[r].individual_id == t and data.groups[r] != g for r in enrolled
                ):
                    answerable.append(q)
            unanswerable += len(queries) - len(answerable)
            queries = answerable
        setups.append((fit, enrolled, queries, known))
    n_new = sum(data.records[q].individual_id not in k for _, _, qs, k in setups for q in qs)
    n_q = sum(len(qs) for _, _, qs, _ in setups)
    prior = n_new / n_q
    fit_desc = "training individuals" if len(parts) == 1 else "2 folds of the held-out entities"
    head = {"data": data.name, "catalogue": str(args.atrw if data.name == "atrw" else args.nyala),
            "model": str(release), "split": f"individuals {args.train_ratio:g}"
            f"/seed {args.split_seed}; calibration fitted on {fit_desc}; "
            f"held-out open set {args.gallery_ratio:g}/{args.unknown_ratio:g}",
            "fit_gallery": [len(f) for f, *_ in setups],
            "eval_gallery": [len(f) + len(e) for f, e, *_ in setups], "queries": n_q,
            "known_queries": n_q - n_new, "new_prior": round(prior, 4),
            "known_queries_without_answer": unanswerable}  # fmt: skip
    print(json.dumps(head), flush=True)
    rows = []
    for decisive in [int(x) for x in args.decisive.split(",")]:
        config = MatchConfig(decisive_inliers=decisive, local=local)
        t = time.perf_counter()
        pooled: dict[tuple, dict] = {}
        clusters: dict[tuple, list] = {}
        for fit, enrolled, queries, known in setups:
            fit_m = cached_matcher(data, fit, release, cache, config)
            eval_m = cached_matcher(data, sorted(fit + enrolled), release, cache, config)
            raws = query_raws(data, eval_m, queries)
            cache.save()
            cals = {}
            for source, m in (("fit individuals", fit_m), ("evaluation gallery", eval_m)):
                variants = [("", None)]
                if data.groups is not None:
                    variants.append((", near-duplicates out", near_duplicates_of(data, m)))
                for suffix, related in variants:
                    cal = fit_calibration(m, args.calibration_sample, seed=args.split_seed,
                                          show_progress=False, related=related)  # fmt: skip
                    cache.save()
                    cals[source + suffix] = replace(cal, new_prior=prior)
                    if args.untempered and related is not None:
                        # the same fit without the step temperature (decision and screen)
                        plain = MatchCalibration.from_dict(cal.to_dict())
                        plain.decision.temperature = plain.screen.temperature = 1.0
                        cals[source + suffix + ", untempered"] = replace(plain, new_prior=prior)
            for source, cal in cals.items():
                for screen in [0.0, *[float(x) for x in args.screen.split(",")]]:
                    if screen > 0 and decisive != 20:
                        continue
                    d = decide(data, eval_m, queries, raws, cal, known, screen)
                    acc = pooled.setdefault((source, screen), {k: [] for k in d})
                    for k, v in d.items():
                        acc[k] += v
            if decisive == 20:
                for source in cals:
                    c = cluster_scores(data, queries, known, cals[source], cache, local,
                                       [0.05, 0.1, 0.2, 0.3, 0.5, 0.7])  # fmt: skip
                    clusters.setdefault(source, []).append(c)
        for (source, screen), d in pooled.items():
            out = summarise(d)
            row = {**head, "decisive_inliers": decisive, "calibration": source,
                   "screen": screen,
                   **{k: (round(v, 4) if isinstance(v, float) else v)
                      for k, v in out.items() if k != "reliability"},
                   "reliability": out["reliability"]}  # fmt: skip
            rows.append(row)
            brief = {k: row[k] for k in ("data", "decisive_inliers", "calibration", "screen",
                                         "BAKS", "BAUS", "gm", "gm_90", "ECE", "ECE_90",
                                         "ECE_perfect", "ECE_p", "ECE_new",
                                         "top1_known", "screened")}  # fmt: skip
            print(json.dumps(brief), flush=True)
        for source, per_fold in clusters.items():
            for j, c in enumerate(per_fold[0]):
                merged = {"threshold": c["threshold"]}
                for key in ("encounters", "flanks", "clusters"):
                    merged[key] = sum(f[j][key] for f in per_fold)
                for key in ("purity", "recall"):  # encounter-weighted over folds
                    merged[key] = round(sum(f[j][key] * f[j]["encounters"] for f in per_fold)
                                        / merged["encounters"], 4)  # fmt: skip
                row = {**head, "clustering": source, **merged}
                rows.append(row)
                print(json.dumps(row), flush=True)
        print(
            f"# {data.name} decisive {decisive}: {time.perf_counter() - t:.0f} s, "
            f"{len(cache.inliers)} pairs cached",
            file=sys.stderr,
            flush=True,
        )
    return rows


def rerank_scores(data: RealSet, gallery: list[int], queries: list[int], known: set) -> dict:
    """Flank top-1, top-5 and recall at 10 (the true flank among the candidates the matcher
    verifies) of enrolled-flank queries against ``gallery``, ranked by cosine and by
    k-reciprocal re-ranking of the query with the gallery (exact: the query's row of
    :func:`reid.rerank.k_reciprocal_rerank` over the query and its searchable gallery,
    its near-duplicates out)."""
    from reid.rerank import k_reciprocal_rerank

    g = np.array(gallery)
    flank = np.array([data.records[i].individual_id for i in g], dtype=object)
    side = np.array([data.records[i].side for i in g], dtype=object)
    species = np.array([data.records[i].species for i in g], dtype=object)
    hits: dict[str, list[list[bool]]] = {"cosine": [], "k-reciprocal": []}
    for q in queries:
        t = data.records[q].individual_id
        if t not in known:
            continue
        keep = species == data.records[q].species
        if data.query_side[q] is not None:
            keep &= side == data.query_side[q]
        if data.groups is not None:
            keep &= data.groups[g] != data.groups[q]
        idx = g[keep]
        e = data.emb[np.r_[q, idx]]
        sim = (e @ e.T).astype(np.float64)
        for name, row in (
            ("cosine", sim[0, 1:]),
            ("k-reciprocal", k_reciprocal_rerank(sim)[0, 1:]),
        ):
            order = np.argsort(-row, kind="stable")
            seen: list = []
            for j in order:
                f = flank[keep][j]
                if f not in seen:
                    seen.append(f)
                if len(seen) >= 10:
                    break
            hits[name].append([t in seen[:1], t in seen[:5], t in seen[:10]])
    out = {}
    for name, h in hits.items():
        a = np.array(h, dtype=float)
        m = [round(float(v), 4) for v in a.mean(axis=0)]
        out[name] = {"top1": m[0], "top5": m[1], "recall10": m[2], "queries": len(a)}
    return out


def cluster_scores(data: RealSet, queries: list[int], known: set, calibration, cache: PairCache,
                   local,
                   thresholds: list[float], neighbours: int = 10) -> list[dict]:  # fmt: skip
    """Purity and recall of the new-individual clustering of ``reid bulk`` over the queries
    of never-enrolled flanks (one photo per near-duplicate group: a season run groups
    bursts into encounters first), pairs scored by ``calibration``'s pair model."""
    import math

    from reid.bulk.cluster import Item, cluster, purity_recall
    from reid.verify import verify_many

    new, groups_seen = [], set()
    for q in queries:
        if data.records[q].individual_id in known:
            continue
        g = None if data.groups is None else int(data.groups[q])
        if g is not None and g in groups_seen:
            continue
        groups_seen.add(g)
        new.append(q)
    items = [Item(str(q), data.records[q].species, data.records[q].side, data.emb[q]) for q in new]

    def probability(i: int, j: int) -> float:
        a, b = new[i], new[j]
        if (a, b) not in cache.inliers:
            found = verify_many(data.feats[a], [data.feats[b]], local)
            cache.inliers[(a, b)] = found[0].inliers
        cos = float(data.emb[a] @ data.emb[b])
        return float(calibration.pair.predict([[cos, math.log1p(cache.inliers[(a, b)])]])[0])

    truth = {str(q): data.records[q].individual_id for q in new}
    out = []
    for t in thresholds:
        clusters = cluster(items, probability, threshold=t, neighbours=neighbours)
        named = [[items[i].id for i in c] for c in clusters]
        purity, recall = purity_recall(named, truth)
        out.append({"threshold": t, "encounters": len(items), "flanks": len(set(truth.values())),
                    "clusters": len(clusters), "purity": round(purity, 4),
                    "recall": round(recall, 4)})  # fmt: skip
    cache.save()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=None, help="release (default: the shipped)")
    ap.add_argument("--data", default="atrw,nyala", help="atrw and/or nyala")
    ap.add_argument("--atrw", type=Path, default=SHARED / "atrw-train")
    ap.add_argument("--nyala", type=Path, default=SHARED / "nyala-dev" / "labels.csv")
    ap.add_argument("--train-ratio", type=float, default=0.8)
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--stage", default="all", help="features: only cache the features")
    ap.add_argument(
        "--gallery-ratio",
        type=float,
        default=0.5,
        help="share of the held-out photos enrolled (open-set split)",
    )
    ap.add_argument(
        "--unknown-ratio",
        type=float,
        default=0.3,
        help="share of the held-out photos from flanks never enrolled",
    )
    ap.add_argument("--calibration-sample", type=int, default=1000)
    ap.add_argument("--decisive", default="0,20", help="decisive_inliers values to compare")
    ap.add_argument(
        "--atrw-fit",
        default="folds",
        choices=["folds", "training"],
        help="ATRW: fit on halves of the held-out entities, or the training ones",
    )
    ap.add_argument(
        "--local",
        default=None,
        help="local features (reid.local kinds; default: the project's default)",
    )
    ap.add_argument("--untempered", action="store_true",
                    help="also score the near-duplicate-free fits without their temperature")
    ap.add_argument("--rerank", action="store_true", help="score k-reciprocal re-ranking only")
    ap.add_argument("--screen", default="0.9,0.95,0.99", help="screening thresholds scored")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    from reid.methods.embedding import DEFAULT_MODEL

    release = args.model or DEFAULT_MODEL
    CACHE.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.data.split(","):
        path = args.atrw if name == "atrw" else args.nyala
        data = load_set(name, path, args.train_ratio, args.split_seed, args.workers)
        add_features(data, release, args.workers, not args.rerank, args.local)
        if args.stage == "features":
            continue
        if args.rerank:
            enrolled, queries, known = open_set_queries(
                data, data.held, args.gallery_ratio, args.unknown_ratio, args.split_seed
            )
            for what, gallery in (("training + enrolled held-out", sorted(data.fit + enrolled)),
                                  ("enrolled held-out only", enrolled)):  # fmt: skip
                row = {"data": name, "model": str(release), "gallery": what,
                       "gallery_images": len(gallery),
                       **rerank_scores(data, gallery, queries, known)}  # fmt: skip
                print(json.dumps(row), flush=True)
                rows.append(row)
        else:
            rows += evaluate_set(data, release, args)
        if args.out:
            args.out.write_text(json.dumps(rows, indent=2))
    if args.out and rows:
        args.out.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
