"""A tiny two-country world for registry tests: Nepal and India either side of a border."""

from __future__ import annotations

from datetime import datetime, timedelta

from reid.registry import (
    add_individual,
    add_media,
    add_sighting,
    ensure_deployment,
    ensure_organisation,
    ensure_site,
)

T0 = datetime(2025, 1, 1, 6, 0)


def world(s):
    """Two organisations, a site in Nepal (Bardia) and one in India (Katarniaghat)."""
    np_org = ensure_organisation(s, "DNPWC", country="NP", name="Dept. of National Parks")
    in_org = ensure_organisation(s, "UPFD", country="IN", name="UP Forest Department")
    bardia = ensure_site(s, "bardia-1", "NP", 28.40, 81.30, "Bardia NP", np_org)
    katarn = ensure_site(s, "katarniaghat-1", "IN", 28.25, 81.15, "Katarniaghat WLS", in_org)
    return {
        "np": np_org,
        "in": in_org,
        "NP": ensure_deployment(s, "dep-np", bardia, 28.4012, 81.3021, camera_id="c1"),
        "IN": ensure_deployment(s, "dep-in", katarn, 28.2533, 81.1478, camera_id="c2"),
    }


def sight(s, w, individual, country, day, status="confirmed", side="left", code=None):
    """A sighting of ``individual`` at the ``country`` camera on day ``day`` after T0."""
    media = add_media(s, w[country], f"img/{country}-{day}.jpg", T0 + timedelta(days=day))
    return add_sighting(
        s, media, individual.species, side=side, individual=individual, status=status,
        decided_by="tester", box=(0.1, 0.2, 0.5, 0.4), code=code,
    )  # fmt: skip


def tiger(s, code, org=None):
    """A new tiger."""
    return add_individual(s, code, "tiger", organisation=org)
