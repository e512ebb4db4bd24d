"""The API's response bodies (and JSON request bodies), every field documented."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

#: A time in UTC: the registry stores naive UTC; answers say so ("...Z").
Utc = Annotated[datetime, AfterValidator(lambda d: d if d.tzinfo else d.replace(tzinfo=UTC))]
Species = Literal["tiger", "leopard"]
#: Individual codes, wherever a caller names one (enrolment, decisions): one path segment.
CODE_PATTERN = r"^[A-Za-z0-9._:-]+$"
Side = Literal["left", "right", "unknown"]


class EvidenceOut(BaseModel):
    """One gallery image of a candidate and the keypoints that match it."""

    gallery_id: int = Field(description="Gallery vector id (GET /v1/gallery/{id}/image).")
    image_url: str = Field(description="Thumbnail of the gallery crop.")
    bbox: list[int] | None = Field(description="(x, y, w, h) of the crop in the gallery image.")
    global_score: float = Field(description="Cosine similarity of the embeddings.")
    inliers: int = Field(
        description="Keypoint matches consistent with one homography (RootSIFT, XFeat), or "
        "the matches LightGlue is confident of (ALIKED)."
    )
    query_points: list[list[float]] = Field(
        description="Matched keypoints (x, y) in pixels of the uploaded image."
    )
    gallery_points: list[list[float]] = Field(
        description="The corresponding keypoints (x, y) in pixels of the gallery image."
    )


class CandidateOut(BaseModel):
    """One flank of one known individual, ranked."""

    individual: str = Field(description="Individual code.")
    species: str = Field(description="tiger or leopard.")
    side: str = Field(description="The flank (left or right) that matched.")
    organisation: str = Field(description="Organisation that owns the gallery images.")
    global_score: float = Field(description="Best embedding cosine similarity.")
    local_score: float = Field(description="Best geometric inlier count.")
    fused_score: float = Field(description="Logit of P(same flank), the ranking score.")
    probability: float = Field(description="Calibrated P(same flank) from the two scores.")
    evidence: list[EvidenceOut] = Field(description="Best gallery images, best first.")
    refined: bool = Field(
        default=False,
        description="local_score was counted on all the keypoints the gallery keeps (an "
        "index enrolled with --refine: its first candidates are matched again).",
    )


class MatchOut(BaseModel):
    """The answer to a match: a decision to review, candidates and the new sighting."""

    sighting: str = Field(description="Code of the proposed sighting recorded for the photo.")
    review_url: str = Field(description="The review page of this sighting.")
    query_image_url: str = Field(description="Thumbnail of the uploaded photo.")
    decision: Literal["known", "new"] = Field(description="Known individual or a new one.")
    individual: str | None = Field(description="The individual, when known.")
    side: str | None = Field(description="The side that matched (unknown-side queries).")
    searched: list[str] = Field(
        default_factory=lambda: ["left", "right"],
        description="Flank sides whose gallery was searched: the side given, the side the "
        "photo shows when the model's side head was sure of it, or both.",
    )
    left_probability: float | None = Field(
        default=None,
        description="P(left flank) read from the photo, for a query of unknown side.",
    )
    box: list[int] | None = Field(
        default=None,
        description="(x, y, w, h) in the photo's pixels of what was matched: the box given, "
        "or the flank the model's flank head found (box_located); None: the whole photo.",
    )
    box_located: bool = Field(
        default=False, description="The box was found by the model, not given."
    )
    probability: float = Field(description="Calibrated P(the decision is right).")
    new_probability: float = Field(description="Calibrated P(a new individual).")
    candidates: list[CandidateOut] = Field(description="Ranked candidates, best first.")
    model_version: str = Field(description="Model release name and fingerprint.")


class Location(BaseModel):
    """Where: exact only for callers cleared for the owner's exact coordinates."""

    country: str = Field(description="ISO 3166-1 alpha-2 code.")
    site: str = Field(description="Site code.")
    lat: float = Field(description="Latitude (WGS 84), exact or a 0.25° cell centre.")
    lon: float = Field(description="Longitude (WGS 84), exact or a 0.25° cell centre.")
    exact: bool = Field(description="Whether lat/lon are exact (else generalised).")


class DecisionOut(BaseModel):
    """One entry of a sighting's decision trail."""

    action: str = Field(description="propose, confirm, reject, merge or split.")
    decided_by: str = Field(description="Who: an API key and organisation, or a user.")
    decided_at: Utc = Field(description="When (UTC).")
    reason: str | None = Field(description="Why, as given.")
    model_version: str | None = Field(description="The model behind a proposal.")


class SightingOut(BaseModel):
    """One animal on one photo."""

    code: str = Field(description="Sighting code.")
    individual: str | None = Field(description="Individual code (proposed or confirmed).")
    species: str = Field(description="tiger or leopard.")
    side: str = Field(description="left, right or unknown.")
    status: str = Field(description="proposed, confirmed or rejected.")
    captured_at: Utc = Field(description="Capture time (UTC).")
    organisation: str | None = Field(description="Owning organisation.")
    location: Location = Field(description="Where the photo was taken.")
    image_url: str = Field(description="Thumbnail of the photo.")
    box: list[float] | None = Field(description="(x, y, w, h) as fractions of the photo.")


class SightingDetailOut(SightingOut):
    """A sighting with its decision trail."""

    decisions: list[DecisionOut] = Field(description="The decision trail, oldest first.")


class DecisionIn(BaseModel):
    """A reviewer's decision on a proposed sighting."""

    action: Literal["confirm", "new", "reject"] = Field(
        description="confirm: it is `individual` (default: the one proposed); new: a new "
        "individual (code `individual`, or generated); reject: not usable."
    )
    individual: str | None = Field(
        None, min_length=1, max_length=128, pattern=CODE_PATTERN,
        description="Individual code: letters, digits and . _ : - (as in enrolment).",
    )  # fmt: skip
    reason: str | None = Field(None, max_length=2000, description="Why (kept in the trail).")
    enrol: bool = Field(
        False, description="Also add the photo to the gallery (confirm/new, known side)."
    )


