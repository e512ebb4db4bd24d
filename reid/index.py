"""The gallery index: FAISS inner-product search over L2-normalised embeddings.

Every vector has a record (:class:`GalleryEntry`: image, individual, species, side,
owning organisation, box) and an integer id that never changes and is never reused
while the index lives. Vectors are kept in one FAISS index per (species, side)
*partition*: a left flank is never even compared with a right flank, and a search for
one species and side touches only that partition. Organisation filters are FAISS ID
selectors inside a partition.

Exact by default: a partition is an ``IndexFlatIP`` (every vector scored; memory-bound:
14 ms per query at 100k 512-d vectors and 140 ms at 1M on 2 cores, see BENCHMARKS.md).
When a partition grows above ``approximate_above`` vectors (:data:`APPROXIMATE_ABOVE`,
1,000,000 by default) it is converted, once, to an HNSW graph (``IndexHNSWFlat``, M=48,
efConstruction 80) searched with beam ``ef_search`` (4,096). That is where the graph
pays and where its recall was measured (``bench/bench_index.py`` on 1M vectors drawn
from a model of the default model's real embeddings): recall@10 against exact search
0.998 at efSearch 4,096 in 58 ms per query (exact: 140 ms), 0.988 at 2,048 (31 ms),
0.970 at 1,024; the graph takes 15 min to build on 2 cores and 18 % more memory than the
vectors. Below 1M exact search is already interactive (it is the verification that costs)
and every result is exact. The graph cannot delete vectors: removed ids are tombstones
that searches filter out (a FAISS ID selector: a search still returns k live results),
and once they exceed :data:`REBUILD_TOMBSTONES` of the graph it is rebuilt from the live
vectors (inside that ``remove`` call: minutes at 1M vectors).
An inverted file (``approximate="ivf"``: ``IndexIVFFlat``, ~sqrt(n) lists, ``nprobe``
probed) remains available, and indexes saved before HNSW existed keep theirs; it never
reached recall 0.99 at 100k+ vectors for less than an exact scan. All kinds support
adding, removing (by id) and re-labelling (metadata only) without a rebuild by the user.

Persistence is atomic: :meth:`GalleryIndex.save` writes a complete new version
``v-NNNNNN/`` beside the old one, syncs it, and then replaces the one-line pointer file
``CURRENT`` with ``os.replace`` (atomic on POSIX). A crash at any moment leaves
``CURRENT`` naming a complete version; half-written versions are ignored and cleaned up
by the next save. The index stores the fingerprint (weights SHA-256) of the model that
made its embeddings and refuses to be opened for another model.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import threading
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from reid.errors import ReidError

FORMAT_VERSION = 1
POINTER_FILE = "CURRENT"
META_FILE = "index.json"
ENTRIES_FILE = "entries.jsonl"
#: Vectors in one (species, side) partition above which its search becomes approximate.
APPROXIMATE_ABOVE = 1_000_000
#: The approximate index a large partition becomes: ``"hnsw"`` (default) or ``"ivf"``.
APPROXIMATE_KINDS = ("hnsw", "ivf")
DEFAULT_APPROXIMATE = "hnsw"
#: HNSW graph degree (links per vector on the base layer: 2 M) and build beam width.
DEFAULT_HNSW_M = 48
DEFAULT_EF_CONSTRUCTION = 80
#: HNSW beam width per search (more: better recall, slower): recall@10 0.998 at 1M
#: (bench/bench_index.py); raise it as a partition grows well beyond that.
DEFAULT_EF_SEARCH = 4096
#: An HNSW partition cannot delete vectors from its graph: removed ids are tombstones
#: filtered out at search, and the graph is rebuilt from the live vectors once
#: tombstones exceed this share of it.
REBUILD_TOMBSTONES = 0.1
#: Inverted lists probed per query by ``approximate="ivf"`` partitions (of ~sqrt(n)):
#: recall@10 0.96 at 100k and 0.88 at 1M (256 probed) on vectors modelled on the default
#: model's embeddings (bench/bench_index.py, BENCHMARKS.md).
DEFAULT_NPROBE = 128
SIDES: tuple[str, ...] = ("left", "right")
#: Searches of at most this many queries run on one OpenMP thread: a team of threads
#: for one query costs more than it saves, and on a busy CPU (a server answering other
#: requests, a training job) its spin-waits made single-query search 60x slower
#: (bench/bench_index.py: 64 ms vs 1 ms at 10k vectors on 2 shared cores).
SINGLE_THREAD_QUERIES = 4
#: ... and so do searches of at most this many query x vector products (5 burst frames
#: against 400k vectors): a season run alternates the network, keypoints and search
#: every few milliseconds, and FAISS's idle team spinning after each search slowed the
#: keypoint extraction after it by a quarter and the search itself from 0.05 to 12 ms
#: (480-vector gallery, 5 queries; measured on the benchmark season, 2026-12-03).
SINGLE_THREAD_WORK = 2_000_000


@dataclass(frozen=True)
class GalleryEntry:
    """The record of one gallery vector: which image (and box) of which flank, whose."""

    image: str  # path of the image (crop already applied via bbox if given)
    individual: str
    species: str
    side: str  # "left" | "right"
    organisation: str = ""
    bbox: tuple[int, int, int, int] | None = None  # (x, y, w, h) in the image, if a crop

    def __post_init__(self) -> None:
        if not self.image:
            raise ReidError("a gallery entry needs an image path")
        if not self.individual:
            raise ReidError(f"{self.image}: a gallery entry needs an individual")
        if not self.species:
            raise ReidError(f"{self.image}: a gallery entry needs a species")
        if self.side not in SIDES:
            raise ReidError(
                f"{self.image}: gallery side {self.side!r} is not left or right (an image "
                "of an unknown flank cannot be enrolled: it would be compared with the wrong side)"
            )
        if self.bbox is not None:
            box = tuple(int(round(v)) for v in self.bbox)
            if len(box) != 4 or box[2] <= 0 or box[3] <= 0:
                raise ReidError(f"{self.image}: bbox {self.bbox} is not (x, y, w, h) with w, h > 0")
            object.__setattr__(self, "bbox", box)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["bbox"] = list(self.bbox) if self.bbox is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> GalleryEntry:
        bbox = d.get("bbox")
        return cls(
            image=d["image"],
            individual=d["individual"],
            species=d["species"],
            side=d["side"],
            organisation=d.get("organisation", ""),
            bbox=tuple(bbox) if bbox is not None else None,  # type: ignore[arg-type]
        )

    @property
    def flank(self) -> tuple[str, str, str]:
        """(species, individual, side): the pattern this image shows."""
        return (self.species, self.individual, self.side)


@dataclass(frozen=True)
class Hit:
    """One search result: gallery id, inner product with the query, and its record."""

    id: int
    score: float
    entry: GalleryEntry


class _Partition:
    """The vectors of one (species, side): a FAISS index plus per-organisation id sets.

    ``kind`` is ``"exact"`` (``IndexIDMap2`` over ``IndexFlatIP``), ``"ivf"``
    (``IndexIVFFlat`` with a hashtable direct map) or ``"hnsw"`` (``IndexIDMap2`` over
    ``IndexHNSWFlat``, with ``deleted``: removed ids still in the graph)."""

    def __init__(self, dim: int, index: faiss.Index | None = None, kind: str = "exact") -> None:
        self.dim = dim
        self.index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self.kind = kind
        self.by_org: dict[str, set[int]] = defaultdict(set)
        self.deleted: set[int] = set()
        self._live: tuple[faiss.IDSelector, faiss.IDSelector] | None = None

    def bury(self, ids: Iterable[int]) -> None:
        """Mark ``ids`` as removed from the graph (tombstones)."""
        self.deleted.update(int(i) for i in ids)
        self._live = None

    def unbury_all(self) -> None:
        """Forget the tombstones (the graph was rebuilt without them)."""
        self.deleted = set()
        self._live = None

    def live_selector(self) -> faiss.IDSelector | None:
        """A selector of the ids not in ``deleted`` (None: nothing is deleted), made once
        per change of the tombstones rather than on every search."""
        if not self.deleted:
            return None
        if self._live is None:
            gone = faiss.IDSelectorBatch(np.array(sorted(self.deleted), np.int64))
            self._live = (gone, faiss.IDSelectorNot(gone))  # Not refers to gone: keep both
        return self._live[1]

    @property
    def approximate(self) -> bool:
        return self.kind != "exact"

    def __len__(self) -> int:
        return int(self.index.ntotal) - len(self.deleted)

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """All live (ids, vectors) of the partition."""
        if len(self) == 0:
            return np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32)
        if self.kind == "ivf":  # a direct map (hashtable) answers by id
            ids = np.array(sorted(i for s in self.by_org.values() for i in s), np.int64)
            return ids, np.stack([self.index.reconstruct(int(i)) for i in ids])
        ids = faiss.vector_to_array(self.index.id_map).astype(np.int64)
        x = self.index.index.reconstruct_n(0, int(self.index.ntotal))
        if self.deleted:
            live = ~np.isin(ids, np.fromiter(self.deleted, np.int64, len(self.deleted)))
            ids, x = ids[live], x[live]
        return ids, x


def _kind_of(index: faiss.Index) -> str:
    """The partition kind of a FAISS index read from disk."""
    if isinstance(index, faiss.IndexIVF):
        return "ivf"
    if isinstance(index, faiss.IndexIDMap2):
        inner = faiss.downcast_index(index.index)
        if isinstance(inner, faiss.IndexHNSW):
            return "hnsw"
        if isinstance(inner, faiss.IndexFlat):
            return "exact"
    raise ValueError(f"unexpected FAISS index type {type(index).__name__}")


def _hnsw_for(vectors: np.ndarray, ids: np.ndarray, dim: int, m: int, ef_construction: int):
    """An HNSW graph over ``vectors``, answering with ``ids``."""
    graph = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = ef_construction
    index = faiss.IndexIDMap2(graph)
    if len(vectors):
        index.add_with_ids(np.ascontiguousarray(vectors), ids)
    return index


def _ivf_for(vectors: np.ndarray, ids: np.ndarray, dim: int, nprobe: int, seed: int = 0):
    """An inverted file trained on (a sample of) ``vectors``, holding all of them."""
    n = len(vectors)
    nlist = int(2 ** round(math.log2(max(16.0, math.sqrt(n)))))
    quantizer = faiss.IndexFlatIP(dim)
    ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.seed = seed
    rng = np.random.default_rng(seed)
    sample = vectors[rng.choice(n, min(n, 64 * nlist), replace=False)]
    ivf.train(np.ascontiguousarray(sample))
    ivf.nprobe = nprobe
    ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # remove and reconstruct by id
    ivf.add_with_ids(np.ascontiguousarray(vectors), ids)
    return ivf


class GalleryIndex:
    """Embeddings of enrolled flank images with their records; search, edit, save.

    Thread-safe: one lock serialises changes, searches and saves of an instance.
    ``attachments`` holds JSON data saved atomically with the index (the matcher keeps
    its calibration there).
    """

    def __init__(
        self,
        fingerprint: str,
        dim: int,
        *,
        model_name: str = "",
        approximate_above: int = APPROXIMATE_ABOVE,
        nprobe: int = DEFAULT_NPROBE,
        approximate: str = DEFAULT_APPROXIMATE,
        hnsw_m: int = DEFAULT_HNSW_M,
        ef_construction: int = DEFAULT_EF_CONSTRUCTION,
        ef_search: int = DEFAULT_EF_SEARCH,
    ) -> None:
        if not fingerprint:
            raise ReidError("a gallery index needs the fingerprint of its model")
        if dim < 1:
            raise ReidError(f"embedding dimension must be >= 1, got {dim}")
        self.fingerprint = fingerprint
        self.dim = int(dim)
        self.model_name = model_name
        if approximate not in APPROXIMATE_KINDS:
            raise ReidError(f"approximate index {approximate!r} is not one of {APPROXIMATE_KINDS}")
        if hnsw_m < 2 or ef_construction < 1 or ef_search < 1 or nprobe < 1:
            raise ReidError(
                f"index options out of range: hnsw_m {hnsw_m} (>= 2), ef_construction "
                f"{ef_construction}, ef_search {ef_search}, nprobe {nprobe} (>= 1)"
            )
        self.approximate_above = int(approximate_above)
        self.nprobe = int(nprobe)
        self.approximate_kind = approximate
        self.hnsw_m = int(hnsw_m)
        self.ef_construction = int(ef_construction)
        self.ef_search = int(ef_search)
        self.attachments: dict[str, Any] = {}
        self._entries: dict[int, GalleryEntry] = {}
        self._parts: dict[tuple[str, str], _Partition] = {}
        self._next_id = 0
        self._version = 0
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ creation

    @classmethod
    def create(cls, fingerprint: str, dim: int, **options: Any) -> GalleryIndex:
        """An empty index for embeddings of ``dim`` dimensions made by model ``fingerprint``."""
        return cls(fingerprint, dim, **options)

    @classmethod
    def open(cls, folder: Path | str, fingerprint: str | None = None) -> GalleryIndex:
        """Load the index saved in ``folder``; with ``fingerprint``, refuse an index made
        with another model."""
        folder = Path(folder)
        version = _current_version(folder)
        try:
            meta = json.loads((version / META_FILE).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ReidError(f"{folder}: the gallery index is unreadable: {e}") from None
        if meta.get("format_version") != FORMAT_VERSION:
            raise ReidError(
                f"{folder}: index format {meta.get('format_version')!r} is not supported "
                f"(this version reads {FORMAT_VERSION}); rebuild it with reid enroll"
            )
        if fingerprint is not None:
            check_fingerprint(meta["fingerprint"], fingerprint, folder, meta.get("model_name", ""))
        index = cls(
            meta["fingerprint"],
            int(meta["dim"]),
            model_name=meta.get("model_name", ""),
            approximate_above=int(meta.get("approximate_above", APPROXIMATE_ABOVE)),
            nprobe=int(meta.get("nprobe", DEFAULT_NPROBE)),
            # indexes saved before HNSW existed became inverted files: keep them so
            approximate=meta.get("approximate", "ivf"),
            hnsw_m=int(meta.get("hnsw_m", DEFAULT_HNSW_M)),
            ef_construction=int(meta.get("ef_construction", DEFAULT_EF_CONSTRUCTION)),
            ef_search=int(meta.get("ef_search", DEFAULT_EF_SEARCH)),
        )
        index.attachments = meta.get("attachments", {})
        index._next_id = int(meta["next_id"])
        try:
            with (version / ENTRIES_FILE).open(encoding="utf-8") as f:
                for line in f:
                    d = json.loads(line)
                    index._entries[int(d.pop("id"))] = GalleryEntry.from_dict(d)
            for p in meta["partitions"]:
                faiss_index = faiss.read_index(str(version / p["file"]))
                kind = _kind_of(faiss_index)
                if kind == "ivf":
                    faiss_index.nprobe = index.nprobe
                part = _Partition(index.dim, faiss_index, kind)
                part.bury(p.get("deleted", ()))
                index._parts[(p["species"], p["side"])] = part
        except (OSError, KeyError, ValueError, RuntimeError) as e:
            raise ReidError(f"{folder}: the gallery index is damaged: {e}") from None
        for i, e in index._entries.items():
            part = index._parts.get((e.species, e.side))
            if part is None or i in part.deleted:
                raise ReidError(
                    f"{folder}: the gallery index is damaged: record {i} has no vector; "
                    "rebuild it with reid enroll"
                )
            part.by_org[e.organisation].add(i)
        n = sum(len(p) for p in index._parts.values())
        if n != len(index._entries):
            raise ReidError(
                f"{folder}: the gallery index is damaged: {n} vectors but "
                f"{len(index._entries)} records; rebuild it with reid enroll"
            )
        return index

    # ------------------------------------------------------------------ editing

    def add(self, embeddings: np.ndarray, entries: Sequence[GalleryEntry]) -> list[int]:
        """Add vectors with their records; returns their new ids. Vectors are
        L2-normalised here (a zero or non-finite vector is refused)."""
        x = np.array(embeddings, dtype=np.float32, copy=True)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ReidError(f"embeddings must be (n, {self.dim}), got shape {x.shape}")
        if len(x) != len(entries):
            raise ReidError(f"{len(x)} embeddings but {len(entries)} gallery entries")
        norms = np.linalg.norm(x, axis=1)
        if not np.all(np.isfinite(x)) or np.any(norms < 1e-12):
            raise ReidError("an embedding is zero or not finite: cannot be added to the gallery")
        x /= norms[:, None]
        with self._lock:
            ids = np.arange(self._next_id, self._next_id + len(x), dtype=np.int64)
            groups: dict[tuple[str, str], list[int]] = defaultdict(list)
            for row, e in enumerate(entries):
                groups[(e.species, e.side)].append(row)
            for key, rows in groups.items():
                part = self._parts.setdefault(key, _Partition(self.dim))
                part.index.add_with_ids(np.ascontiguousarray(x[rows]), ids[rows])
                for r in rows:
                    part.by_org[entries[r].organisation].add(int(ids[r]))
                if not part.approximate and len(part) > self.approximate_above:
                    self._make_approximate(part)
            for i, e in zip(ids.tolist(), entries, strict=True):
                self._entries[i] = e
            self._next_id += len(x)
            self._version += 1
        return ids.tolist()

    def set_ef_search(self, ef_search: int) -> None:
        """Beam width of searches in HNSW partitions (more: better recall, slower)."""
        if ef_search < 1:
            raise ReidError(f"ef_search must be >= 1, got {ef_search}")
        with self._lock:
            self.ef_search = int(ef_search)

    def set_nprobe(self, nprobe: int) -> None:
        """Inverted lists probed per query by approximate partitions (more: better
        recall, slower)."""
        if nprobe < 1:
            raise ReidError(f"nprobe must be >= 1, got {nprobe}")
        with self._lock:
            self.nprobe = int(nprobe)
            for part in self._parts.values():
                if part.kind == "ivf":
                    part.index.nprobe = self.nprobe

    def _make_approximate(self, part: _Partition) -> None:
        ids, vectors = part.vectors()
        if self.approximate_kind == "ivf":
            part.index = _ivf_for(vectors, ids, self.dim, self.nprobe)
        else:
            part.index = _hnsw_for(vectors, ids, self.dim, self.hnsw_m, self.ef_construction)
        part.kind = self.approximate_kind
        part.unbury_all()

    def remove(self, ids: Iterable[int]) -> int:
        """Remove the vectors with these ids (unknown ids are ignored); returns how many."""
        with self._lock:
            by_part: dict[tuple[str, str], list[int]] = defaultdict(list)
            for i in {int(i) for i in ids}:
                e = self._entries.pop(i, None)
                if e is not None:
                    by_part[(e.species, e.side)].append(i)
                    self._parts[(e.species, e.side)].by_org[e.organisation].discard(i)
            for key, gone in by_part.items():
                part = self._parts[key]
                if part.kind != "hnsw":
                    part.index.remove_ids(np.array(gone, np.int64))
                    continue
                # the graph keeps them until it is rebuilt; searches filter them out
                part.bury(gone)
                if len(part.deleted) > REBUILD_TOMBSTONES * part.index.ntotal:
                    self._make_approximate(part)
            if by_part:
                self._version += 1
            return sum(len(v) for v in by_part.values())

    def relabel(self, ids: Iterable[int], individual: str) -> int:
        """Assign these entries to ``individual`` (no vector moves); returns how many."""
        if not individual:
            raise ReidError("relabel needs an individual")
        with self._lock:
            n = 0
            for i in {int(i) for i in ids}:
                e = self._entries.get(i)
                if e is not None:
                    self._entries[i] = GalleryEntry(
                        e.image, individual, e.species, e.side, e.organisation, e.bbox
                    )
                    n += 1
            if n:
                self._version += 1
            return n

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def version(self) -> int:
        """A counter that grows with every change of the entries (add, remove, relabel)
        of this instance since it was created or opened: what is worked out from the
        entries may be cached keyed on it (:meth:`reid.match.Matcher.gallery_boxed`)."""
        return self._version

    def __contains__(self, id_: int) -> bool:
        return id_ in self._entries

    def entry(self, id_: int) -> GalleryEntry:
        try:
            return self._entries[id_]
        except KeyError:
            raise ReidError(f"gallery id {id_} is not in the index") from None

    def entries(self) -> dict[int, GalleryEntry]:
        """A copy of id -> record."""
        with self._lock:
            return dict(self._entries)

    def partitions(self) -> dict[tuple[str, str], dict]:
        """Per (species, side): vector count and whether the search is approximate."""
        with self._lock:
            return {
                k: {"vectors": len(p), "approximate": p.approximate, "kind": p.kind}
                for k, p in sorted(self._parts.items())
            }

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        """The stored (normalised) vectors of these ids, (n, dim)."""
        kept, out = self.live_vectors(ids)
        if len(kept) != len(ids):
            live = set(kept.tolist())
            missing = next(int(i) for i in ids if int(i) not in live)
            raise ReidError(f"gallery id {missing} is not in the index")
        return out

    def live_vectors(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of those of ``ids`` still in the index, in their order: a reader
        that listed the entries a moment ago skips what was removed since."""
        kept, rows = [], []
        with self._lock:
            for i in ids:
                e = self._entries.get(int(i))
                if e is not None:
                    kept.append(int(i))
                    rows.append(self._parts[(e.species, e.side)].index.reconstruct(int(i)))
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32)
        return np.array(kept, np.int64), np.stack(rows).astype(np.float32)

    def search(
        self,
        queries: np.ndarray,
        k: int,
        species: str | None = None,
        side: str | None = None,
        organisations: Collection[str] | None = None,
    ) -> list[list[Hit]]:
        """The ``k`` most similar gallery vectors for each query, best first.

        Only partitions of ``species`` (None: all) and ``side`` (None: both) are searched;
        with ``organisations`` only entries owned by one of them. Queries are
        L2-normalised here; scores are inner products (cosine similarities).
        """
        q = np.array(queries, dtype=np.float32, copy=True)
        if q.ndim == 1:
            q = q[None]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ReidError(f"queries must be (n, {self.dim}), got shape {q.shape}")
        if side is not None and side not in SIDES:
            raise ReidError(f"side {side!r} is not left, right or None (both)")
        if k < 1:
            raise ReidError(f"k must be >= 1, got {k}")
        norms = np.linalg.norm(q, axis=1, keepdims=True)
        q /= np.where(norms > 1e-12, norms, 1.0)
        orgs = None if organisations is None else set(organisations)
        results: list[list[Hit]] = [[] for _ in range(len(q))]
        with self._lock:
            for (sp, sd), part in self._parts.items():
                if (species is not None and sp != species) or (side is not None and sd != side):
                    continue
                if len(part) == 0:
                    continue
                params = None
                if orgs is not None:  # by_org holds live ids only
                    allowed = [i for o in orgs for i in part.by_org.get(o, ())]
                    if not allowed:
                        continue
                    selector = faiss.IDSelectorBatch(np.array(allowed, np.int64))
                else:
                    selector = part.live_selector()
                if part.kind == "hnsw":
                    extra = {} if selector is None else {"sel": selector}
                    params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k), **extra)
                elif selector is not None and part.kind == "ivf":
                    params = faiss.SearchParametersIVF(sel=selector, nprobe=self.nprobe)
                elif selector is not None:
                    params = faiss.SearchParameters(sel=selector)
                kk = min(k, len(part))
                small = len(q) <= SINGLE_THREAD_QUERIES or len(q) * len(part) <= SINGLE_THREAD_WORK
                with _threads(1 if small else None):
                    if params is None:
                        scores, ids = part.index.search(q, kk)
                    else:
                        scores, ids = part.index.search(q, kk, params=params)
                for row in range(len(q)):
                    for s, i in zip(scores[row], ids[row], strict=True):
                        if i >= 0:
                            results[row].append(Hit(int(i), float(s), self._entries[int(i)]))
        for row in range(len(results)):
            results[row].sort(key=lambda h: (-h.score, h.id))
            del results[row][k:]
        return results

    # ------------------------------------------------------------------ persistence

    def save(self, folder: Path | str) -> None:
        """Write the index to ``folder`` atomically (see the module docstring)."""
        folder = Path(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ReidError(f"cannot create index folder {folder}: {e.strerror or e}") from None
        with self._lock:
            number = 1 + max(
                [int(p.name[2:]) for p in folder.glob("v-*") if p.name[2:].isdigit()] or [0]
            )
            name = f"v-{number:06d}"
            staging = folder / f".tmp-{name}"
            shutil.rmtree(staging, ignore_errors=True)
            try:
                staging.mkdir()
                self._write_version(staging)
                _fsync_dir(staging)
                os.replace(staging, folder / name)
                _fsync_dir(folder)
                pointer_tmp = folder / f".{POINTER_FILE}.tmp"
                with pointer_tmp.open("w", encoding="utf-8") as f:
                    f.write(name + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(pointer_tmp, folder / POINTER_FILE)
                _fsync_dir(folder)
            except OSError as e:
                shutil.rmtree(staging, ignore_errors=True)
                raise ReidError(f"cannot save the gallery index to {folder}: {e}") from None
        # The new version is live: old versions and leftovers of crashed saves can go.
        for p in folder.iterdir():
            stale_version = p.name.startswith("v-") and p.name != name
            if stale_version or (p.name.startswith(".tmp-v-") and p != staging):
                shutil.rmtree(p, ignore_errors=True)

    def _write_version(self, out: Path) -> None:
        parts = []
        for n, ((sp, sd), part) in enumerate(sorted(self._parts.items())):
            file = f"part-{n:03d}.faiss"
            faiss.write_index(part.index, str(out / file))
            d = {"species": sp, "side": sd, "file": file, "vectors": len(part), "kind": part.kind}
            if part.deleted:
                d["deleted"] = sorted(part.deleted)
            parts.append(d)
        with (out / ENTRIES_FILE).open("w", encoding="utf-8") as f:
            for i, e in sorted(self._entries.items()):
                f.write(json.dumps({"id": i, **e.to_dict()}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        meta = {
            "format_version": FORMAT_VERSION,
            "fingerprint": self.fingerprint,
            "model_name": self.model_name,
            "dim": self.dim,
            "next_id": self._next_id,
            "entries": len(self._entries),
            "approximate_above": self.approximate_above,
            "nprobe": self.nprobe,
            "approximate": self.approximate_kind,
            "hnsw_m": self.hnsw_m,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
            "partitions": parts,
            "attachments": self.attachments,
        }
        with (out / META_FILE).open("w", encoding="utf-8") as f:
            f.write(json.dumps(meta, indent=1) + "\n")
            f.flush()
            os.fsync(f.fileno())
        for p in parts:
            with (out / p["file"]).open("rb") as f:
                os.fsync(f.fileno())


def check_fingerprint(
    built_with: str, fingerprint: str, folder: Path | str, model_name: str = ""
) -> None:
    """Refuse to use the index in ``folder`` (made by model ``built_with``) with the model
    ``fingerprint``, in one line that says how to rebuild it."""
    if built_with != fingerprint:
        raise ReidError(
            f"{folder} was built with model {model_name or '?'} (sha256 {_short(built_with)}), "
            f"not with this model (sha256 {_short(fingerprint)}): embeddings of two models "
            f"(or of one model at two input sizes) cannot be compared; rebuild it with "
            f"`reid enroll CATALOGUE --index NEW_DIR --model MODEL`, or pass the model it "
            f"was built with"
        )


def _short(fingerprint: str) -> str:
    """``abcdef123456...@192x384`` from a model fingerprint (SHA-256[@size])."""
    sha, at, size = fingerprint.partition("@")
    return f"{sha[:12]}...{at}{size}"


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """FAISS's OpenMP thread count set to ``n`` inside the block (None: unchanged)."""
    if n is None:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def is_index(folder: Path | str) -> bool:
    """Whether ``folder`` holds a saved gallery index."""
    return (Path(folder) / POINTER_FILE).is_file()


def _read_pointer(folder: Path) -> str | None:
    try:
        return (folder / POINTER_FILE).read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def _current_version(folder: Path) -> Path:
    if not folder.is_dir():
        raise ReidError(
            f"gallery index {folder} does not exist; build one with "
            f"`reid enroll CATALOGUE --index {folder}`"
        )
    name = _read_pointer(folder)
    if name is None:
        raise ReidError(
            f"{folder} is not a gallery index (no {POINTER_FILE} file); build one with "
            f"`reid enroll CATALOGUE --index {folder}`"
        )
    version = folder / name
    if not (version / META_FILE).is_file():
        raise ReidError(f"{folder}: {POINTER_FILE} names {name!r}, which is missing or incomplete")
    return version


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
