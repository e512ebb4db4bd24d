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


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_index_agrees_with_exact_search(kind):
    x, labels = clustered(6000)
    queries, _ = clustered(200, seed=1)
    exact = GalleryIndex.create(FP, 32)  # default threshold: stays exact
    # ivf: 32 of 64 lists probed; hnsw: the default graph and beam
    approx = GalleryIndex.create(FP, 32, approximate_above=1000, nprobe=32, approximate=kind)
    exact.add(x[:3000], entries(labels[:3000]))
    exact.add(x[3000:], entries(labels[3000:]))
    approx.add(x[:3000], entries(labels[:3000]))  # becomes approximate here
    approx.add(x[3000:], entries(labels[3000:]))  # and grows as such
    assert exact.partitions()[("tiger", "left")]["approximate"] is False
    assert approx.partitions()[("tiger", "left")] == {
        "vectors": 6000,
        "approximate": True,
        "kind": kind,
    }
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


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_partition_survives_save_remove_and_reload(tmp_path, kind):
    x, labels = clustered(2500)
    index = GalleryIndex.create(FP, 32, approximate_above=1000, approximate=kind)
    index.add(x, entries(labels))
    index.save(tmp_path / "ix")
    back = GalleryIndex.open(tmp_path / "ix")
    assert back.partitions()[("tiger", "left")] == {
        "vectors": 2500,
        "approximate": True,
        "kind": kind,
    }
    assert back.remove([0]) == 1
    assert back.search(x[:1], 3)[0][0].id != 0
    assert np.allclose(back.vectors([5]), x[5:6], atol=1e-6)
    back.save(tmp_path / "ix")
    again = GalleryIndex.open(tmp_path / "ix")
    assert len(again) == 2499 and 0 not in again
    assert again.search(x[:1], 3)[0][0].id != 0


def test_hnsw_removal_filters_tombstones_and_rebuilds_the_graph(tmp_path):
    x, labels = clustered(3000)
    index = GalleryIndex.create(FP, 32, approximate_above=1000, hnsw_m=16)
    index.add(x, entries(labels[:1500], org="park-a") + entries(labels[1500:], org="park-b"))
    part = index._parts[("tiger", "left")]
    # 200 of 3,000 removed: kept in the graph as tombstones, never returned
    assert index.remove(range(200)) == 200
    assert part.kind == "hnsw" and len(part.deleted) == 200 and part.index.ntotal == 3000
    assert len(index) == 2800 and index.partitions()[("tiger", "left")]["vectors"] == 2800
    for row in index.search(x[:200], 10):  # each query is a removed vector itself
        assert len(row) == 10 and all(h.id >= 200 for h in row)
    for row in index.search(x[:50], 10, organisations=["park-a"]):
        assert all(200 <= h.id < 1500 for h in row)
    # tombstones survive a save and reload
    index.save(tmp_path / "ix")
    back = GalleryIndex.open(tmp_path / "ix", FP)
    assert back._parts[("tiger", "left")].deleted == set(range(200))
    assert all(h.id >= 200 for row in back.search(x[:100], 10) for h in row)
    ids, vectors = back._parts[("tiger", "left")].vectors()
    assert sorted(ids.tolist()) == list(range(200, 3000))
    assert np.allclose(vectors[np.argsort(ids)], x[200:], atol=1e-6)
    # past 10 % of the graph the partition is rebuilt from its live vectors
    assert back.remove(range(200, 400)) == 200
    rebuilt = back._parts[("tiger", "left")]
    assert rebuilt.deleted == set() and rebuilt.index.ntotal == 2600 and rebuilt.kind == "hnsw"
    assert back.search(x[400:401], 1)[0][0].id == 400
    assert back.add(x[:1], entries(labels[:1])) == [3000]  # ids are still never reused
    # a search after each removal sees it (the tombstone selector is not stale)
    back.remove([400])
    assert back.search(x[400:401], 1)[0][0].id != 400
    back.remove([401])
    assert back.search(x[401:402], 1)[0][0].id != 401


def test_indexes_saved_before_hnsw_keep_inverted_files(tmp_path):
    import json

    x, labels = clustered(1500)
    index = GalleryIndex.create(FP, 32, approximate_above=1000, approximate="ivf")
    index.add(x, entries(labels))
    index.save(tmp_path / "ix")
    version = tmp_path / "ix" / (tmp_path / "ix" / "CURRENT").read_text().strip()
    meta = json.loads((version / "index.json").read_text())
    for key in ("approximate", "hnsw_m", "ef_construction", "ef_search"):
        del meta[key]
    for p in meta["partitions"]:
        del p["kind"]
    (version / "index.json").write_text(json.dumps(meta))
    back = GalleryIndex.open(tmp_path / "ix", FP)
    assert back.approximate_kind == "ivf"
    assert back.partitions()[("tiger", "left")]["kind"] == "ivf"
    assert back.search(x[:1], 1)[0][0].id == 0


def test_index_options_are_checked():
    with pytest.raises(ReidError, match="approximate index 'annoy'"):
        GalleryIndex.create(FP, 32, approximate="annoy")
    with pytest.raises(ReidError, match="out of range"):
        GalleryIndex.create(FP, 32, ef_search=0)
    index = GalleryIndex.create(FP, 32)
    with pytest.raises(ReidError, match="ef_search"):
        index.set_ef_search(0)


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