class IndividualOut(BaseModel):
    """A known animal."""

    code: str = Field(description="Individual code.")
    species: str = Field(description="tiger or leopard.")
    sex: str | None = Field(description="female, male or unknown (null).")
    organisation: str | None = Field(description="Owning organisation.")
    first_seen: Utc | None = Field(description="First confirmed sighting (UTC).")
    last_seen: Utc | None = Field(description="Last confirmed sighting (UTC).")


class IndividualDetailOut(IndividualOut):
    """An individual with the sightings the caller may see."""

    sightings: list[SightingOut] = Field(description="Its sightings, oldest first.")


class MovementOut(BaseModel):
    """Two consecutive confirmed sightings of one individual in two countries."""

    individual: str = Field(description="Individual code.")
    species: str = Field(description="tiger or leopard.")
    start: Location = Field(description="Where it was seen before crossing.")
    end: Location = Field(description="Where it was seen after crossing.")
    from_time: Utc = Field(description="Time of the first sighting (UTC).")
    to_time: Utc = Field(description="Time of the second sighting (UTC).")
    distance_km: float = Field(
        description="Straight-line km; unless both ends are exact, between the ends as "
        "shown (cell centres), rounded to 10."
    )
    days: float = Field(description="Days between the sightings.")


class GalleryOut(BaseModel):
    """An enrolled gallery image."""

    gallery_id: int = Field(description="Gallery vector id.")
    individual: str = Field(description="Individual code.")
    species: str = Field(description="tiger or leopard.")
    side: str = Field(description="left or right.")
    organisation: str = Field(description="Owning organisation.")
    gallery_size: int = Field(description="Vectors in the gallery after enrolment.")
    recalibrating: bool = Field(
        False, description="The match calibration is being refitted in the background for "
        "the grown gallery (matches use the previous one until it is done)."
    )  # fmt: skip


class AgreementIn(BaseModel):
    """What the caller's organisation shares with a partner."""

    partner: str = Field(min_length=1, max_length=64, description="Partner organisation code.")
    share_match: bool = Field(True, description="Partner may match against our gallery.")
    share_sightings: bool = Field(
        False, description="Partner may see our sightings, individuals and movements (not "
        "implied by matching: ask for it)."
    )  # fmt: skip
    share_precise: bool = Field(
        False, description="Partner keys with the permission see our exact coordinates."
    )
    note: str | None = Field(None, max_length=2000, description="Reference of the agreement.")


class AgreementOut(BaseModel):
    """An agreement in force."""

    id: int = Field(description="Agreement id.")
    owner: str = Field(description="Organisation that shares.")
    partner: str = Field(description="Organisation it shares with.")
    share_match: bool = Field(description="Matching against the owner's gallery.")
    share_sightings: bool = Field(description="Seeing the owner's sightings.")
    share_precise: bool = Field(description="Exact coordinates for cleared partner keys.")
    note: str | None = Field(description="Reference.")
    created_at: Utc = Field(description="When (UTC).")


class AuditOut(BaseModel):
    """One audit log entry."""

    at: Utc = Field(description="When (UTC).")
    key_id: str | None = Field(description="The key (null: the command line).")
    organisation: str | None = Field(description="The key's organisation.")
    action: str = Field(description="What was done.")
    resource: str = Field(description="On what.")
    precise_location: bool = Field(description="Whether exact coordinates were read.")
    owner: str | None = Field(
        None, description="Whose exact coordinates were read (the key's own organisation, "
        "or a partner's: then the entry is in that organisation's log too)."
    )  # fmt: skip


class JobOut(BaseModel):
    """A bulk matching job."""

    id: str = Field(description="Job id.")
    state: Literal["queued", "running", "done", "failed"] = Field(description="Where it is.")
    submitted_at: Utc = Field(description="When (UTC).")
    frames: int = Field(description="Frames in the job (0 until read).")
    encounters: int = Field(description="Encounters (bursts) in the job.")
    done: int = Field(description="Encounters matched so far.")
    error: str | None = Field(description="Why it failed.")
    sightings: int = Field(
        0, description="Proposed sightings it recorded in the registry (encounters with a "
        "place), for the organisation's reviewers."
    )  # fmt: skip
    results_url: str | None = Field(description="Where the results are, when done.")


class EncounterOut(BaseModel):
    """One encounter of a finished bulk job."""

    encounter: str = Field(description="Encounter id.")
    frames: int = Field(description="Frames in the burst.")
    species: str = Field(description="Species.")
    side: str = Field(description="Side given.")
    start: str = Field(description="First frame time (ISO 8601).")
    decision: str = Field(description="known, new or unreadable.")
    individual: str = Field(description="Matched individual (known).")
    probability: str = Field(description="Calibrated P(decision right).")
    new_probability: str = Field(description="Calibrated P(new).")
    proposed_individual: str = Field(description="Proposed new individual (clustered).")


class JobResultsOut(BaseModel):
    """The results of a finished bulk job."""

    job: JobOut = Field(description="The job.")
    encounters: list[EncounterOut] = Field(description="Every encounter.")


class HealthOut(BaseModel):
    """Whether the service is ready."""

    status: Literal["ok"] = Field(description="ok when the registry answers.")
    matching: bool = Field(description="Whether a gallery index is loaded.")
    gallery_vectors: int = Field(description="Vectors in the gallery.")
    model_version: str | None = Field(description="Model release name and fingerprint.")
    version: str = Field(description="bigcat-reid version.")
