"""Service configuration: environment variables ``REID_SERVE_*`` or an env file.

Every field can be set as ``REID_SERVE_<FIELD>`` (e.g. ``REID_SERVE_INDEX=/srv/gallery``)
or in the file named by ``$REID_SERVE_ENV_FILE`` (default ``.env`` in the working
directory, if present). The registry location follows the rest of the package
(``$REID_DATABASE_URL``, else the SQLite file in the data home) unless ``database_url``
is given.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from reid.images import MAX_BYTES, MAX_PIXELS
from reid.paths import data_home
from reid.side import DEFAULT_SIDE_THRESHOLD


class Settings(BaseSettings):
    """What the service serves and its limits."""

    model_config = SettingsConfigDict(
        env_prefix="REID_SERVE_",
        env_file=os.environ.get("REID_SERVE_ENV_FILE", ".env"),
        extra="ignore",
    )

    index: Path | None = Field(
        None, description="Gallery index folder (reid enroll); without it /v1/match answers 503."
    )
    model: Path | None = Field(
        None, description="Model release (default: the index's model, else the shipped one)."
    )
    database_url: str | None = Field(
        None, description="Registry URL (default: $REID_DATABASE_URL or the data-home SQLite)."
    )
    media_dir: Path = Field(
        default_factory=lambda: data_home() / "media",
        description="Where uploaded photos are kept (content-addressed by SHA-256).",
    )
    jobs_dir: Path = Field(
        default_factory=lambda: data_home() / "jobs", description="Bulk job folders."
    )
    device: str = Field("cpu", description="cpu or cuda.")
    max_upload_bytes: int = Field(
        min(MAX_BYTES, 20_000_000), ge=1, description="Largest image upload accepted."
    )
    max_pixels: int = Field(MAX_PIXELS, ge=1, description="Most pixels an image may claim.")
    max_job_bytes: int = Field(500_000_000, ge=1, description="Largest bulk job upload.")
    rate_limit_per_minute: float = Field(
        120.0, gt=0, description="Sustained requests per minute per API key."
    )
    rate_limit_burst: int = Field(30, ge=1, description="Requests a key may make at once.")
    auth_failures_per_minute: float = Field(
        10.0, gt=0, description="Unknown or revoked keys (and review sessions) accepted per "
        "minute from one client address; beyond, every request from it is a 429 for a while."
    )  # fmt: skip
    auth_failure_burst: int = Field(
        20, ge=1, description="Failed key attempts one address may make at once."
    )
    trusted_origins: list[str] = Field(
        default_factory=list, description="Origins (https://host[:port]) besides the request's "
        "own Host that the review page accepts forms from: the public address when a reverse "
        "proxy rewrites Host."
    )  # fmt: skip
    top: int = Field(5, ge=1, le=50, description="Candidates returned by default.")
    match_workers: int = Field(
        2, ge=1, description="Matches computed at once (the rest queue; CPU-bound work)."
    )
    population_workers: int = Field(
        1, ge=1, description="Population fits (GET /v1/population) computed at once; "
        "another request meanwhile gets 503 with Retry-After (CPU- and memory-bound work)."
    )  # fmt: skip
    population_max_work: int = Field(
        50_000_000, ge=1, description="The most mask cells x detectors x occasions one "
        "population fit may have (its time and memory grow with it; more is a 422). "
        "50 million is about a minute on one core."
    )  # fmt: skip
    thumbnail_px: int = Field(480, ge=32, le=2048, description="Longer side of thumbnails.")
    recalibrate: bool = Field(
        True, description="Refit the match calibration in the background after enrolments "
        "that changed the gallery enough (see serve/calibration.py)."
    )  # fmt: skip
    recalibrate_growth: float = Field(
        0.10, ge=0, description="Refit when the flanks with two or more images grew by this "
        "fraction since the last fit."
    )  # fmt: skip
    recalibrate_small: int = Field(
        50, ge=0, description="Below this many such flanks at the last fit, refit whenever "
        "one more is eligible."
    )  # fmt: skip
    calibration_sample: int = Field(
        1000, ge=2, description="Gallery images used as queries by a refit (as reid enroll)."
    )
    side_threshold: float = Field(
        DEFAULT_SIDE_THRESHOLD, ge=0.5, le=1.0,
        description="A photo of unknown side searches only the side it shows when the model's "
        "side head gives that side at least this probability; 1: always both sides.",
    )  # fmt: skip
    locate: bool = Field(
        True, description="Crop a photo that arrives without a box to the flank that the "
        "model's flank head finds, when the gallery's photos were cropped to boxes (no effect "
        "for a model without one); false: match the whole photo.",
    )  # fmt: skip
