"""A season run, start to finish (``reid bulk``): read, group, match, cluster, report.

1. Read the source's captures (:mod:`reid.bulk.sources`) and group them into bursts
   (:mod:`reid.bulk.bursts`).
2. Open the journal (:mod:`reid.bulk.journal`); encounters it already holds are done.
3. An engine (:mod:`reid.bulk.engines`) decodes, embeds and matches the others; each
   result is journalled the moment it arrives.
4. Encounters that matched nobody are clustered into proposed new individuals
   (:mod:`reid.bulk.cluster`).
5. Outputs, rewritten atomically from the journal on every run: ``encounters.csv``,
   ``new_individuals.csv``, ``summary.json``, a Camtrap DP package with individualID
   filled in (``camtrap-dp/``: the input package filled, or for a folder, manifest or
   EXIF source one derived from the season), ``report.html`` + ``map.png``.
6. With a registry, the package's sightings are loaded into it as *proposed*.

Killing the run at any moment and running the same command again finishes it with
every encounter exactly once.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reid.bulk.bursts import DEFAULT_GAP_S, Encounter, group_bursts, season_fingerprint
from reid.bulk.cluster import Item, Proposal, cluster, proposals
from reid.bulk.engines import ENGINES, LocalEngine, RayEngine, chunks
from reid.bulk.journal import Journal
from reid.bulk.sources import Source, read_source, write_csv
from reid.bulk.work import JobSpec, decode_vector, input_settings, load_capture, model_version
from reid.errors import ReidError
from reid.progress import progress_bar

ENCOUNTER_COLUMNS: list[str] = [
    "encounter",
    "deployment",
    "species",
    "side",
    "start",
    "end",
    "site",
    "country",
    "lat",
    "lon",
    "frames",
    "media",
    "decision",
    "individual",
    "matched_side",
    "photo_side",
    "probability",
    "new_probability",
    "verified",
    "proposed_individual",
    "candidates",
    "model_version",
    "skipped",
    # frame:x,y,w,h (fractions of the frame) of each frame cropped to the flank the
    # model's flank head found (it had no box; BulkOptions.locate)
    "located_boxes",
]
PROPOSAL_COLUMNS: list[str] = [
    "proposed_individual",
    "species",
    "side",
    "encounters",
    "probability",
    "first_seen",
    "last_seen",
    "countries",
    "encounter_ids",
]


@dataclass
class BulkOptions:
    """Everything a season run is given besides source and folders."""

    model: Path | None = None
    engine: str = "local"
    address: str | None = None
    ray_workers: int | None = None
    ray_cpus: int | None = None
    gpus_per_worker: float = 0.0
    device: str = "cpu"
    gap_s: float = DEFAULT_GAP_S
    batch_size: int = 32
    decode_threads: int = 2
    # Encounters matched at once, each on one thread (keypoints, verification); the
    # results do not depend on it.
    match_threads: int = 2
    top: int = 5
    # Decide an encounter on the embedding alone when the gallery's screening model is at
    # least this sure (of its best candidate, or that it is new); 0 verifies every one.
    # On by default for season runs. Chosen on real tigers (ATRW held-out, v0.14;
    # BENCHMARKS.md "Calibration on real photos"): at 0.99 the decisions are those of
    # verifying all (gm(BAKS, BAUS) 0.879, 9 % of queries screened), at 0.95 gm fell to
    # 0.854 (35 % screened). On the synthetic benchmark season 0.95 decided 54 % of
    # encounters unverified with no decision changed (v0.11-v0.13). Single queries (reid
    # match, the API) always verify: a researcher confirming a candidate wants the
    # keypoint evidence.
    screen: float = 0.99
    # Frames of a burst whose keypoints are verified, best global score first (the next
    # only when the first is not decisive). 1 for season runs: on the benchmark season with
    # default model v0.13, 0.983 of encounters right against 0.982 with 2, and the run
    # 6-7 % faster (BENCHMARKS.md of 2026-12-05, in git history); 2 keeps a fallback for
    # a best frame that verifies poorly. Single queries (reid match, the API) verify 2.
    verify_frames: int = 1
    # Expected share of encounters showing a flank not in the gallery (P(new)'s prior);
    # None: the one stored with the gallery's calibration.
    new_prior: float | None = None
    # MatchConfig.side_threshold for encounters of unknown side; None: the matcher's
    side_threshold: float | None = None
    # frames without a box are cropped to the flank the model's flank head finds (no
    # effect for a model without one); False matches whole frames
    locate: bool = True
    # P(same flank) comes from the gallery calibration, where same-flank pairs are rare
    # (~4 % of verified candidates); among an unmatched encounter's nearest unmatched
    # neighbours they are far more common, so the same evidence is worth more there. On
    # the benchmark season (the only one with truth), 0.5 / 5 neighbours -> 0.2 / 10
    # kept purity at 1.000 and raised recall from 0.780 to 0.865 (BENCHMARKS.md).
    new_threshold: float = 0.2
    neighbours: int = 10
    species: str | None = None
    utc_offset_h: float = 0.0
    report: bool = True
    show_progress: bool = True
    registry: str | None = None  # load proposed sightings: a database URL, "" the default


@dataclass
class BulkSummary:
    """What a run did: counts and where its outputs are."""

    run_dir: Path
    encounters: int
    frames: int
    matched_now: int
    known: int
    new: int
    unreadable: int
    proposals: int
    seconds: float
    frames_per_s: float
    outputs: dict[str, str]
    complete: bool = True
    # Of ``seconds``, the time the network ran (local engine; None on Ray, where it runs
    # in the workers): network_s / seconds is the run's speed as a share of the model's
    # own, measured in the same run.
    network_s: float | None = None

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["run_dir"] = str(self.run_dir)
        return d


def run_bulk(
    source_path: Path | str,
    index_dir: Path | str,
    run_dir: Path | str,
    options: BulkOptions | None = None,
    echo: Callable[[str], None] | None = None,
) -> BulkSummary:
    """Run (or resume) a season job; see the module text."""
    from reid.match import Matcher, check_new_prior

    opts = options or BulkOptions()
    if opts.engine not in ENGINES:
        raise ReidError(f"engine {opts.engine!r} is not one of {', '.join(ENGINES)}")
    if min(opts.batch_size, opts.decode_threads, opts.match_threads, opts.top) < 1:
        raise ReidError("batch size, decode and match threads and top must be at least 1")
    if opts.verify_frames < 1:
        raise ReidError(f"verified frames per burst must be at least 1, got {opts.verify_frames}")
    if not 0.0 <= opts.screen < 1.0:
        raise ReidError(f"screening confidence {opts.screen} is not in [0, 1)")
    if opts.new_prior is not None:
        check_new_prior(opts.new_prior)
    if opts.side_threshold is not None and not 0.5 <= opts.side_threshold <= 1.0:
        raise ReidError(f"side threshold {opts.side_threshold} is not in [0.5, 1]")
    if not 0.0 < opts.new_threshold <= 1.0:
        raise ReidError(f"new-individual threshold {opts.new_threshold} is not in (0, 1]")
    say = echo or (lambda _m: None)
    run_dir = Path(run_dir)
    source = read_source(source_path, species=opts.species, utc_offset_h=opts.utc_offset_h)
    encounters = group_bursts(source.captures, opts.gap_s)
    frames = sum(len(e.frames) for e in encounters)
    say(
        f"{source.kind} source {source.root}: {len(source.captures)} captures, "
        f"{len(encounters)} encounters"
    )
    spec = JobSpec(
        index_dir=str(Path(index_dir).resolve()),
        model=None if opts.model is None else str(Path(opts.model).resolve()),
        device=opts.device,
        batch_size=opts.batch_size,
        decode_threads=opts.decode_threads,
        match_threads=opts.match_threads,
        top=opts.top,
        screen=opts.screen,
        new_prior=opts.new_prior,
        verify_frames=opts.verify_frames,
        side_threshold=opts.side_threshold,
        locate=opts.locate,
    )
    matcher = Matcher.open(
        index_dir, model=opts.model, device=opts.device, config=spec.match_config()
    )
    if opts.screen > 0 and (matcher.calibration is None or matcher.calibration.screen is None):
        say(
            "the gallery's calibration has no screening model (enrolled by an older "
            "version; re-enroll to screen): every encounter is verified"
        )
    header = {
        "season": season_fingerprint(encounters),
        "model": matcher.manifest["sha256"],
        "gallery": {"path": spec.index_dir, "vectors": len(matcher.index)},
        "gap_s": opts.gap_s,
        "settings": spec.settings(),
    }
    flank_head = matcher.manifest.get("flank_head")
    if spec.locate and flank_head:  # frames without a box are cropped to the flank found
        header["flank_head"] = flank_head.get("sha256")
    # Without a flank head, or in a gallery not enrolled with boxes (Matcher.locate),
    # nothing is cropped: whether locating was asked for and which head would have done
    # it change no result, and a run resumes whatever they were.
    located = bool(flank_head) and matcher.gallery_boxed()
    moot = () if located else ("flank_head", "settings.locate")
    started = time.perf_counter()
    matched_now = 0
    with Journal.open(run_dir, header, moot) as journal:
        done_before = len(journal.done)
        # Chunks are cut from the whole season, so a resumed run batches as a fresh one.
        todo = [
            [e for e in part if e.id not in journal.done]
            for part in chunks(encounters, opts.batch_size)
        ]
        todo = [part for part in todo if part]
        pending = [e for part in todo for e in part]
        if done_before:
            say(f"resuming: {done_before} encounters done, {len(pending)} to go")
        engine = _engine(opts, spec, matcher)
        try:
            n_frames = sum(len(e.frames) for e in pending)
            with progress_bar(n_frames, f"matching ({engine.name})", opts.show_progress) as adv:
                for row in engine.run(todo):
                    journal.append(row)
                    matched_now += 1
                    adv(len(row["frames"]))
        finally:
            engine.close()
        network_s = getattr(engine, "network_s", None)
        results = {e.id: journal.done.get(e.id) for e in encounters}
    seconds = time.perf_counter() - started
    complete = all(r is not None for r in results.values())
    rows = [r for r in results.values() if r is not None]
    found: list[Proposal] = []
    outputs: dict[str, str] = {}
    if complete:
        prefix = f"NEW-{header['season'][:6]}"
        found = find_new_individuals(rows, encounters, matcher, opts, say, prefix)
        outputs = write_outputs(run_dir, source, encounters, rows, found, opts, matcher, say)
        if opts.registry is not None:
            undecoded = undecoded_observations(encounters, results)
            outputs["registry"] = load_registry(run_dir, opts.registry, matcher, say, undecoded)
    new_frames = sum(len(e.frames) for e in pending[:matched_now])
    summary = BulkSummary(
        run_dir=run_dir,
        encounters=len(encounters),
        frames=frames,
        matched_now=matched_now,
        known=sum(r["decision"] == "known" for r in rows),
        new=sum(r["decision"] == "new" for r in rows),
        unreadable=sum(r["decision"] == "unreadable" for r in rows),
        proposals=len(found),
        seconds=round(seconds, 3),
        frames_per_s=round(new_frames / seconds, 2) if seconds > 0 else 0.0,
        outputs=outputs,
        complete=complete,
        network_s=None if network_s is None else round(network_s, 3),
    )
    if complete:
        _atomic_text(run_dir / "summary.json", json.dumps(summary.to_dict(), indent=2) + "\n")
    return summary


def _engine(opts: BulkOptions, spec: JobSpec, matcher):
    if opts.engine == "ray":
        return RayEngine(
            spec,
            input_settings(matcher),
            address=opts.address,
            workers=opts.ray_workers,
            num_cpus=opts.ray_cpus,
            gpus_per_worker=opts.gpus_per_worker,
        )
    return LocalEngine(spec, matcher)


def cluster_side(row: dict) -> str:
    """An unmatched encounter's side for clustering: the given side, else the side its
    photo showed (the side head was sure), else unknown (joins either side)."""
    if row["side"] != "unknown":
        return row["side"]
    return row.get("photo_side") or "unknown"


def find_new_individuals(
    rows: list[dict],
    encounters: list[Encounter],
    matcher,
    opts: BulkOptions,
    say=None,
    prefix: str = "NEW",
) -> list[Proposal]:
    """Cluster the encounters that matched nobody into proposed new individuals, scoring
    pairs with the matcher's calibrated pair probability on representative frames. Ids
    are ``<prefix>-T-001``...: the run's prefix keeps two seasons' proposals apart."""
    by_id = {e.id: e for e in encounters}
    new = sorted((r for r in rows if r["decision"] == "new"), key=lambda r: r["id"])
    if not new:
        return []
    # an encounter of unknown side joins only its side's clusters when the photo showed it
    items = [
        Item(r["id"], r["species"], cluster_side(r), decode_vector(r["embedding"])) for r in new
    ]
    reps = [decode_vector(r["representative_embedding"]) for r in new]

    # keypoints of each representative frame, extracted once (an encounter is paired with
    # up to 2 x neighbours others); bounded: memory must not grow with the season
    @functools.lru_cache(maxsize=1024)
    def features(i: int):
        enc = by_id[new[i]["id"]]
        frame = next(f for f in enc.frames if f.key == new[i]["representative"])
        return matcher.local_features(load_capture(frame))

    @functools.lru_cache(maxsize=65536)  # clustering and naming ask for the same pairs
    def prob(i: int, j: int) -> float:
        if i > j:
            return prob(j, i)
        return matcher.pair_probability(features(i), features(j), emb_a=reps[i], emb_b=reps[j])

    if say:
        say(f"clustering {len(new)} unmatched encounters into new individuals")
    groups = cluster(items, prob, threshold=opts.new_threshold, neighbours=opts.neighbours)
    start = {r["id"]: (r["start"] or "~", r["id"]) for r in new}
    return proposals(items, groups, lambda it: start[it.id], prob, prefix)


def load_registry(
    run_dir: Path, url: str, matcher, say=None, skip: frozenset[str] = frozenset()
) -> str:
    """Load the season's sightings into the registry as *proposed* (a reviewer confirms
    them): the run's Camtrap DP package (filled, or derived from a folder season) goes
    through :func:`reid.camtrap.import_package`, which adds nothing twice, so a resumed
    or repeated run loads each sighting once. Observations in ``skip`` (none of their
    images decoded: :func:`undecoded_observations`) are not loaded."""
    package = Path(run_dir) / "camtrap-dp"
    if not (package / "datapackage.json").is_file():
        text = "skipped: no Camtrap DP package was written (see camtrap_dp_left_out)"
        if say:
            say(f"registry: {text}")
        return text
    from reid.camtrap import import_package
    from reid.registry import Registry

    registry = Registry(url or None)
    try:
        with registry.session() as session:
            stats = import_package(
                session, package, decided_by=f"reid bulk {model_version(matcher)}", skip=skip
            )
    finally:
        registry.close()
    text = (
        f"{registry.url}: {stats.sightings} sightings, {stats.media} media, "
        f"{stats.individuals} individuals added"
    )
    if say:
        say(f"registry {text}")
    return text


def undecoded_observations(
    encounters: list[Encounter], results: dict[str, dict | None]
) -> frozenset[str]:
    """IDs of the source's Camtrap DP observations none of whose images decoded (a
    journal row lists its frames that failed under ``skipped``; an ``unreadable``
    encounter has them all there): they are no sighting of anything."""
    decoded: dict[str, bool] = {}
    for enc in encounters:
        r = results.get(enc.id)
        if r is None:
            continue
        for f in enc.frames:
            if f.observation:
                ok = f.key not in r["skipped"]
                decoded[f.observation] = decoded.get(f.observation, False) or ok
    return frozenset(o for o, ok in decoded.items() if not ok)


def write_outputs(
    run_dir: Path,
    source: Source,
    encounters: list[Encounter],
    rows: list[dict],
    found: list[Proposal],
    opts: BulkOptions,
    matcher,
    say=None,
) -> dict[str, str]:
    """encounters.csv, new_individuals.csv, the Camtrap DP package and the report."""
    proposed = {e: p for p in found for e in p.encounters}
    table = []
    for r in rows:
        p = proposed.get(r["id"])
        table.append(
            {
                "encounter": r["id"],
                "deployment": r["deployment"],
                "species": r["species"],
                "side": r["side"],
                "start": r["start"],
                "end": r["end"],
                "site": r["site"],
                "country": r["country"],
                "lat": "" if r["lat"] is None else f"{r['lat']:.6f}",
                "lon": "" if r["lon"] is None else f"{r['lon']:.6f}",
                "frames": len(r["frames"]),
                "media": "|".join(r["media"]),
                "decision": r["decision"],
                "individual": r["individual"] or "",
                "matched_side": r["matched_side"] or "",
                "photo_side": r.get("photo_side") or "",
                "probability": _p4(r["probability"]),
                "new_probability": _p4(r["new_probability"]),
                "verified": _yes_no(r.get("verified")),
                "proposed_individual": p.id if p else "",
                "candidates": "|".join(
                    f"{c['individual']}:{c['probability']:.4f}" for c in r["candidates"]
                ),
                "model_version": r["model_version"],
                "skipped": "|".join(f"{k}: {v}" for k, v in sorted(r["skipped"].items())),
                "located_boxes": "|".join(
                    f"{k}:{','.join(f'{v:.4f}' for v in box)}"
                    for k, box in sorted((r.get("located_boxes") or {}).items())
                ),
            }
        )
    out = {}
    write_csv(run_dir / "encounters.csv", ENCOUNTER_COLUMNS, table)
    out["encounters"] = str(run_dir / "encounters.csv")
    by_id = {r["id"]: r for r in rows}
    prop_rows = []
    for p in found:
        members = [by_id[e] for e in p.encounters]
        times = sorted(m["start"] for m in members if m["start"])
        prop_rows.append(
            {
                "proposed_individual": p.id,
                "species": p.species,
                "side": p.side,
                "encounters": len(members),
                "probability": "" if p.probability is None else f"{p.probability:.4f}",
                "first_seen": times[0] if times else "",
                "last_seen": times[-1] if times else "",
                "countries": "|".join(sorted({m["country"] for m in members if m["country"]})),
                "encounter_ids": "|".join(p.encounters),
            }
        )
    write_csv(run_dir / "new_individuals.csv", PROPOSAL_COLUMNS, prop_rows)
    out["new_individuals"] = str(run_dir / "new_individuals.csv")
    if source.camtrap:
        from reid.bulk.camtrap_out import write_filled_package

        out["camtrap_dp"] = str(
            write_filled_package(
                source.root,
                run_dir / "camtrap-dp",
                encounters,
                by_id,
                proposed,
                model_version(matcher),
            )
        )
    else:
        from reid.bulk.camtrap_out import write_season_package

        derived = write_season_package(
            run_dir / "camtrap-dp",
            encounters,
            by_id,
            proposed,
            model_version(matcher),
            title=f"bigcat-reid season {source.root.name}",
        )
        if derived.path is not None:
            out["camtrap_dp"] = str(derived.path)
        if derived.left_out:
            out["camtrap_dp_left_out"] = "; ".join(derived.left_out)
            for line in derived.left_out:
                if say:
                    say(f"camtrap-dp: left out {line}")
    if opts.report:
        from reid.bulk.report import write_report

        frames = {e.id: e.frames[0] for e in encounters}

        def thumbnail(eid: str):
            try:
                return load_capture(frames[eid])
            except ReidError:
                return None

        out["report"] = str(write_report(run_dir, table, found, model_version(matcher), thumbnail))
    return out


def _p4(value) -> str:
    return "" if value is None else f"{value:.4f}"


def _yes_no(value) -> str:
    """encounters.csv's ``verified``: yes, no (decided on the embedding alone), or empty
    (unreadable, or journalled by a version that did not record it)."""
    return "" if value is None else "yes" if value else "no"


def _atomic_text(path: Path, text: str) -> None:
    import os

    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
