"""Generalised locations: grid-cell centres, stable, and only for callers without permission."""

from hypothesis import given
from hypothesis import strategies as st

from reid.privacy import CELL_DEG, LOCAL_ADMIN, PUBLIC, Viewer, generalise

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
    assert PUBLIC.distance_km(23.4) == 20.0 and LOCAL_ADMIN.distance_km(23.44) == 23.4
    assert PUBLIC.uncertainty_m > 10_000 and LOCAL_ADMIN.uncertainty_m is None
