"""Benchmark: derive movements for 1M sightings of 10k individuals; p95 of a country-pair query.

    .venv/bin/python bench/bench_movements.py --db sqlite
    .venv/bin/python bench/bench_movements.py --db postgresql --url postgresql+psycopg://...

Builds a synthetic registry (4 countries, 40 sites along their borders, each individual
walking between neighbouring sites over two years, all sightings confirmed), then times
a full derivation, an incremental one after 100 individuals got a new sighting, and 200
movement queries by random country pair (arrivals in the last 90 days).

Then the API's query (``GET /v1/movements``, :func:`serve.records.visible_movements`):
the sites belong to two organisations in turn, and a caller who may see one of them
asks for the crossings between the sightings it may see (derived per request, since
they differ from the registry's), by random country pair and by individual.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from reid.movements import derive_movements, movements
from reid.privacy import PUBLIC
from reid.registry import Registry
from reid.registry.models import Deployment, Individual, Media, Organisation, Sighting, Site

COUNTRIES = ("NP", "IN", "BT", "BD")
T0 = datetime(2024, 1, 1)


def build(reg: Registry, n_sightings: int, n_individuals: int, seed: int = 0) -> None:
    """Fill ``reg`` with sites, deployments, individuals and confirmed sightings."""
    rng = np.random.default_rng(seed)
    with reg.session() as s:
        s.execute(sa.insert(Organisation), [
            {"id": 1, "code": "org", "name": "org", "country": "NP"},
            {"id": 2, "code": "partner", "name": "partner", "country": "IN"},
        ])  # fmt: skip
        sites = [{"id": i + 1, "code": f"site-{i}", "country": COUNTRIES[i % 4],
                  "lat": 26.0 + (i // 4) * 0.1, "lon": 85.0 + (i % 4) * 0.2,
                  "organisation_id": 1 + (i // 4) % 2} for i in range(40)]  # fmt: skip
        s.execute(sa.insert(Site), sites)
        s.execute(sa.insert(Deployment), [{"id": x["id"], "code": f"dep-{x['id']}",
                                           "site_id": x["id"], "lat": x["lat"],
                                           "lon": x["lon"]} for x in sites])  # fmt: skip
        s.execute(sa.insert(Individual), [
            {"id": i + 1, "code": f"T-{i:05d}", "species": "tiger", "stale": True}
            for i in range(n_individuals)
        ])  # fmt: skip
    per = n_sightings // n_individuals
    chunk = 100_000
    seconds = 2 * 365 * 86400
    next_id = 1
    for start in range(0, n_individuals, chunk // per):
        inds = range(start, min(n_individuals, start + chunk // per))
        media, sightings = [], []
        for ind in inds:
            site = int(rng.integers(40))
            times = np.sort(rng.integers(0, seconds, per))
            steps = rng.choice([-4] * 3 + [0] * 12 + [4] * 3 + [1, -1], per)  # 10 % cross
            for k in range(per):
                site = (site + int(steps[k])) % 40
                media.append({"id": next_id, "code": f"m{next_id}", "deployment_id": site + 1,
                              "file_path": f"img/{next_id}.jpg",
                              "captured_at": T0 + timedelta(seconds=int(times[k])),
                              "mediatype": "image/jpeg"})  # fmt: skip
                sightings.append({"id": next_id, "code": f"s{next_id}", "media_id": next_id,
                                  "individual_id": ind + 1, "species": "tiger", "side": "left",
                                  "status": "confirmed"})  # fmt: skip
                next_id += 1
        with reg.session() as s:
            s.execute(sa.insert(Media), media)
            s.execute(sa.insert(Sighting), sightings)
    if reg.engine.dialect.name == "postgresql":
        with reg.engine.connect() as c:
            c.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--url", help="PostgreSQL URL (a scratch schema is created and dropped)")
    ap.add_argument("--sightings", type=int, default=1_000_000)
    ap.add_argument("--individuals", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--api-queries", type=int, default=20,
                    help="GET /v1/movements queries by country pair (each reads every "
                    "confirmed sighting the caller may see)")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    schema = None
    if args.db == "sqlite":
        reg = Registry(f"sqlite:///{Path(tmp.name) / 'bench.sqlite'}")
    else:
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(args.url)
        with admin.begin() as c:
            c.exec_driver_sql(f"CREATE SCHEMA {schema}")
        reg = Registry(args.url, connect_args={"options": f"-csearch_path={schema}"})
    try:
        t = time.perf_counter()
        build(reg, args.sightings, args.individuals)
        print(f"built {args.sightings:,} sightings of {args.individuals:,} individuals "
              f"in {time.perf_counter() - t:.1f} s")  # fmt: skip
        t = time.perf_counter()
        with reg.session() as s:
            stats = derive_movements(s, full=True)
        full_s = time.perf_counter() - t
        print(f"full derivation: {stats.movements:,} movements of {stats.individuals:,} "
              f"individuals in {full_s:.1f} s")  # fmt: skip
        touched = [1 + (k * 97) % args.individuals for k in range(100)]
        with reg.session() as s:  # 100 individuals get a new confirmed sighting each
            last = s.scalar(sa.select(sa.func.max(Media.id)))
            s.execute(sa.insert(Media), [{"id": last + k + 1, "code": f"x{k}",
                                          "deployment_id": 1 + k % 40, "file_path": "x.jpg",
                                          "captured_at": T0 + timedelta(days=800),
                                          "mediatype": "image/jpeg"} for k in range(100)])
            s.execute(sa.insert(Sighting), [{"id": last + k + 1, "code": f"x{k}",
                                             "media_id": last + k + 1, "individual_id": touched[k],
                                             "species": "tiger", "side": "left",
                                             "status": "confirmed"} for k in range(100)])
            s.execute(sa.update(Individual).where(Individual.id.in_(touched)).values(stale=True))
        t = time.perf_counter()  # fmt: skip
        with reg.session() as s:
            inc = derive_movements(s)
        print(f"incremental derivation ({inc.individuals} individuals touched): "
              f"{(time.perf_counter() - t) * 1000:.0f} ms")  # fmt: skip
        rng = np.random.default_rng(1)
        latencies, sizes = [], []
        since = T0 + timedelta(days=730 - 90)
        for _ in range(args.queries):
            a, b = rng.choice(COUNTRIES, 2, replace=False)
            t = time.perf_counter()
            with reg.session() as s:
                sizes.append(len(movements(s, PUBLIC, from_country=a, to_country=b, since=since)))
            latencies.append(time.perf_counter() - t)
        p50 = statistics.median(latencies) * 1000
        p95 = float(np.percentile(latencies, 95)) * 1000
        print(f"movements query by country pair (last 90 days, {statistics.mean(sizes):.0f} rows "
              f"on average): p50 {p50:.1f} ms, p95 {p95:.1f} ms")  # fmt: skip
        api_queries(reg, args.api_queries, args.individuals, since, rng)
    finally:
        reg.close()
        if schema is not None:
            with admin.begin() as c:
                c.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        tmp.cleanup()


def api_queries(reg: Registry, n: int, individuals: int, since: datetime, rng) -> None:
    """Time the API's per-caller reads: movements (``n`` by country pair, ``n`` by
    individual code), the individuals list, pages of sightings and one sighting."""
    from serve.access import Caller, Scope
    from serve.problems import Problem
    from serve.records import sighting_detail, visible_individual, visible_movements
    from serve.routers import sightings
    from serve.routers.individuals import list_

    own = frozenset({"org"})
    scope = Scope(match=own, view=own, precise=own, own="org")
    with reg.session() as s:
        visible = s.scalar(
            sa.select(sa.func.count()).select_from(Sighting)
            .join(Media, Sighting.media_id == Media.id)
            .join(Deployment, Media.deployment_id == Deployment.id)
            .join(Site, Deployment.site_id == Site.id)
            .where(Site.organisation_id == 1, Sighting.status == "confirmed")
        )  # fmt: skip

    def pair() -> dict:
        a, b = (str(c) for c in rng.choice(COUNTRIES, 2, replace=False))
        return {"from_country": a, "to_country": b, "since": since}

    for label, kwargs_of in (
        ("by country pair, last 90 days", pair),
        ("by individual code", lambda: {"individual": f"T-{rng.integers(individuals):05d}"}),
    ):
        latencies, sizes = [], []
        for _ in range(n):
            kwargs = kwargs_of()
            t = time.perf_counter()
            with reg.session() as s:
                if "individual" in kwargs:  # the router's lookup, then the query
                    kwargs["individual"] = visible_individual(s, scope, kwargs["individual"])
                out, _ = visible_movements(s, scope, **kwargs)
            latencies.append(time.perf_counter() - t)
            sizes.append(len(out))
        print(f"API movements {label} ({visible:,} sightings visible, "
              f"{statistics.mean(sizes):.0f} rows on average): "
              f"p50 {statistics.median(latencies) * 1000:.1f} ms, "
              f"p95 {float(np.percentile(latencies, 95)) * 1000:.1f} ms")  # fmt: skip
    latencies = []
    for _ in range(max(1, n // 4)):
        t = time.perf_counter()
        with reg.session() as s:
            listed = list_(s, None, scope, None)
        latencies.append(time.perf_counter() - t)
    print(f"API individuals list ({len(listed):,} individuals visible): "
          f"p50 {statistics.median(latencies) * 1000:.1f} ms")  # fmt: skip
    with reg.session() as s:
        last = s.scalar(sa.select(sa.func.max(Sighting.id)).where(Sighting.code.like("s%")))
    caller = Caller(key_id="bench", organisation="org", organisation_id=1, role="viewer",
                    precise_location=True)  # fmt: skip
    for label, kwargs_of in (
        ("GET /v1/sightings, first page of 100", lambda: {}),
        ("GET /v1/sightings, 100 from a random day", lambda: {
            "since": T0 + timedelta(days=int(rng.integers(700)))}),
        ("GET /v1/sightings/{code}", lambda: {"code": f"s{rng.integers(1, last)}"}),
    ):  # fmt: skip
        latencies = []
        for _ in range(max(1, n // 4)):
            kwargs = kwargs_of()
            t = time.perf_counter()
            with reg.session() as s:
                if "code" in kwargs:  # a partner's sighting: a 404, as the API answers
                    with contextlib.suppress(Problem):
                        sighting_detail(s, scope, kwargs["code"])
                else:
                    got = sightings.list_(s, caller, scope, None, None, "confirmed",
                                          kwargs.get("since"), 100)  # fmt: skip
                    assert len(got) == 100
            latencies.append(time.perf_counter() - t)
        print(f"API {label}: p50 {statistics.median(latencies) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
