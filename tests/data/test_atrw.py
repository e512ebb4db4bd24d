"""ATRW loaders: the plain re-ID test ground truth, the train list and its keypoints."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from reid.data.atrw import (
    KEYPOINT_NAMES,
    ATRWTestRecord,
    entity_sides,
    keypoints_bbox,
    keypoints_facing,
    read_atrw_keypoints,
    read_atrw_reid_list,
    read_atrw_test_plain,
    read_atrw_test_records,
    read_atrw_train,
)
from reid.data.records import BBox
from reid.errors import ManifestError

ENTRIES = [
    {"query": "sing", "entityid": 199, "frame": [23, 4, 657], "imgid": 0},
    {"query": "multi", "entityid": 235, "frame": [31, 4, 1089], "imgid": 4096},
    {"query": "multi", "entityid": -1, "frame": [17, 7, 120], "imgid": 4},
]


def write_json(path, data):
    path.write_text(json.dumps(data))
    return path


def test_test_plain(tmp_path):
    path = write_json(tmp_path / "gt_test_plain.json", ENTRIES)
    records = read_atrw_test_plain(path)
    assert records[0] == ATRWTestRecord(0, "sing", (23, 4), 657, 199)
    assert [r.filename for r in records] == ["000000.jpg", "004096.jpg", "000004.jpg"]
    assert [r.is_junk for r in records] == [False, False, True]

    images = read_atrw_test_records(path)
    assert [r.individual_id for r in images] == ["199", "235", None]
    assert images[1].path == tmp_path.resolve() / "004096.jpg"
    assert (images[1].species, images[1].side, images[1].camera_id) == ("tiger", "unknown", "31-4")
    assert images[1].frame == 1089


def test_test_plain_checks_images_only_when_given_a_folder(tmp_path):
    path = write_json(tmp_path / "gt_test_plain.json", ENTRIES)
    folder = tmp_path / "test"
    folder.mkdir()
    for name in ("000000.jpg", "004096.jpg"):
        (folder / name).write_bytes(b"")
    with pytest.raises(ManifestError, match=r"image .*test/000004\.jpg not found"):
        read_atrw_test_plain(path, image_dir=folder)
    (folder / "000004.jpg").write_bytes(b"")
    records = read_atrw_test_records(path, image_dir=folder)
    assert records[0].path == folder.resolve() / "000000.jpg"


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"query": "both"}, "record 1: imgid 4096: query 'both' is not one of sing, multi"),
        ({"frame": [1, 2]}, "record 1: imgid 4096: frame [1, 2] is not [a, b, frame_number]"),
        ({"entityid": "7"}, "record 1: imgid 4096: entityid '7' is not an integer >= -1"),
        ({"imgid": -5}, "record 1: imgid -5 is not a non-negative integer"),
        ({"imgid": 0}, "record 1: imgid 0 is already record 0"),
    ],
)
def test_test_plain_bad_record(tmp_path, change, fragment):
    entries = [dict(e) for e in ENTRIES]
    entries[1].update(change)
    path = write_json(tmp_path / "gt_test_plain.json", entries)
    with pytest.raises(ManifestError) as info:
        read_atrw_test_plain(path)
    assert str(info.value).startswith(f"{path}: {fragment}")


def test_test_plain_file_errors(tmp_path):
    with pytest.raises(ManifestError, match="JSON file not found"):
        read_atrw_test_plain(tmp_path / "gt_test_plain.json")
    bad = tmp_path / "bad.json"
    bad.write_text('[\n{"imgid": 0,\n')
    with pytest.raises(ManifestError, match=r"bad\.json:3: not valid JSON"):
        read_atrw_test_plain(bad)
    with pytest.raises(ManifestError, match="expected a JSON list"):
        read_atrw_test_plain(write_json(tmp_path / "d.json", {"a": 1}))
    with pytest.raises(ManifestError, match="missing query, frame"):
        read_atrw_test_plain(write_json(tmp_path / "e.json", [{"imgid": 1, "entityid": 2}]))
    with pytest.raises(ManifestError, match="has no records"):
        read_atrw_test_plain(write_json(tmp_path / "f.json", []))


def test_real_test_plain(atrw_test_plain):
    records = read_atrw_test_plain(atrw_test_plain)
    assert len(records) == 1764
    assert Counter(r.query for r in records) == {"sing": 701, "multi": 1063}
    assert len({r.imgid for r in records}) == 1764
    images = read_atrw_test_records(atrw_test_plain)
    assert len(images) == 1764
    assert {r.species for r in images} == {"tiger"}
    assert all(r.camera_id and r.frame is not None for r in images)


def keypoints(offset: float = 0.0) -> list[float]:
    flat = []
    for i in range(len(KEYPOINT_NAMES)):
        flat += [10.0 + 10 * i + offset, 50.0 + (i % 3) * 20, 2 if i < 12 else 0]
    return flat


def test_keypoints_bbox():
    kp = np.asarray(keypoints()).reshape(15, 3)
    box = keypoints_bbox(kp, margin=0.0)
    assert box == BBox(10.0, 50.0, 110.0, 40.0)  # only the 12 labelled points
    grown = keypoints_bbox(kp, margin=0.1)
    assert grown == BBox(0.0, 46.0, 10 + 110 + 11, 48.0)  # clipped at x=0
    kp[3:, 2] = 0
    assert keypoints_bbox(kp) is None  # too few labelled keypoints


def test_train_list_and_keypoints(tmp_path):
    (tmp_path / "reid_list_train.csv").write_text("0,002019.jpg\n0,002020.jpg\n\n7,000001.jpg\n")
    write_json(
        tmp_path / "reid_keypoints_train.json",
        {
            "002019.jpg": keypoints(),
            "000001.jpg": [keypoints(5)[i : i + 3] for i in range(0, 45, 3)],
        },
    )
    assert read_atrw_reid_list(tmp_path / "reid_list_train.csv") == [
        (0, "002019.jpg"),
        (0, "002020.jpg"),
        (7, "000001.jpg"),
    ]
    kps = read_atrw_keypoints(tmp_path / "reid_keypoints_train.json")
    assert kps["000001.jpg"].shape == (15, 3)
    records = read_atrw_train(tmp_path / "reid_list_train.csv", bbox_margin=0.1)
    assert [r.individual_id for r in records] == ["0", "0", "7"]
    assert records[0].bbox == keypoints_bbox(kps["002019.jpg"], margin=0.1)
    assert records[1].bbox is None  # no keypoints for it
    assert records[0].path == tmp_path.resolve() / "002019.jpg"
    # head left of the hips: facing left, the left flank; the entity's side covers the
    # photo without keypoints too
    assert [r.side for r in records] == ["left", "left", "left"]
    whole = read_atrw_train(tmp_path / "reid_list_train.csv")  # default: the whole photo
    assert all(r.bbox is None for r in whole)
    unsided = read_atrw_train(tmp_path / "reid_list_train.csv", sides=False)
    assert {r.side for r in unsided} == {"unknown"}


def test_official_layout_reads_images_from_train_folder(tmp_path, image_factory):
    (tmp_path / "reid_list_train.csv").write_text("3,000001.jpg\n")
    image_factory(tmp_path / "train" / "000001.jpg")
    (record,) = read_atrw_train(tmp_path / "reid_list_train.csv")
    assert record.path == (tmp_path / "train" / "000001.jpg").resolve()
    assert record.side == "unknown"  # no keypoints: one flank of unknown side


def mirrored(flat: list[float], width: float = 200.0) -> list[float]:
    out = list(flat)
    for i in range(0, len(out), 3):
        out[i] = width - out[i]
    return out


def test_keypoints_facing():
    kp = np.asarray(keypoints()).reshape(15, 3)
    assert keypoints_facing(kp) == "left"
    assert keypoints_facing(np.asarray(mirrored(keypoints())).reshape(15, 3)) == "right"
    no_head = kp.copy()
    no_head[[0, 1, 2], 2] = 0
    assert keypoints_facing(no_head) is None
    centre_only = kp.copy()
    centre_only[[7, 10, 13], 2] = 0
    centre_only[14] = [200.0, 60.0, 2]  # the centre, right of the head
    assert keypoints_facing(centre_only) == "left"
    outside = kp.copy()
    outside[[0, 1, 2], 0] = -50.0  # labelled outside the photo: not usable
    assert keypoints_facing(outside) is None


def test_entity_sides_majority_and_ties():
    left, right = keypoints(), mirrored(keypoints())
    kps = {n: np.asarray(v).reshape(15, 3) for n, v in
           {"a": left, "b": left, "c": right, "d": right, "e": left}.items()}  # fmt: skip
    rows = [(1, "a"), (1, "b"), (1, "c"), (2, "d"), (2, "e"), (3, "zz")]
    assert entity_sides(rows, kps) == {1: "left", 2: "unknown", 3: "unknown"}


def test_keypoints_outside_the_photo_give_no_impossible_box():
    # ATRW labels some keypoints at negative coordinates; the box used to come out with a
    # negative width (ValueError: bbox size -705.1x466.3 is not positive)
    kp = np.asarray(keypoints()).reshape(15, 3)
    kp[:10, 0] = -800.0
    box = keypoints_bbox(kp)
    assert box is None or (box.w > 0 and box.h > 0)
    kp[:, 0] = -800.0
    assert keypoints_bbox(kp) is None


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("entity_id,filename\n0,1.jpg\n", "reid_list_train.csv:1: expected 'entity_id,filename'"),
        ("0,1.jpg\n3\n", "reid_list_train.csv:2: expected 'entity_id,filename'"),
        ("0,1.jpg\n-2,2.jpg\n", "reid_list_train.csv:2: entity_id -2 is negative"),
        (
            "0,1.jpg\n1,1.jpg\n",
            "reid_list_train.csv:2: filename '1.jpg' is already listed on line 1",
        ),
        ("\n\n", "reid_list_train.csv: has no rows"),
    ],
)
def test_train_list_errors(tmp_path, text, fragment):
    path = tmp_path / "reid_list_train.csv"
    path.write_text(text)
    with pytest.raises(ManifestError, match=fragment.replace(".", r"\.")):
        read_atrw_reid_list(path)


def test_train_images_checked_when_given_a_folder(tmp_path):
    (tmp_path / "reid_list_train.csv").write_text("0,002019.jpg\n")
    with pytest.raises(ManifestError, match=r"image .*002019\.jpg not found"):
        read_atrw_train(tmp_path / "reid_list_train.csv", image_dir=tmp_path)


def test_bad_keypoints(tmp_path):
    path = write_json(tmp_path / "k.json", {"a.jpg": [1, 2, 3]})
    with pytest.raises(ManifestError, match=r"'a.jpg': keypoints are not 15 \[x, y, visibility\]"):
        read_atrw_keypoints(path)
