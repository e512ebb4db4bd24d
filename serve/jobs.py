"""Bulk jobs of the API: a Camtrap DP package (zip) or a list of images, matched by the
season runner (:func:`reid.bulk.run_bulk`) in a background worker, one job at a time.

A job is a folder ``JOBS_DIR/<id>/``: ``job.json`` (owner, state, counts, error),
``input/`` (the upload, unpacked) and ``run/`` (the season run: journal, outputs).
Progress is the number of encounters in the run's journal. A job belongs to its
organisation; nobody else can see it. Jobs survive a restart: queued and running ones
are queued again and the run resumes from its journal.
"""

from __future__ import annotations

import json
import os
import queue
import re
import threading
import uuid
import zipfile
from datetime import UTC, datetime
from pathlib import Path

from fastapi import UploadFile

from reid.errors import ReidError
from serve.problems import Problem

JOB_FILE = "job.json"
ZIP_MEMBERS = 100_000


class JobRunner:
    """Keeps job folders and runs them in one worker thread."""

    def __init__(self, root: Path, state) -> None:
        self.root = Path(root)
        self.state = state
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        if self.root.is_dir():
            for p in sorted(self.root.iterdir()):
                job = self._read(p.name)
                if job and job["state"] in ("queued", "running"):
                    self._queue.put(p.name)

    # -- submission -----------------------------------------------------------------

    def submit(self, organisation: str, files: list[UploadFile], species: str | None,
               max_bytes: int, key_id: str | None = None) -> dict:  # fmt: skip
        """Unpack the upload into a new job folder and queue it; 4xx for a bad upload."""
        job_id = uuid.uuid4().hex[:16]
        folder = self.root / job_id
        inbox = folder / "input"
        inbox.mkdir(parents=True)
        try:
            total = 0
            if len(files) == 1 and (files[0].filename or "").lower().endswith(".zip"):
                total = _unzip(files[0], inbox, max_bytes)
            else:
                sub = inbox / (species or "")
                sub.mkdir(parents=True, exist_ok=True)
                for n, f in enumerate(files):
                    name = Path(f.filename or f"image-{n}.jpg").name
                    if not name or name.startswith("."):
                        raise Problem(422, f"file {n}: bad name {f.filename!r}", field="files")
                    data = f.file.read(max_bytes + 1 - total)
                    total += len(data)
                    if total > max_bytes:
                        raise Problem(413, f"the job is over {max_bytes:,} bytes", field="files",
                                      kind="upload-too-large")  # fmt: skip
                    (sub / f"{n:05d}-{name}").write_bytes(data)
            from reid.bulk.sources import read_source

            try:
                source = read_source(_source_root(inbox), species=species)
            except ReidError as e:
                raise Problem(422, self.public(str(e), job_id), field="files") from None
            if not source.captures:
                raise Problem(422, "the job holds no tiger or leopard images", field="files")
            root = inbox.resolve()
            for c in source.captures:  # a package's filePath may not name the server's files
                if not Path(c.path).resolve().is_relative_to(root):
                    raise Problem(422, f"media file {self.public(str(c.path), job_id)!r} is "
                                  "not in the upload: a package's filePath must be a path "
                                  "inside it", field="files")  # fmt: skip
        except BaseException:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
            raise
        job = {
            "id": job_id, "organisation": organisation, "state": "queued",
            "submitted_at": datetime.now(UTC).replace(tzinfo=None).isoformat(),
            "frames": len(source.captures), "encounters": 0, "error": None, "species": species,
            "key_id": key_id, "sightings": 0,
        }  # fmt: skip
        self._write(job)
        self._queue.put(job_id)
        self._start()
        return job

    # -- reading --------------------------------------------------------------------

    def get(self, job_id: str, organisation: str) -> dict:
        """The job, or 404 when absent or another organisation's."""
        job = self._read(job_id) if job_id.isalnum() else None
        if job is None or job["organisation"] != organisation:
            raise Problem(404, f"no job {job_id!r}", field="job_id", kind="not-found")
        job["done"] = self._done(job_id)
        return job

    def results(self, job_id: str) -> list[dict]:
        import csv

        path = self.root / job_id / "run" / "encounters.csv"
        with path.open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    def _done(self, job_id: str) -> int:
        from reid.bulk.journal import JOURNAL_FILE

        path = self.root / job_id / "run" / JOURNAL_FILE
        try:
            with path.open("rb") as f:
                return max(0, sum(1 for _ in f) - 1)  # the first line is the header
        except FileNotFoundError:
            return 0

    def _read(self, job_id: str) -> dict | None:
        try:
            return json.loads((self.root / job_id / JOB_FILE).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None

    def _write(self, job: dict) -> None:
        path = self.root / job["id"] / JOB_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(job, indent=1), encoding="utf-8")
        os.replace(tmp, path)
        counts: dict[str, int] = {}
        for p in self.root.iterdir():
            j = self._read(p.name)
            if j:
                counts[j["state"]] = counts.get(j["state"], 0) + 1
        for s in ("queued", "running", "done", "failed"):
            self.state.metrics.jobs.labels(s).set(counts.get(s, 0))

    # -- the worker -----------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="reid-jobs", daemon=True)
                self._thread.start()

    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None:
                return
            job = self._read(job_id)
            if job is None:
                continue
            job["state"] = "running"
            self._write(job)
            try:
                summary = self._run(job)
                sightings = self._register(job)
                job.update(state="done", encounters=summary.encounters, frames=summary.frames,
                           sightings=sightings)  # fmt: skip
            except Exception as e:  # a job's failure is the job's, not the server's
                text = str(e).splitlines()[0] if str(e) else type(e).__name__
                job.update(state="failed", error=self.public(text, job_id))
            self._write(job)

    def _run(self, job: dict):
        from reid.bulk import BulkOptions, run_bulk

        folder = self.root / job["id"]
        settings = self.state.settings
        opts = BulkOptions(model=settings.model, device=settings.device, species=job["species"],
                           side_threshold=settings.side_threshold, locate=settings.locate,
                           show_progress=False, report=False)  # fmt: skip
        return run_bulk(_source_root(folder / "input"), settings.index, folder / "run", opts)

    def _register(self, job: dict) -> int:
        """Load the run's Camtrap DP package (a package upload, filled; or derived from
        images with coordinates) into the registry as *proposed* sightings of the job's
        organisation, as ``reid bulk --registry`` does, but with every identifier mapped
        into that organisation: the package's own site, deployment, media and observation
        IDs are not used (they could name another organisation's rows), sites are the
        organisation's own at those coordinates (opaque codes), and a matched individual
        is linked only when the caller may see it. Loading twice adds nothing."""
        from reid.camtrap import _media_location, _parse_tags, read_package, species_of
        from reid.geo import country_at
        from reid.registry import add_media, add_sighting, ensure_deployment
        from reid.registry.access import ApiKey
        from reid.registry.models import Media
        from serve.access import _caller_of, scope_of
        from serve.records import site_at, visible_individual

        package = self.root / job["id"] / "run" / "camtrap-dp"
        if not job.get("key_id") or not (package / "datapackage.json").is_file():
            return 0
        _descriptor, tables = read_package(package)
        prefix = f"job-{job['id']}"
        n = 0
        with self.state.registry.session() as s:
            from sqlalchemy import select

            key = s.scalar(select(ApiKey).where(ApiKey.key_id == job["key_id"]))
            if key is None:
                return 0
            caller = _caller_of(key)
            scope = scope_of(s, caller)
            if s.scalar(select(Media.id).where(Media.code.like(f"{prefix}-%")).limit(1)):
                return int(job.get("sightings") or 0)  # loaded before (a resumed job)
            deps = {}
            for i, r in enumerate(tables["deployments"]):
                lat, lon = r["latitude"], r["longitude"]
                country = country_at(lat, lon)
                if country is None:
                    continue
                site = site_at(s, caller, country, lat, lon)
                deps[r["deploymentID"]] = ensure_deployment(s, f"{prefix}-dep-{i}", site, lat,
                                                            lon)  # fmt: skip
            media = {}
            for i, r in enumerate(tables["media"]):
                dep = deps.get(r["deploymentID"])
                path = Path(_media_location(package, r["filePath"])).resolve()
                if dep is None or not path.is_relative_to((self.root / job["id"]).resolve()):
                    continue  # no place, or a file outside the job (never the server's)
                media[r["mediaID"]] = add_media(s, dep, path, r["timestamp"],
                                                code=f"{prefix}-med-{i}",
                                                mediatype=r["fileMediatype"])  # fmt: skip
            who = f"{caller.who} (bulk job {job['id']})"
            for r in tables["observations"]:
                species = species_of(r.get("scientificName"))
                if r["observationType"] != "animal" or species is None:
                    continue
                if r["mediaID"] not in media:
                    continue
                tags = _parse_tags(r.get("observationTags") or "")
                ind, said = None, r.get("individualID")
                if said:
                    ind = visible_individual(s, scope, said)
                    if ind is not None and ind.species != species:
                        ind = None
                box = (r.get("bboxX"), r.get("bboxY"), r.get("bboxWidth"), r.get("bboxHeight"))
                side = tags.get("side", "unknown")
                add_sighting(
                    s, media[r["mediaID"]], species,
                    side=side if side in ("left", "right") else "unknown",
                    box=None if any(v is None for v in box) else box, individual=ind,
                    status="proposed", decided_by=who,
                    reason=f"bulk job {job['id']}: {said or 'no individual'} "
                           f"({r.get('classifiedBy') or 'matcher'})",
                )  # fmt: skip
                n += 1
        return n

    def public(self, text: str, job_id: str) -> str:
        """An error message as the job's owner may see it: paths inside the upload as the
        user named them (``pkg/datapackage.json``, ``a.jpg``), any other server path
        reduced to its file name."""
        settings = self.state.settings
        inbox = self.root / job_id / "input"
        for prefix in (inbox, inbox.resolve()):
            text = text.replace(f"{prefix}/", "").replace(str(prefix), ".")
        run = self.root / job_id / "run"
        for prefix in (run, run.resolve()):
            text = text.replace(str(prefix), "<results>")
        known = [self.root, settings.index, settings.model, settings.media_dir]
        for prefix in sorted({str(p) for p in known if p} | {str(Path(p).resolve()) for p in
                              known if p}, key=len, reverse=True):  # fmt: skip
            text = text.replace(prefix, "<server>")
        # images of a list upload are kept as NNNNN-name: give back the name
        text = re.sub(r"(^|[\s'\"/(])\d{5}-(?=[^\s/'\"]+)", r"\1", text)
        # any other absolute path: its last part only
        return re.sub(r"(?<![\w.<>-])(?:/[^\s'\":/]+)+/([^\s'\":/]+)", r"\1", text)

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=5)


