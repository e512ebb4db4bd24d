"""Maps and borders: the Natural Earth polygons, and a PNG with borders, points and tracks."""

from datetime import datetime

import numpy as np
import pytest
from PIL import Image

from reid.errors import ReidError
from reid.geo import country_at, country_contains, haversine_km
from reid.maps import draw_map
from reid.movements import MovementView
from reid.registry import SightingView


def test_country_contains_and_country_at():
    assert country_contains("NP", 27.5, 84.3)  # Chitwan
    assert not country_contains("IN", 27.5, 84.3)
    assert country_contains("in", 28.25, 81.15)  # Katarniaghat
    assert country_at(43.3, 133.5) == "RU" and country_at(0.0, -30.0) is None
    with pytest.raises(ReidError, match="'ZZ'"):
        country_contains("ZZ", 0, 0)


def test_haversine_one_degree_of_latitude():
    assert haversine_km(0, 0, 1, 0) == pytest.approx(111.19, abs=0.01)


def test_map_is_drawn(tmp_path):
    t = datetime(2025, 1, 1)
    view = SightingView("s1", "T-1", "tiger", "left", "confirmed", t, "NP", "bardia", None,
                        28.4, 81.3, "m1", "a.jpg", None)  # fmt: skip
    move = MovementView("T-1", "tiger", "NP", "bardia", t, 28.4, 81.3,
                        "IN", "katarniaghat", t, 28.25, 81.15, 22.0, 2.0)  # fmt: skip
    out = draw_map(tmp_path / "m.png", [view], [move], "test")
    pixels = np.asarray(Image.open(out).convert("RGB"))
    assert pixels.shape[0] > 200 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20
    # nothing to show: still a map, the borders of the tiger and leopard range
    empty = np.asarray(Image.open(draw_map(tmp_path / "e.png", [], [], "empty")).convert("RGB"))
    assert empty.shape[1] > 400 and len(np.unique(empty.reshape(-1, 3), axis=0)) > 20
