"""Matching API latency and throughput over loopback: 1, 4 and 16 concurrent clients.

Builds (once, cached in --work) a synthetic gallery of --gallery flank photos (tigers and
leopards, 4 photos per flank; all but one photo of each flank enrolled) with the model
release --model, starts ``reid serve`` on it in a subprocess, and drives POST /v1/match
with held-out photos from client threads (httpx, one connection each). Prints per
concurrency level: requests, errors, p50/p95 latency and requests/s; ``--soak S`` then
runs 4 clients for S seconds and reports errors.

    .venv/bin/python bench/bench_api.py --model models/bigcat-default --gallery 10000
    .venv/bin/python bench/bench_api.py --model models/bigcat-default --soak 600
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np


def build(work: Path, model: Path, n_images: int) -> tuple[Path, list]:
    """(index folder, held-out query records), making them when absent."""
    from reid.data.manifest import read_manifest
    from reid.match import enroll
    from reid.synthetic.catalogue import write_catalogue

    per_individual = 8  # 2 sides x 4 photos
    individuals = max(2, n_images // per_individual // 2)  # per species
    cat = work / f"catalogue-{n_images}"
    if not (cat / "manifest.csv").is_file():
        write_catalogue(cat, species=("tiger", "leopard"), individuals=individuals,
                        images_per_side=4, seed=4242, workers=2)  # fmt: skip
    records = read_manifest(cat / "manifest.csv")
    flanks: dict = {}
    for r in records:
        flanks.setdefault((r.species, r.individual_id, r.side), []).append(r)
    gallery = [r for rs in flanks.values() for r in rs[:-1]]
    queries = [rs[-1] for rs in flanks.values()]
    index = work / f"index-{n_images}"
    if not (index / "CURRENT").is_file():
        enroll(gallery, index, model, organisation="BENCH", workers=2, calibration_sample=500)
    return index, queries


def start_server(index: Path, model: Path, work: Path, port: int, workers: int):
    env = dict(os.environ, REID_SERVE_INDEX=str(index), REID_SERVE_MODEL=str(model),
               REID_SERVE_DATABASE_URL=f"sqlite:///{work / 'registry.sqlite'}",
               REID_SERVE_MEDIA_DIR=str(work / "media"), REID_SERVE_JOBS_DIR=str(work / "jobs"),
               REID_SERVE_RATE_LIMIT_PER_MINUTE="1000000", REID_SERVE_RATE_LIMIT_BURST="100000")
    proc = subprocess.Popen(
        [sys.executable, "-m", "reid.cli", "serve", "--port", str(port), "--workers",
         str(workers)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    import httpx

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"server did not start: {proc.stderr.read().decode()[-2000:]}")


def make_key(work: Path) -> str:
    from reid.registry import Registry
    from serve.access import create_key

    with Registry(f"sqlite:///{work / 'registry.sqlite'}").session() as s:
        return create_key(s, "BENCH", "contributor", country="NP")[1]


def drive(url: str, key: str, queries: list, clients: int, seconds: float) -> dict:
    """``clients`` threads posting matches for ``seconds``; latency percentiles and rate."""
    import httpx

    lat: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    bodies = [(Path(q.path).read_bytes(), q.species, q.side) for q in queries]

    def client(k: int) -> None:
        rng = np.random.default_rng(k)
        with httpx.Client(base_url=url, timeout=120,
                          headers={"Authorization": f"Bearer {key}"}) as c:  # fmt: skip
            while time.monotonic() < stop:
                data, species, side = bodies[int(rng.integers(len(bodies)))]
                t = time.perf_counter()
                try:
                    r = c.post("/v1/match", files={"image": ("q.jpg", data, "image/jpeg")},
                               data={"species": species, "side": side, "country": "NP",
                                     "lat": "28.4", "lon": "81.3",
                                     "captured_at": "2025-01-01T00:00:00Z"})  # fmt: skip
                    ok = r.status_code == 200
                    err = None if ok else f"{r.status_code} {r.text[:200]}"
                except httpx.HTTPError as e:
                    err = repr(e)
                dt = time.perf_counter() - t
                with lock:
                    if err:
                        errors.append(err)
                    else:
                        lat.append(dt)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    a = np.array(lat) if lat else np.array([np.nan])
    return {"clients": clients, "requests": len(lat), "errors": len(errors),
            "first_errors": errors[:3], "p50_ms": round(float(np.percentile(a, 50)) * 1000, 1),
            "p95_ms": round(float(np.percentile(a, 95)) * 1000, 1),
            "req_per_s": round(len(lat) / wall, 2), "seconds": round(wall, 1)}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, default=Path("models/bigcat-default"))
    p.add_argument("--gallery", type=int, default=10_000, help="Gallery photos (approx.).")
    p.add_argument("--work", type=Path, default=Path("data/bench-api"))
    p.add_argument("--seconds", type=float, default=60.0, help="Per concurrency level.")
    p.add_argument("--clients", default="1,4,16", help="Levels; \"\" with --soak: soak only.")
    p.add_argument("--workers", type=int, default=2, help="Server match workers.")
    p.add_argument("--soak", type=float, default=0.0, help="Seconds of a 4-client soak.")
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    index, queries = build(args.work, args.model, args.gallery)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    key = make_key(args.work)
    server = start_server(index, args.model, args.work, port, args.workers)
    url = f"http://127.0.0.1:{port}"
    try:
        from reid.index import GalleryIndex

        vectors = len(GalleryIndex.open(index))
        drive(url, key, queries, 1, 5)  # warm-up
        out = {"gallery_vectors": vectors, "levels": []}
        for n in (int(c) for c in args.clients.split(",") if c.strip()):  # "" = soak only
            out["levels"].append(drive(url, key, queries, n, args.seconds))
            print(json.dumps(out["levels"][-1]), flush=True)
        if args.soak:
            out["soak"] = drive(url, key, queries, 4, args.soak)
            print(json.dumps({"soak": out["soak"]}), flush=True)
        print(json.dumps(out, indent=2))
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
