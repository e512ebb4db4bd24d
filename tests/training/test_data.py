"""Flank identities, the decoded-image cache, and the training records."""

import os
from pathlib import Path

import numpy as np

from reid.data.load import load_catalogue
from reid.data.records import ImageRecord
from reid.embed import letterbox, load_record_image
from reid.presets import PRESETS, SynthPreset
from training.config import DataConfig
from training.data import ImageCache, cache_size, flank_identities, load_records


def rec(ind, side, name="x"):
    return ImageRecord(Path(f"/x/{ind}/{side}_{name}.jpg"), ind, "tiger", side)


def test_the_two_flanks_of_an_animal_are_two_classes():
    records = [
        rec("T2", "left"),
        rec("T1", "right"),
        rec("T1", "left", "a"),
        rec("T1", "left", "b"),
        rec("T1", "unknown"),  # could be either flank: does not train
        rec(None, "left"),  # unidentified: does not train
    ]
    kept, labels, classes = flank_identities(records)
    assert classes == [("T1", "left"), ("T1", "right"), ("T2", "left")]
    assert [(r.individual_id, r.side) for r in kept] == [
        ("T2", "left"),
        ("T1", "right"),
        ("T1", "left"),
        ("T1", "left"),
    ]
    assert labels.tolist() == [2, 1, 0, 0]


def test_an_individual_known_only_as_a_flank_of_unknown_side_trains_as_one_class():
    # ATRW's entities are flanks without a side label: each is one class
    records = [rec("E7", "unknown", "a"), rec("E7", "unknown", "b"), rec("E9", "unknown"),
               rec("T1", "left"), rec("T1", "unknown")]  # fmt: skip
    kept, labels, classes = flank_identities(records, unsided_flanks=True)
    assert classes == [("E7", "unknown"), ("E9", "unknown"), ("T1", "left")]
    assert labels.tolist() == [0, 0, 1, 2]
    # off by default: in an animal catalogue an unsided individual could be two flanks
    _, _, default = flank_identities(records)
    assert default == [("T1", "left")]


def test_cache_in_memory_and_on_disk_hold_the_same_letterboxed_images(tiny_catalogue, tmp_path):
    records = load_catalogue(tiny_catalogue)[:4]
    size = cache_size((32, 64), 1.15)
    assert size == (37, 74)
    fill = [124, 116, 104]
    memory = ImageCache(records, size, fill).load(workers=2)
    assert memory.shape == (4, 37, 74, 3) and memory.dtype == np.uint8
    expected = letterbox(load_record_image(records[2], size), size, fill)
    assert np.array_equal(memory[2], expected)

    disk = ImageCache(records, size, fill, tmp_path / "cache")
    assert not disk.exists()
    first = disk.load(workers=1)
    assert disk.exists() and isinstance(first, np.memmap)
    assert np.array_equal(np.asarray(first), memory)
    assert len(list((tmp_path / "cache").iterdir())) == 1  # no temporary file left


def test_cache_key_follows_the_files_and_the_geometry(tiny_catalogue, tmp_path):
    records = load_catalogue(tiny_catalogue)[:2]
    cache = ImageCache(records, (37, 74), [0, 0, 0], tmp_path)
    key = cache.key()
    assert ImageCache(records, (37, 74), [0, 0, 0], tmp_path).key() == key
    assert ImageCache(records, (40, 80), [0, 0, 0], tmp_path).key() != key
    assert ImageCache(records, (37, 74), [1, 1, 1], tmp_path).key() != key
    assert ImageCache(records[:1], (37, 74), [0, 0, 0], tmp_path).key() != key
    st = os.stat(records[0].path)
    os.utime(records[0].path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    try:
        assert cache.key() != key  # a touched image is decoded again
    finally:
        os.utime(records[0].path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_synthetic_preset_is_rendered_once(tmp_path, monkeypatch):
    preset = SynthPreset("tiny-test", ("leopard",), 1, 1, 11, "flank", "tests")
    monkeypatch.setitem(PRESETS, preset.name, preset)
    data = DataConfig(synthetic="tiny-test", synthetic_dir=str(tmp_path))
    records = load_records(data, workers=1, show_progress=False)
    assert len(records) == 2 and {r.side for r in records} == {"left", "right"}
    manifest = tmp_path / "tiny-test" / "manifest.csv"
    stamp = manifest.stat().st_mtime_ns
    assert load_records(data, generate=False) == records
    assert manifest.stat().st_mtime_ns == stamp
