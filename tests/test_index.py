"""Gallery index: exact vs approximate search, filters, edits, atomic saves, refusals."""

import os

import faiss
import numpy as np
import pytest

from reid.errors import ReidError
from reid.index import GalleryEntry, GalleryIndex, is_index

FP = "a" * 64
OTHER = "b" * 64


def clustered(n, dim=32, individuals=200, noise=0.35, seed=0):
    """Unit vectors around one centre per individual, like embeddings of a catalogue."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(individuals, dim))
    labels = rng.integers(0, individuals, n)
    x = centres[labels] + noise * rng.normal(size=(n, dim)) * np.sqrt(1 / dim) * 8
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), labels


def entries(labels, side="left", species="tiger", org="park-a"):
    return [
        GalleryEntry(f"img{i}.jpg", f"T{lab}", species, side, org) for i, lab in enumerate(labels)
    ]


def test_approximate_index_agrees_with_exact_search():
    x, labels = clustered(6000)
    queries, _ = clustered(200, seed=1)
    exact = GalleryIndex.create(FP, 32)  # default threshold: stays exact
    approx = GalleryIndex.create(FP, 32, approximate_above=1000, nprobe=32)  # of 64 lists
    exact.add(x, entries(labels))
    approx.add(x, entries(labels))
    assert exact.partitions()[("tiger", "left")]["approximate"] is False
    assert approx.partitions()[("tiger", "left")]["approximate"] is True
    # the exact index is faiss's IndexFlatIP: check it against brute force first
    brute = np.argsort(-(queries @ x.T), axis=1)[:, :10]
    e = exact.search(queries, 10)
    assert [[h.id for h in row] for row in e] == brute.tolist()
    a = approx.search(queries, 10)
    recall = np.mean(
        [len({h.id for h in r1} & {h.id for h in r2}) / 10 for r1, r2 in zip(e, a, strict=True)]
    )
    assert recall >= 0.99
    # scores are cosine similarities in both
    assert e[0][0].score == pytest.approx(float(queries[0] @ x[e[0][0].id]), abs=1e-5)


def test_a_left_flank_is_never_returned_for_a_right_flank_query():
    x, labels = clustered(400)
    index = GalleryIndex.create(FP, 32)
    index.add(x[:200], entries(labels[:200], side="left"))
    index.add(x[200:], entries(labels[200:], side="right"))
    # the query is a left-flank vector itself: its best match overall is on the left
    for hits in index.search(x[:50], 20, side="right"):
        assert hits and all(h.entry.side == "right" for h in hits)
    both = index.search(x[:1], 5)[0]
    assert both[0].entry.side == "left" and both[0].score == pytest.approx(1.0, abs=1e-5)


def test_species_and_organisation_filters():
    x, labels = clustered(300)
    index = GalleryIndex.create(FP, 32)
    index.add(x[:100], entries(labels[:100], species="tiger", org="park-a"))
    index.add(x[100:200], entries(labels[100:200], species="tiger", org="park-b"))
    index.add(x[200:], entries(labels[200:], species="leopard", org="park-a"))
    hits = index.search(x[150:151], 30, organisations=["park-a"])[0]
    assert {h.entry.organisation for h in hits} == {"park-a"}
    hits = index.search(x[150:151], 30, species="leopard")[0]
    assert {h.entry.species for h in hits} == {"leopard"}
    assert index.search(x[:1], 5, organisations=["nobody"]) == [[]]


def test_add_remove_relabel_without_rebuild_and_round_trip(tmp_path):
    x, labels = clustered(50)
    index = GalleryIndex.create(FP, 32, model_name="m1")
    ids = index.add(x, entries(labels))
    assert ids == list(range(50)) and len(index) == 50
    assert index.remove([3, 4, 999]) == 2
    assert all(h.id not in (3, 4) for h in index.search(x[3:5], 50)[0])
    assert index.relabel([7], "T-new") == 1
    assert index.search(x[7:8], 1)[0][0].entry.individual == "T-new"
    more = index.add(x[:2], entries(labels[:2]))
    assert more == [50, 51]  # ids are never reused
    index.attachments["note"] = {"k": 1}
    index.save(tmp_path / "ix")
    back = GalleryIndex.open(tmp_path / "ix", FP)
    assert len(back) == 50 and back.entries() == index.entries()
    assert back.attachments == {"note": {"k": 1}} and back.model_name == "m1"
    q = index.search(x[:5], 5)
    assert [[h.id for h in r] for r in back.search(x[:5], 5)] == [[h.id for h in r] for r in q]
    assert np.allclose(back.vectors([0, 51]), x[[0, 1]], atol=1e-6)


def test_approximate_partition_survives_save_remove_and_reload(tmp_path):
    x, labels = clustered(2500)
    index = GalleryIndex.create(FP, 32, approximate_above=1000)
    index.add(x, entries(labels))
    index.save(tmp_path / "ix")
    back = GalleryIndex.open(tmp_path / "ix")
    assert back.partitions()[("tiger", "left")] == {"vectors": 2500, "approximate": True}
    assert back.remove([0]) == 1
    assert back.search(x[:1], 3)[0][0].id != 0
    assert np.allclose(back.vectors([5]), x[5:6], atol=1e-6)


def test_opening_with_another_models_fingerprint_is_refused(tmp_path):
    x, labels = clustered(10)
    index = GalleryIndex.create(FP, 32, model_name="bigcat-a")
    index.add(x, entries(labels))
    index.save(tmp_path / "ix")
    with pytest.raises(ReidError) as err:
        GalleryIndex.open(tmp_path / "ix", OTHER)
    message = str(err.value)
    assert "bigcat-a" in message and "aaaaaaaaaaaa" in message and "bbbbbbbbbbbb" in message
    assert "reid enroll" in message  # says how to rebuild


def test_a_crash_during_save_leaves_the_previous_index_intact(tmp_path, monkeypatch):
    folder = tmp_path / "ix"
    x, labels = clustered(40)
    index = GalleryIndex.create(FP, 32)
    index.add(x[:20], entries(labels[:20]))
    index.save(folder)
    index.add(x[20:], entries(labels[20:]))

    real_write = faiss.write_index

    def crash(idx, path):  # the process "dies" half-way through writing the new version
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError("simulated crash")

    monkeypatch.setattr(faiss, "write_index", crash)
    with pytest.raises(ReidError, match="cannot save"):
        index.save(folder)
    assert len(GalleryIndex.open(folder)) == 20

    # a crash just before the pointer switch: the new version is complete but not live
    monkeypatch.setattr(faiss, "write_index", real_write)
    real_replace = os.replace

    def die_on_pointer(src, dst):
        if str(dst).endswith("CURRENT"):
            raise OSError("simulated crash")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", die_on_pointer)
    with pytest.raises(ReidError):
        index.save(folder)
    monkeypatch.setattr(os, "replace", real_replace)
    assert len(GalleryIndex.open(folder)) == 20
    index.save(folder)  # the next save succeeds and cleans up the leftovers
    assert len(GalleryIndex.open(folder)) == 40
    assert sorted(p.name for p in folder.iterdir()) == ["CURRENT", "v-000003"]


def test_bad_input_gets_clear_errors(tmp_path):
    index = GalleryIndex.create(FP, 4)
    with pytest.raises(ReidError, match=r"\(n, 4\)"):
        index.add(np.ones((2, 3)), entries([0, 1]))
    with pytest.raises(ReidError, match="zero"):
        index.add(np.zeros((1, 4)), entries([0]))
    with pytest.raises(ReidError, match="left or right"):
        GalleryEntry("a.jpg", "T1", "tiger", "unknown")
    with pytest.raises(ReidError, match="does not exist"):
        GalleryIndex.open(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    assert not is_index(tmp_path / "empty")
    with pytest.raises(ReidError, match="not a gallery index"):
        GalleryIndex.open(tmp_path / "empty")