def _source_root(inbox: Path) -> Path:
    """A Camtrap DP package's folder (the one holding datapackage.json), else the inbox."""
    found = sorted(inbox.rglob("datapackage.json"), key=lambda p: len(p.parts))
    return found[0].parent if found else inbox


def _unzip(upload: UploadFile, into: Path, max_bytes: int) -> int:
    """Unpack a zip safely: no paths outside ``into``, no links, at most ``max_bytes``."""
    try:
        archive = zipfile.ZipFile(upload.file)
    except zipfile.BadZipFile:
        raise Problem(422, f"{upload.filename}: not a zip file", field="files") from None
    infos = archive.infolist()
    if len(infos) > ZIP_MEMBERS:
        raise Problem(413, f"the zip has over {ZIP_MEMBERS:,} members", field="files")
    if sum(i.file_size for i in infos) > max_bytes:
        raise Problem(413, f"the zip unpacks to over {max_bytes:,} bytes", field="files",
                      kind="upload-too-large")  # fmt: skip
    root = into.resolve()
    total = 0
    for info in infos:
        target = (into / info.filename).resolve()
        if not target.is_relative_to(root) or info.filename.startswith("/"):
            raise Problem(422, f"zip member {info.filename!r} points outside the package",
                          field="files")  # fmt: skip
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(info) as src, target.open("wb") as dst:
            while block := src.read(1 << 20):
                total += len(block)
                if total > max_bytes:
                    raise Problem(413, f"the zip unpacks to over {max_bytes:,} bytes",
                                  field="files", kind="upload-too-large")  # fmt: skip
                dst.write(block)
    return total
