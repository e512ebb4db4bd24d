"""Season sources: Camtrap DP (relative boxes, tags), manifest, EXIF folder trees, errors."""

from datetime import UTC, datetime

import numpy as np
import pytest
from PIL import Image

from reid.bulk.sources import read_source, species_of
from reid.errors import ManifestError, ReidError


def test_camtrap_package_gives_one_capture_per_observation(season):
    src = read_source(season / "season")
    assert src.kind == "camtrap" and len(src.captures) == 24
    c = src.captures[0]
    assert c.bbox_relative and 0 < c.bbox.w <= 1 and c.observation and c.media
    assert c.side in ("left", "right") and c.country in ("RU", "CN")
    assert c.path.is_file()
    keys = [(c.deployment, c.captured_at) for c in src.captures]
    assert keys == sorted(keys)


def test_manifest_source_matches_the_package(season):
    a = read_source(season / "season.csv")
    b = read_source(season / "season")
    assert a.kind == "manifest"
    assert sorted(c.path for c in a.captures) == sorted(c.path for c in b.captures)
    assert not a.captures[0].bbox_relative and a.captures[0].bbox.w > 1


def test_exif_folder_tree(tmp_path):
    for i, (sec, off) in enumerate([(0, "+10:00"), (5, "+10:00")]):
        exif = Image.Exif()
        sub = exif.get_ifd(0x8769)
        sub[36867] = f"2024:01:02 03:04:{sec:02d}"
        sub[36881] = off
        path = tmp_path / "cam-07" / f"tiger_left_{i}.jpg"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path, exif=exif)
    src = read_source(tmp_path)
    assert src.kind == "exif" and [c.side for c in src.captures] == ["left", "left"]
    assert src.captures[0].captured_at == datetime(2024, 1, 1, 17, 4, 0, tzinfo=UTC)
    assert src.captures[0].deployment == "cam-07" and src.captures[0].species == "tiger"


def test_exif_tree_without_species_is_refused(tmp_path):
    path = tmp_path / "cam" / "img1.jpg"
    path.parent.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
    with pytest.raises(ManifestError, match="no species"):
        read_source(tmp_path)
    assert read_source(tmp_path, species="leopard").captures[0].captured_at is None


def test_bad_camtrap_box_names_file_and_line(season, tmp_path):
    import shutil

    pkg = tmp_path / "pkg"
    shutil.copytree(season / "season", pkg, ignore=shutil.ignore_patterns("media"))
    text = (pkg / "observations.csv").read_text().splitlines()
    cells = text[1].split(",")
    head = text[0].split(",")
    cells[head.index("bboxWidth")] = "1.5"
    text[1] = ",".join(cells)
    (pkg / "observations.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(ReidError, match=r"observations.csv:2: .*bboxWidth"):
        read_source(pkg)
    (pkg / "media.csv").unlink()
    with pytest.raises(ReidError, match="media.csv: missing"):
        read_source(pkg)


def test_species_names():
    assert species_of("Panthera tigris altaica") == "tiger"
    assert species_of("panthera pardus") == "leopard"
    assert species_of("Sus scrofa") is None
