"""Bulk jobs: submit a Camtrap DP package or images, poll progress, fetch results."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, UploadFile

from serve.access import audit
from serve.deps import CallerScope, Contributor, DbSession, State, Viewer
from serve.problems import COMMON, Problem, responses
from serve.schemas import EncounterOut, JobOut, JobResultsOut

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


def _out(job: dict) -> JobOut:
    return JobOut(
        id=job["id"], state=job["state"], submitted_at=job["submitted_at"],
        frames=job.get("frames", 0), encounters=job.get("encounters", 0),
        done=job.get("done", 0), error=job.get("error"), sightings=job.get("sightings", 0),
        results_url=f"/v1/jobs/{job['id']}/results" if job["state"] == "done" else None,
    )  # fmt: skip


@router.post("", response_model=JobOut, status_code=202,
             responses=responses(*COMMON, 413, 503))  # fmt: skip
def submit(
    state: State,
    session: DbSession,
    caller: Contributor,
    scope: CallerScope,
    files: Annotated[
        list[UploadFile],
        File(description="One .zip of a Camtrap DP package, or the images of a season."),
    ],
    species: Annotated[
        Literal["tiger", "leopard"] | None,
        Form(description="Species of images whose folder or file name does not say."),
    ] = None,
) -> JobOut:
    """Queue a season for matching. A job matches against the whole gallery, so it is
    accepted only when every organisation in the gallery shares matching with the
    caller's (or is it). When done, its encounters with a place (a Camtrap DP package,
    or images with GPS coordinates) are recorded as *proposed* sightings of the caller's
    organisation, at its own sites, for its reviewers (``sightings`` counts them)."""
    if state.matcher is None:
        raise Problem(503, "no gallery index is loaded: set REID_SERVE_INDEX", kind="no-index")
    owners = {e.organisation for e in state.matcher.index.entries().values()}
    if not owners <= scope.match:
        raise Problem(403, "bulk jobs match against the whole gallery, and some of it is not "
                      "shared with your organisation: match photos one by one with /v1/match",
                      kind="gallery-not-shared")  # fmt: skip
    job = state.jobs.submit(caller.organisation, files, species, state.settings.max_job_bytes,
                            key_id=caller.key_id)  # fmt: skip
    audit(session, caller, "job.submit", f"job:{job['id']}", detail={"frames": job["frames"]})
    return _out({**job, "done": 0})


@router.get("/{job_id}", response_model=JobOut, responses=responses(*COMMON, 404))
def status(job_id: str, state: State, caller: Viewer) -> JobOut:
    """Where a job of the caller's organisation is: queued, running (done of encounters),
    done or failed."""
    return _out(state.jobs.get(job_id, caller.organisation))


@router.get("/{job_id}/results", response_model=JobResultsOut,
            responses=responses(*COMMON, 404, 409))  # fmt: skip
def results(job_id: str, state: State, caller: Viewer) -> JobResultsOut:
    """Every encounter of a finished job with its decision."""
    job = state.jobs.get(job_id, caller.organisation)
    if job["state"] != "done":
        raise Problem(409, f"job {job_id} is {job['state']}, not done", field="job_id",
                      kind="job-not-done")  # fmt: skip
    fields = EncounterOut.model_fields
    rows = [EncounterOut(**{k: r.get(k, "") for k in fields} | {"frames": int(r["frames"])})
            for r in state.jobs.results(job_id)]  # fmt: skip
    return JobResultsOut(job=_out(job), encounters=rows)
