"""Generalised locations: grid-cell centres, stable, and only for callers without permission."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reid.geo import haversine_km
from reid.privacy import (
    CELL_DEG,
    LOCAL_ADMIN,
    PUBLIC,
    Viewer,
    generalise,
    shown_distance_km,
)

lats = st.floats(-90, 90, allow_nan=False)
lons = st.floats(-180, 180, allow_nan=False)


@given(lats, lons)
def test_generalised_point_is_its_cell_centre(lat, lon):
    glat, glon = generalise(lat, lon)
    assert abs(glat - lat) <= CELL_DEG / 2 + 1e-9 and abs(glon - lon) <= CELL_DEG / 2 + 1e-9
    assert generalise(glat, glon) == (glat, glon)  # idempotent: nothing to average away
    assert (glat / CELL_DEG - 0.5) % 1 == 0


def test_same_cell_same_answer_and_permission_decides():
    assert generalise(27.51, 84.26) == generalise(27.74, 84.49) == (27.625, 84.375)
    assert PUBLIC.locate(27.51, 84.26) == (27.625, 84.375)
    assert LOCAL_ADMIN.locate(27.51, 84.26) == (27.51, 84.26)
    assert Viewer("NTNC", frozenset({"researcher"})).locate(27.51, 84.26) == (27.625, 84.375)
    ends = (27.625, 84.375), (27.625, 84.625)  # cell centres 24.6 km apart
    assert PUBLIC.distance_km(23.4, *ends) == 20.0
    assert LOCAL_ADMIN.distance_km(23.44, *ends) == 23.4  # cleared: the recorded distance
    assert PUBLIC.uncertainty_m > 10_000 and LOCAL_ADMIN.uncertainty_m is None


def test_a_hidden_end_leaves_no_trace_in_the_distance():
    """A caller places its own end exactly; the other camera is hidden in its cell. The
    recorded distance, even rounded to 10 km, flips at a known radius from the hidden
    camera (an API probe triangulated one to 58 m that way). The distance shown is a
    function of the ends as shown: moving the hidden camera inside its cell, across
    that radius, changes nothing."""
    mine = (28.0, 81.375)
    near, far = (28.30, 81.30), (28.49, 81.49)
    assert generalise(*near) == generalise(*far)
    km = [haversine_km(*mine, *p) for p in (near, far)]
    assert round(km[0] / 10) != round(km[1] / 10)  # the recorded distances round apart
    shown = [
        shown_distance_km(k, mine, generalise(*p), exact=False)
        for k, p in zip(km, (near, far), strict=True)
    ]
    cell = generalise(*near)
    assert shown[0] == shown[1] == float(round(haversine_km(*mine, *cell) / 10) * 10)
    assert shown_distance_km(km[0], mine, near, exact=True) == round(km[0], 1)


@pytest.mark.parametrize(
    "code",
    ["cam_27.5123_84.2611", "cam-27.6-84.3", "valmiki_27_4387_84_1942", "27-5123-84-2611",
     "N27d30m44s_E84d15m40s", "27°30'44\"N", "waterhole N27.6271 E84.3388",
     "x_27_4387:site-0123456789"],
)  # fmt: skip
def test_codes_that_may_spell_a_position_are_opaque_to_a_generalised_viewer(code):
    from reid.privacy import LOCAL_ADMIN, PUBLIC, may_hold_position

    assert may_hold_position(code)
    shown = PUBLIC.shown_code(code, "site")
    assert shown.startswith("site-") and not any(ch in shown for ch in ".°_ ")
    assert PUBLIC.shown_code(code, "site") == shown  # stable within the process
    assert PUBLIC.shown_code(code, "camera") != shown
    assert LOCAL_ADMIN.shown_code(code) == code


@pytest.mark.parametrize("code", ["bardia-1", "site-NPO", "katarniaghat-1", "NPO:trail",
                                  "NPO:NP:site-3f9a0c1234", "cam-12", "cam-2023-001",
                                  "job-3f2a7d3e91c04b55-dep-1", "3f2a9c01-CN-CH-01b",
                                  "s1-KNP-C12@20240102T030405Z", None])  # fmt: skip
def test_names_without_a_position_are_shown_as_they_are(code):
    from reid.privacy import PUBLIC

    assert PUBLIC.shown_code(code) == code


def test_a_generalised_viewer_sees_no_file_path():
    from reid.privacy import LOCAL_ADMIN, PUBLIC

    path = "/season/cam_27.5123_84.2611/IMG_0001.JPG"
    assert PUBLIC.shown_path(path, "M-7") == "media/M-7.JPG"
    assert LOCAL_ADMIN.shown_path(path, "M-7") == path
