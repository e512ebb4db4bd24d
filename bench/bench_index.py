"""Gallery search speed, recall and memory at 10k, 100k and 1M vectors (512-d).

Vectors are clustered like a catalogue's embeddings (one centre per flank, ten photos
each, unit length); queries are new photos of enrolled flanks, whose ten nearest
neighbours are the photos of their flank. For each size the exact
index (``IndexFlatIP``) and the approximate one (``IndexIVFFlat``, as
``GalleryIndex`` builds it above its threshold) are timed for one query at a time and
for batches of 64 (p50 / p95 over repeated runs), recall@10 of the approximate index is
measured against the exact results, and the resident memory each index adds is read
from /proc. The memory-bandwidth bound of exact search (bytes scanned / measured copy
bandwidth) is printed beside the exact latencies.

    .venv/bin/python bench/bench_index.py [--sizes 10000,100000,1000000] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import time

import numpy as np

from reid.index import GalleryEntry, GalleryIndex

DIM = 512
FP = "0" * 64
NPROBES = (16, 32, 64, 128)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def clustered(n: int, rng: np.random.Generator, per_flank: int = 10) -> np.ndarray:
    """``n`` unit vectors, ``per_flank`` around each random centre (cosine ~0.6 within a
    flank, ~0 between flanks): with ten photos per flank the ten nearest neighbours of a
    query are its flank, not a tail of unrelated vectors whose order is noise."""
    centres = rng.standard_normal((max(1, -(-n // per_flank)), DIM), dtype=np.float32)
    out = np.empty((n, DIM), np.float32)
    for start in range(0, n, 100_000):  # in chunks: bounded temporary memory
        stop = min(n, start + 100_000)
        x = centres[np.arange(start, stop) // per_flank]
        x += 0.8 * rng.standard_normal(x.shape, dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[start:stop] = x
    return out


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


def latencies(index: GalleryIndex, queries: np.ndarray, batch: int, repeats: int) -> list[float]:
    out = []
    for r in range(repeats):
        q = queries[(r * batch) % len(queries) :][:batch]
        if len(q) < batch:
            q = queries[:batch]
        t = time.perf_counter()
        index.search(q, 10)
        out.append(time.perf_counter() - t)
    return out


def one_size(n: int, rng: np.random.Generator, bw: float) -> list[dict]:
    x = clustered(n, rng)
    # queries: new photos of enrolled flanks (a gallery vector plus fresh noise)
    noise = rng.standard_normal((512, DIM), dtype=np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    queries = x[rng.integers(0, n, 512)] + 0.5 * noise
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    entries = [GalleryEntry(f"img{i}.jpg", f"F{i // 10}", "tiger", "left") for i in range(n)]
    rows = []
    exact_ids: list[set[int]] = []
    for kind, nprobes in (("exact", [None]), ("approximate", NPROBES)):
        gc.collect()
        before = rss_mb()
        t = time.perf_counter()
        index = GalleryIndex.create(FP, DIM, approximate_above=n + 1 if kind == "exact" else 0)
        index.add(x, entries)
        build = time.perf_counter() - t
        memory = rss_mb() - before
        for nprobe in nprobes:
            if nprobe is not None:
                index.set_nprobe(nprobe)
            single = np.array(latencies(index, queries, 1, 40 if n >= 1_000_000 else 200)) * 1e3
            batch = np.array(latencies(index, queries, 64, 6 if n >= 1_000_000 else 30)) * 1e3
            hits = index.search(queries[:256], 10)
            ids = [{h.id for h in row} for row in hits]
            if kind == "exact":
                exact_ids = ids
            recall = float(np.mean([len(a & b) / 10 for a, b in zip(ids, exact_ids, strict=True)]))
            rows.append(
                {
                    "n": n,
                    "kind": kind if nprobe is None else f"ivf nprobe {nprobe}",
                    "build_s": round(build, 2),
                    "single_p50_ms": round(float(np.percentile(single, 50)), 2),
                    "single_p95_ms": round(float(np.percentile(single, 95)), 2),
                    "batch64_p50_ms": round(float(np.percentile(batch, 50)), 1),
                    "batch64_p95_ms": round(float(np.percentile(batch, 95)), 1),
                    "recall@10": round(recall, 4),
                    "memory_mb": round(memory),
                    "bandwidth_bound_ms": round(n * DIM * 4 / (bw * 1e9) * 1e3, 2),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
        del index
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--json", action="store_true", help="print only the JSON rows")
    args = parser.parse_args()
    bw = bandwidth_gbs()
    print(json.dumps({"read_bandwidth_GBps": round(bw, 1)}), flush=True)
    rng = np.random.default_rng(0)
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        rows += one_size(n, rng, bw)
    if args.json:
        return
    print(
        f"\n{'n':>9} {'kind':<18}{'1q p50':>8}{'1q p95':>8}{'64q p50':>9}{'64q p95':>9}"
        f"{'recall':>8}{'MB':>7}{'bound':>7}{'build s':>8}"
    )
    for r in rows:
        print(
            f"{r['n']:>9} {r['kind']:<18}{r['single_p50_ms']:>8}{r['single_p95_ms']:>8}"
            f"{r['batch64_p50_ms']:>9}{r['batch64_p95_ms']:>9}{r['recall@10']:>8}"
            f"{r['memory_mb']:>7}{r['bandwidth_bound_ms']:>7}{r['build_s']:>8}"
        )


if __name__ == "__main__":
    main()
