"""Gallery search speed, recall and memory at 10k, 100k and 1M vectors (512-d).

Vectors are clustered like a catalogue's embeddings: one centre per flank, ten photos
each, unit length; queries are new photos of enrolled flanks. Two generators
(``--vectors``):

``model`` (default)
    A model of the *real* embedding distribution of the default model (v0.3, 512-d),
    fitted on real embeddings of synthetic flank photos: the held-out fifth of
    synth-train-v2 (``disjoint_split(0.8, seed 0)``: 3,840 photos, 960 flanks) and
    synth-bench-v1 (800 photos, 200 flanks), 4,640 embeddings of 1,160 flanks of
    individuals that v0.3's last training stage never saw (plus 1,360 photos of 340
    trained flanks, embedded for comparison only). The fit: per-flank centres (mean
    embedding of a flank's photos) are Gaussian around the centre mean of one (species,
    side) partition (``--partition``, a gallery index partition holds one species and
    side) with the pooled between-flank covariance of the centres, less the part their
    photo noise adds (``Sigma_centres - mean(1/k) Sigma_residual``, eigenvalues clipped
    at 0); a photo is its flank's centre plus a Gaussian residual with the pooled
    within-flank covariance; then unit-normalised. So the vectors keep the real model's
    anisotropy (PCA spectrum) and within/between-flank cosine distributions, which the
    script prints for the real embeddings beside a generated sample before timing. The
    real embeddings are made once (about 2 minutes on 2 cores) and cached as .npz
    (``--real``, default under /tmp; never in git). It is still a Gaussian model
    fitted on 1,160 flanks: re-measure on a real gallery when there is one.
``isotropic``
    The worst case for an inverted file: isotropic Gaussian flank centres in 512-d
    (cosine ~0.6 within a flank, ~0 between flanks), queries a gallery vector plus
    fresh noise.

For each size the exact index (``IndexFlatIP``) and the approximate one
(``IndexIVFFlat``, as ``GalleryIndex`` builds it above its threshold, nprobe from
``--nprobes``) are timed for one query at a time and for batches of 64 (p50 / p95 over
repeated runs), recall@10 of the approximate index is measured against the exact
results (256 queries) together with how many of each query's ten results are photos of
its own flank (``own_flank_in_top10``: the neighbours re-identification needs; with a
weak model most of an exact top 10 at 100k+ vectors is other flanks, near-ties whose
order an approximate index can miss without losing a match), and the resident memory
each index adds is read from /proc.
With ``--hnsw`` the HNSW partition ``GalleryIndex`` makes above its threshold
(``IndexHNSWFlat`` under an id map; ``--hnsw-m`` and ``--ef-construction``, default the
index's own) is measured the same way for each ``--ef`` (efSearch). ``--nprobes none``
leaves the IVF index out. The memory-bandwidth bound of exact search (bytes scanned /
measured copy bandwidth) is printed beside the exact latencies.

    .venv/bin/python bench/bench_index.py [--vectors model|isotropic]
        [--sizes 10000,100000,1000000] [--nprobes 16,32,64,128|none]
        [--hnsw --ef 64,128,256 [--hnsw-m 32] [--ef-construction 40]] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reid.index import (
    DEFAULT_EF_CONSTRUCTION,
    DEFAULT_HNSW_M,
    GalleryEntry,
    GalleryIndex,
)

DIM = 512
FP = "0" * 64
NPROBES = "16,32,64,128"
REAL_CACHE = Path("/tmp/bigcat-reid-index-bench-embeddings.npz")
SYNTH_TRAIN = Path.home() / ".local/share/bigcat-reid/synthetic/synth-train-v2"
SYNTH_BENCH = Path("data/synth-bench-v1")
MODEL = Path("models/bigcat-default")


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _unit(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def isotropic(
    n: int, rng: np.random.Generator, per_flank: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` unit vectors, ``per_flank`` around each random centre (cosine ~0.6 within a
    flank, ~0 between flanks), and 512 queries (a gallery vector plus fresh noise): with
    ten photos per flank the ten nearest neighbours of a query are its flank, not a
    tail of unrelated vectors whose order is noise."""
    centres = rng.standard_normal((max(1, -(-n // per_flank)), DIM), dtype=np.float32)
    out = np.empty((n, DIM), np.float32)
    for start in range(0, n, 100_000):  # in chunks: bounded temporary memory
        stop = min(n, start + 100_000)
        x = centres[np.arange(start, stop) // per_flank]
        x += 0.8 * rng.standard_normal(x.shape, dtype=np.float32)
        out[start:stop] = _unit(x)
    noise = _unit(rng.standard_normal((512, DIM), dtype=np.float32))
    of = rng.integers(0, n, 512)
    queries = _unit(out[of] + 0.5 * noise)
    return out, queries, of // per_flank


# ---------------------------------------------------------------- real embeddings


def embed_real(path: Path, trained_flanks: int = 340) -> dict[str, np.ndarray]:
    """Embed the photos the model is fitted on (see the module docstring) with the
    default model and cache them in ``path`` (.npz)."""
    import torch

    from reid.data.load import load_catalogue
    from reid.embed import embed_records
    from reid.release import load_release
    from reid.splits import disjoint_split

    torch.set_num_threads(2)
    split = disjoint_split(load_catalogue(SYNTH_TRAIN), 0.8, 0)
    bench = load_catalogue(SYNTH_BENCH)
    by_flank: dict[tuple, list] = {}
    for r in split.train:
        by_flank.setdefault((r.species, r.individual_id, r.side), []).append(r)
    keys = sorted(by_flank)
    chosen = np.random.default_rng(0).choice(len(keys), trained_flanks, replace=False)
    trained = [r for i in sorted(chosen) for r in by_flank[keys[i]]]
    records = list(split.test) + list(bench) + trained
    net, manifest = load_release(MODEL)
    t = time.perf_counter()
    x = embed_records(net, records, batch_size=32, workers=2)
    print(f"embedded {len(records)} photos in {time.perf_counter() - t:.0f} s", flush=True)
    out = {
        "x": x,
        "flank": np.array([f"{r.species}/{r.individual_id}/{r.side}" for r in records]),
        "partition": np.array([f"{r.species}/{r.side}" for r in records]),
        "seen": np.array([0] * (len(records) - len(trained)) + [1] * len(trained), np.int8),
        "model": np.array(f"{manifest['name']} sha256 {manifest['sha256']}"),
    }
    np.savez(path, **out)
    return out


def real_embeddings(path: Path) -> dict[str, np.ndarray]:
    """The cached real embeddings, made again when the cache is missing or was made by
    another model than the current default."""
    manifest = json.loads((MODEL / "manifest.json").read_text())
    if path.is_file():
        with np.load(path) as f:
            real = {k: f[k] for k in f.files}
        if str(real["model"]) == f"{manifest['name']} sha256 {manifest['sha256']}":
            return real
    return embed_real(path)


@dataclass
class EmbeddingFit:
    """Gaussian model of one partition's embeddings: centre = mean + z @ centre_basis,
    photo = unit(centre + z' @ residual_basis), z, z' standard normal."""

    mean: np.ndarray
    centre_basis: np.ndarray
    residual_basis: np.ndarray
    images: int
    flanks: int

    def centres(self, n: int, rng: np.random.Generator) -> np.ndarray:
        z = rng.standard_normal((n, DIM), dtype=np.float32)
        return self.mean + z @ self.centre_basis

    def photos(self, centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        z = rng.standard_normal(centres.shape, dtype=np.float32)
        return _unit(centres + z @ self.residual_basis)


def _basis(cov: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(cov)
    return (v * np.sqrt(np.clip(w, 0, None))).T.astype(np.float32)


def fit_embeddings(x: np.ndarray, flank: np.ndarray, partition: np.ndarray, mean_of: str):
    """The :class:`EmbeddingFit` of real unit embeddings ``x`` (covariances pooled over
    partitions, centre mean of partition ``mean_of``)."""
    x = x.astype(np.float64)
    names, inv, k = np.unique(flank, return_inverse=True, return_counts=True)
    centres = np.zeros((len(names), x.shape[1]))
    np.add.at(centres, inv, x)
    centres /= k[:, None]
    residual = x - centres[inv]
    cov_residual = residual.T @ residual / (len(x) - len(names))  # pooled within flank
    part_of_flank = np.empty(len(names), object)
    part_of_flank[inv] = partition
    parts = sorted(set(part_of_flank))
    d = centres.copy()
    means = {}
    for p in parts:
        sel = part_of_flank == p
        means[p] = centres[sel].mean(axis=0)
        d[sel] -= means[p]
    cov_centres = d.T @ d / (len(names) - len(parts)) - np.mean(1 / k) * cov_residual
    return EmbeddingFit(
        mean=means[mean_of].astype(np.float32),
        centre_basis=_basis(cov_centres),
        residual_basis=_basis(cov_residual),
        images=len(x),
        flanks=len(names),
    )


def model_vectors(
    n: int, rng: np.random.Generator, fit: EmbeddingFit, per_flank: int = 10, queries: int = 512
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` photos of ``n / per_flank`` new flanks drawn from ``fit``, ``queries`` new
    photos of random enrolled flanks, and their flanks (gallery ids // per_flank)."""
    centres = fit.centres(max(1, -(-n // per_flank)), rng)
    out = np.empty((n, DIM), np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        out[start:stop] = fit.photos(centres[np.arange(start, stop) // per_flank], rng)
    of = rng.integers(0, len(centres), queries)
    return out, fit.photos(centres[of], rng), of


def _stats(x: np.ndarray, flank: np.ndarray, rng: np.random.Generator) -> dict:
    """Cosine within a flank (all pairs) and between flanks (20,000 random pairs),
    quantiles 5/50/95; how often a photo's nearest other photo is of its flank; the PCA
    spectrum (share of variance in the first 1/10/50 components; components for 90 %)."""
    same = flank[:, None] == flank[None, :]
    sim = x @ x.T
    iu = np.triu_indices(len(x), 1)
    within = sim[iu][same[iu]]
    a, b = rng.integers(0, len(x), (2, 60_000))
    keep = flank[a] != flank[b]
    between = np.einsum("ij,ij->i", x[a[keep]], x[b[keep]])[:20_000]
    np.fill_diagonal(sim, -np.inf)
    nearest = flank[np.argmax(sim, axis=1)] == flank
    has_mate = same.sum(axis=1) > 1
    w = np.linalg.eigvalsh(np.cov(x.T))[::-1]
    share = np.cumsum(w) / w.sum()

    def q(v: np.ndarray) -> str:
        p5, p50, p95 = np.percentile(v, [5, 50, 95])
        return f"{v.mean():.3f} ({p5:.3f} / {p50:.3f} / {p95:.3f})"

    return {
        "within-flank cos mean (q5/q50/q95)": q(within),
        "between-flank cos mean (q5/q50/q95)": q(between),
        "nearest photo same flank": f"{nearest[has_mate].mean():.3f}",
        "PCA var share top 1/10/50": f"{share[0]:.3f} / {share[9]:.3f} / {share[49]:.3f}",
        "PCA components for 90 %": int(np.searchsorted(share, 0.9) + 1),
    }


def fitted_model(path: Path, partition: str) -> EmbeddingFit:
    real = real_embeddings(path)
    unseen = real["seen"] == 0
    x, flank, part = real["x"][unseen], real["flank"][unseen], real["partition"][unseen]
    fit = fit_embeddings(x, flank, part, partition)
    print(
        f"model of {real['model']} embeddings fitted on {fit.images} real embeddings of "
        f"{fit.flanks} unseen flanks ({path}); partition mean {partition}",
        flush=True,
    )
    rng = np.random.default_rng(1)
    sel = part == partition
    per_flank = 4
    n_flanks = len(set(flank[sel]))
    centres = fit.centres(n_flanks, rng)
    gen = fit.photos(np.repeat(centres, per_flank, axis=0), rng)
    gen_flank = np.repeat(np.arange(n_flanks), per_flank)
    seen = real["seen"] == 1
    rows = {
        f"real {partition} ({sel.sum()} photos)": _stats(x[sel], flank[sel], rng),
        f"generated ({len(gen)} photos, {per_flank} per flank)": _stats(gen, gen_flank, rng),
        f"real trained flanks ({seen.sum()} photos)": _stats(
            real["x"][seen], real["flank"][seen], rng
        ),
    }
    for name, s in rows.items():
        print(json.dumps({"distribution": name, **s}), flush=True)
    return fit


# ---------------------------------------------------------------- timing


def bandwidth_gbs() -> float:
    """Read bandwidth of this machine: the best of a few BLAS dot products over 512 MB
    (each element read once; SIMD, so memory- not compute-bound)."""
    a = np.ones(128 * 1024 * 1024, np.float32)
    best = 0.0
    for _ in range(5):
        t = time.perf_counter()
        np.dot(a, a)
        best = max(best, a.nbytes / (time.perf_counter() - t) / 1e9)
    return best


def latencies(search, queries: np.ndarray, batch: int, repeats: int) -> list[float]:
    out = []
    for r in range(repeats):
        q = queries[(r * batch) % len(queries) :][:batch]
        if len(q) < batch:
            q = queries[:batch]
        t = time.perf_counter()
        search(q, 10)
        out.append(time.perf_counter() - t)
    return out


def one_size(
    n: int,
    x: np.ndarray,
    queries: np.ndarray,
    flanks: np.ndarray,
    bw: float,
    nprobes: list[int],
    efs: list[int],
    hnsw_m: int = DEFAULT_HNSW_M,
    ef_construction: int = DEFAULT_EF_CONSTRUCTION,
) -> list[dict]:
    entries = [GalleryEntry(f"img{i}.jpg", f"F{i // 10}", "tiger", "left") for i in range(n)]
    rows = []
    exact_ids: list[set[int]] = []
    kinds = (
        [("exact", [None])]
        + ([("ivf", nprobes)] if nprobes else [])
        + ([("hnsw", efs)] if efs else [])
    )
    for kind, params in kinds:
        gc.collect()
        before = rss_mb()
        t = time.perf_counter()
        index = GalleryIndex.create(
            FP,
            DIM,
            approximate_above=n + 1 if kind == "exact" else 0,
            approximate="ivf" if kind == "ivf" else "hnsw",
            hnsw_m=hnsw_m,
            ef_construction=ef_construction,
        )
        if kind == "hnsw":  # the graph is made at the first add and grows with the rest
            index.add(x[:1], entries[:1])
            index.add(x[1:], entries[1:])
        else:  # the inverted file is trained on the whole first add
            index.add(x, entries)

        def search(q, k, index=index):
            return [[h.id for h in row] for row in index.search(q, k)]

        build = time.perf_counter() - t
        memory = rss_mb() - before
        for p in params:
            if kind == "ivf":
                index.set_nprobe(p)
            elif kind == "hnsw":
                index.set_ef_search(p)
            single = np.array(latencies(search, queries, 1, 40 if n >= 1_000_000 else 200)) * 1e3
            batch = np.array(latencies(search, queries, 64, 6 if n >= 1_000_000 else 30)) * 1e3
            ids = [set(row) for row in search(queries[:256], 10)]
            own = np.mean(
                [sum(i // 10 == f for i in row) for row, f in zip(ids, flanks, strict=False)]
            )
            if kind == "exact":
                exact_ids = ids
            recall = float(np.mean([len(a & b) / 10 for a, b in zip(ids, exact_ids, strict=True)]))
            name = {
                "exact": "exact",
                "ivf": f"ivf nprobe {p}",
                "hnsw": f"hnsw{hnsw_m} efC {ef_construction} ef {p}",
            }[kind]
            rows.append(
                {
                    "n": n,
                    "kind": name,
                    "build_s": round(build, 2),
                    "single_p50_ms": round(float(np.percentile(single, 50)), 2),
                    "single_p95_ms": round(float(np.percentile(single, 95)), 2),
                    "batch64_p50_ms": round(float(np.percentile(batch, 50)), 1),
                    "batch64_p95_ms": round(float(np.percentile(batch, 95)), 1),
                    "recall@10": round(recall, 4),
                    "own_flank_in_top10": round(float(own), 3),
                    "memory_mb": round(memory),
                    "bandwidth_bound_ms": round(n * DIM * 4 / (bw * 1e9) * 1e3, 2),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
        del index, search
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", choices=("model", "isotropic"), default="model")
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--nprobes", default=NPROBES, help="IVF nprobe values, or 'none'")
    parser.add_argument("--hnsw", action="store_true", help="also measure HNSW")
    parser.add_argument("--hnsw-m", type=int, default=DEFAULT_HNSW_M, help="HNSW graph degree M")
    parser.add_argument(
        "--ef-construction", type=int, default=DEFAULT_EF_CONSTRUCTION, help="HNSW efConstruction"
    )
    parser.add_argument("--ef", default="64,128,256", help="HNSW efSearch values")
    parser.add_argument("--real", type=Path, default=REAL_CACHE, help="real-embedding cache")
    parser.add_argument("--partition", default="tiger/left", help="species/side of the model")
    parser.add_argument("--json", action="store_true", help="print only the JSON rows")
    args = parser.parse_args()
    fit = fitted_model(args.real, args.partition) if args.vectors == "model" else None
    bw = bandwidth_gbs()
    print(json.dumps({"read_bandwidth_GBps": round(bw, 1)}), flush=True)
    rng = np.random.default_rng(0)
    nprobes = [] if args.nprobes == "none" else [int(s) for s in args.nprobes.split(",")]
    efs = [int(s) for s in args.ef.split(",")] if args.hnsw else []
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        x, queries, flanks = model_vectors(n, rng, fit) if fit is not None else isotropic(n, rng)
        rows += one_size(n, x, queries, flanks, bw, nprobes, efs, args.hnsw_m, args.ef_construction)
        del x, queries
    if args.json:
        return
    print(
        f"\n{'n':>9} {'kind':<24}{'1q p50':>8}{'1q p95':>8}{'64q p50':>9}{'64q p95':>9}"
        f"{'recall':>8}{'flank':>7}{'MB':>7}{'bound':>7}{'build s':>8}"
    )
    for r in rows:
        print(
            f"{r['n']:>9} {r['kind']:<24}{r['single_p50_ms']:>8}{r['single_p95_ms']:>8}"
            f"{r['batch64_p50_ms']:>9}{r['batch64_p95_ms']:>9}{r['recall@10']:>8}"
            f"{r['own_flank_in_top10']:>7}"
            f"{r['memory_mb']:>7}{r['bandwidth_bound_ms']:>7}{r['build_s']:>8}"
        )


if __name__ == "__main__":
    main()
