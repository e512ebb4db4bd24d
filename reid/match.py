"""The matcher: a flank photo -> "known individual X" or "new individual", with probabilities.

Pipeline of one query (``Matcher.match``):

1. embed the crop (the released model; unit vector);
2. search the gallery index for the ``shortlist`` most similar images of the query's
   species and side (unknown side: both sides, each flank a separate candidate);
3. aggregate per flank (individual + side): the *global score* of a candidate is its
   best cosine similarity;
4. verify the ``verify_top`` best candidates geometrically (local features + USAC
   homography: RootSIFT by default, or learned ones, :mod:`reid.local`) against their
   ``verify_images`` best gallery images, whose keypoints are cached in the index folder
   (``features/``; the index records which kind, and refuses a matcher of another):
   the *local score* is the best inlier count. With ``MatchConfig.local_shortlist``
   M > 0, the M gallery images whose local descriptors share the most mutual nearest
   neighbours with the query's (:mod:`reid.local.recall`) are verified too, with their
   flanks, whatever their embedding rank: for species the embedding ranks poorly;
5. fuse: ``fused = logit P(same flank | global, log(1 + local))``, a logistic model
   (:class:`~reid.calibrate.LogisticCalibrator`), and rank candidates by it;
6. decide: a three-way multinomial logistic model (:data:`DECISION_CLASSES`) gives
   ``P(top)`` (the best candidate is the query's flank), ``P(other)`` (another gallery
   flank is) and ``P(new)`` (the flank is not in the gallery) from the best fused score
   ``s1``, its margin over the runner-up and the best candidate's own global score and
   inlier count. The decision is *known* (the best candidate) when ``P(top) >= P(new)``,
   else *new*; its probability is ``P(top)`` or ``P(new)`` respectively: the chance that
   the decision is right, with ``P(other)`` the remainder. (One softmax model instead of
   two separate logistic ones, and the best candidate's raw scores as features, took the
   decision's expected calibration error on synth-bench-v1 from 0.087 to about 0.05.)

Optional *screening* (``MatchConfig.screen``, used by bulk runs): between steps 3 and 4
a third model of the same three outcomes, on the embedding's evidence alone (the best
global score and its margin over the runner-up flank, :data:`SCREEN_FEATURES`), decides
the query without verification when it is at least ``screen`` sure of either "the best
candidate" or "new". Its probabilities are then the result's, and the result says it
was not verified. Verification (keypoint extraction and RANSAC) costs several times the
embedding, so screening is what lets a season run approach the model's own speed.

All three models are fitted when the gallery is enrolled (:func:`fit_calibration`),
on held-out queries made from the gallery itself: each sampled gallery image is
matched once against the rest of the gallery (its flank is *known*) and once with all
images of its flank removed (its flank is *new*), exactly as a real query would be.
``P(new)`` assumes the share of new individuals among queries is ``new_prior`` (0.5 by
default; set it to what a survey expects: ``reid enroll --new-prior`` stores it with the
index, ``MatchConfig.new_prior`` or ``--new-prior`` of ``reid match`` and ``reid bulk``
overrides it for one run).
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from reid.calibrate import EPS, LogisticCalibrator, MultinomialCalibrator, calibrator_from_dict
from reid.data.records import BBox, ImageRecord
from reid.errors import ReidError
from reid.index import SIDES, GalleryEntry, GalleryIndex, Hit, check_fingerprint, is_index
from reid.local import INDEX_KEY, LocalConfig, check_local_features, config_from_fingerprint
from reid.paths import atomic_write
from reid.progress import progress_bar
from reid.side import DEFAULT_SIDE_THRESHOLD, decide_side, head_of
from reid.verify import LocalFeatures, SiftConfig, Verification, extract, verify_many

FEATURES_DIR = "features"
#: query feature sets whose descriptor counts a matcher remembers (Matcher._mutual_counts)
MUTUAL_MEMO = 16
#: gallery images whose keypoints are loaded at once for the descriptor shortlist
MUTUAL_BLOCK = 256
#: query feature sets whose refined pair results a matcher remembers (Matcher._refined)
REFINED_MEMO = 16
CALIBRATION_KEY = "calibration"
#: A candidate without a runner-up gets this margin (logits are clipped to +-LOGIT_CAP).
LOGIT_CAP = 20.0


@dataclass(frozen=True)
class MatchConfig:
    """How much work one query does; the defaults keep a query well under a second."""

    shortlist: int = 100  # gallery images retrieved per query (per side searched)
    verify_top: int = 10  # best candidates (flanks) verified geometrically
    verify_images: int = 2  # best gallery images verified per candidate
    # frames of an encounter (a burst) verified: those closest to the gallery. Keypoint
    # extraction and verification cost ~7x an embedding, so a 5-frame burst verifies its
    # best two frames instead of all five; season runs (reid bulk --verify-frames) verify
    # one (bulk throughput; accuracy in BENCHMARKS.md).
    verify_frames: int = 2
    # Verification stops early once a candidate has this many inliers (0: never): the
    # candidates are verified a few at a time, best global score first, one frame at a
    # time. No impostor pair of the synthetic calibration set (8,057 pairs) reached even
    # 10 inliers; a third of genuine ones reach 20. The rest would score far below it.
    decisive_inliers: int = 20
    verify_group: int = 3  # candidates verified between two checks for a decisive one
    # Decide without verification when the embedding-only screening model is at least
    # this sure (of the best candidate or of "new"); 0 (the default) always verifies.
    # Needs an index calibrated by a version that fits the screening model.
    screen: float = 0.0
    # The expected share of queries that show a flank not in the gallery, which sets
    # P(new)'s prior; None keeps the one stored with the index's calibration (set at
    # enrolment, 0.5 by default). A well-surveyed park expects few new animals, a first
    # survey many: the same evidence then gives a different P(new) and decision.
    new_prior: float | None = None
    # A query of unknown side searches only the side its photo shows when the model's
    # side head (reid.side) gives that side at least this probability, both otherwise;
    # 1.0 always searches both. Ignored when the model has no side head.
    side_threshold: float = DEFAULT_SIDE_THRESHOLD
    # Gallery images added to the verified candidates by their local descriptors alone
    # (reid.local.recall: the M images sharing the most mutual nearest-neighbour
    # descriptors with the query's best frame, whatever their embedding score); 0: none.
    # For species the embedding ranks poorly (nyala zero-shot: the true flank is outside
    # the embedding's first candidates for a third of the queries). Every gallery image of
    # the searched partition is compared (about 12 ms an image with ALIKED on 2 CPU
    # cores), so it is for catalogues of hundreds of photos. None: the value the index's
    # calibration was fitted with (0 for one fitted without).
    local_shortlist: int | None = None
    # The first N verified candidates (by inlier count, ties: global score) matched again,
    # each on its best image, with all the keypoints the gallery keeps (ALIKED's
    # refine_keypoints, e.g. 2,048 where every pair is matched on 1,024), and scored by
    # that count; 0: none. For species whose right flank the first matching finds but
    # does not put first (nyala zero-shot, reid eval --refine 5: top-1 0.707 -> 0.740,
    # BENCHMARKS.md "More keypoints for the first five"). About 1.5 s a pair on 2 CPU
    # cores at 2,048. Needs an index enrolled with such keypoints (reid enroll --refine).
    # None: the value the index's calibration was fitted with (0 for one fitted without).
    refine: int | None = None
    # The kind of local features that verifies (reid.local: rootsift, xfeat, ...); None
    # uses the kind the gallery index caches (a new index: rootsift). A kind other than
    # the index's is refused.
    local: LocalConfig | None = None

    @property
    def sift(self) -> LocalConfig:
        """The local features configured (None: default RootSIFT); the matcher's own
        are :attr:`Matcher.local`."""
        return self.local if self.local is not None else SiftConfig()


@dataclass
class Evidence:
    """One gallery image of a candidate and why it matches: the inlier correspondences,
    in pixels of the query image and of the gallery *image* (box offset added)."""

    image: str
    bbox: tuple | None
    gallery_id: int
    global_score: float
    inliers: int
    query_points: list[tuple[float, float]]
    gallery_points: list[tuple[float, float]]


@dataclass
class Candidate:
    """One flank of one gallery individual, with its scores; ``probability`` is the
    calibrated P(same flank) from its global and local scores alone."""

    individual: str
    species: str
    side: str
    organisation: str
    global_score: float
    local_score: float
    fused_score: float
    probability: float
    evidence: list[Evidence]
    # local_score counted on all the gallery's kept keypoints (MatchConfig.refine)
    refined: bool = False


@dataclass
class MatchResult:
    decision: str  # "known" | "new"
    individual: str | None  # when known
    side: str | None  # the side that matched (unknown-side queries search both)
    probability: float  # P(decision is right), calibrated
    new_probability: float  # P(new individual)
    candidates: list[Candidate]
    model_version: str  # release name + fingerprint
    # False when screening decided on the embedding alone (no keypoints were matched)
    verified: bool = True
    # Sides whose gallery was searched: the given side, the side the photo shows (the
    # side head was sure), or both
    searched: list[str] = field(default_factory=lambda: list(SIDES))
    # P(left flank) from the photo (reid.side), for a query of unknown side; None when
    # the side was given or the model has no side head
    left_probability: float | None = None
    # (x, y, w, h) per photo, in its pixels: the flank box its crop was cut to by the
    # model's flank head (Matcher.locate: the photo came without a box); None where it
    # was matched as given. Evidence query points are in pixels of the crop.
    query_boxes: list[list[int] | None] | None = None

    def to_dict(self) -> dict:
        """A JSON-ready dict (tuples as lists, floats rounded to 6 digits)."""
        return _rounded(asdict(self))


def _rounded(value):
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None
    return value


# --------------------------------------------------------------------------- calibration


#: Outcomes of the decision model, in order: the best candidate is the query's flank;
#: another gallery flank is; the query's flank is not in the gallery (a new individual).
DECISION_CLASSES = ("top", "other", "new")
#: Its features: the best fused score, its margin over the runner-up, and the best
#: candidate's own global score and log(1 + inliers) (the fusion weights suit ranking
#: pairs; how strong the best candidate must be to rule out "new" is weighted apart).
DECISION_FEATURES = ("s1", "margin", "top_global", "top_log_inliers")


#: Queries (of flanks with >= 3 gallery images) needed to fit the decision models'
#: temperature (see :func:`fit_calibration`); with fewer it stays 1.
MIN_TEMPERATURE_QUERIES = 50

#: Calibration queries that must keep another photo of their flank (one not among their
#: near-duplicates) for :func:`fit_calibration` to fit: as many as the smallest gallery
#: that can calibrate (two flanks with two photos taken apart) gives. With fewer the
#: decision model sees (almost) only "new" queries and calls every query new.
MIN_KNOWN_QUERIES = 4


class CannotCalibrate(ReidError):
    """The gallery cannot calibrate itself (:func:`fit_calibration`): too few flanks with
    two photos, or too few photos of a flank taken apart from each other (a burst's
    frames are near-duplicates). ``reid enroll`` then uses the release's calibration;
    the service keeps the calibration it has."""


#: The screening model's features: the best global score (cosine) of any flank and its
#: margin over the runner-up flank's.
SCREEN_FEATURES = ("g1", "g_margin")


def screen_features(raws: Sequence[_Raw]) -> np.ndarray:
    """The screening model's features (1, 2) of unverified candidates (non-empty)."""
    g = sorted((c.global_score for c in raws), reverse=True)
    margin = g[0] - g[1] if len(g) > 1 else 2.0  # cosines: 2 is the largest possible gap
    return np.array([[g[0], margin]])


def decision_features(cands: Sequence[Candidate]) -> np.ndarray:
    """The decision model's features (1, 4) of ranked candidates (best first, non-empty)."""
    s1 = cands[0].fused_score
    margin = s1 - cands[1].fused_score if len(cands) > 1 else 2 * LOGIT_CAP
    top = cands[0]
    return np.array([[s1, margin, top.global_score, math.log1p(top.local_score)]])


@dataclass
class MatchCalibration:
    """The fitted fusion and decision models of one gallery (stored with the index).

    ``decision`` is a three-way softmax model (:data:`DECISION_CLASSES`) fitted on
    :data:`DECISION_FEATURES`; indexes calibrated by earlier versions carry two logistic
    models instead (``new``: P(flank absent), ``top``: P(best right | present)), which
    are still read and used until the gallery is re-enrolled.
    """

    pair: LogisticCalibrator  # features: global score, log(1 + inliers)
    decision: MultinomialCalibrator | None = None
    screen: MultinomialCalibrator | None = None  # on SCREEN_FEATURES; None: never screen
    new: LogisticCalibrator | None = None  # legacy: -s1, -(s1 - s2) -> P(new)
    top: LogisticCalibrator | None = None  # legacy: s1, s1 - s2 -> P(best right | present)
    new_prior: float = 0.5
    fitted_prior: float = 0.5
    stats: dict = field(default_factory=dict)

    def fused(self, global_score: np.ndarray, inliers: np.ndarray) -> np.ndarray:
        x = np.column_stack([global_score, np.log1p(inliers)])
        return np.clip(self.pair.logit(x), -LOGIT_CAP, LOGIT_CAP)

    def prior_shift(self) -> float:
        """Log-odds added to "new": from the calibration's share of new-flank queries to
        the share expected among real queries (``new_prior``)."""
        return _logit(self.new_prior) - _logit(self.fitted_prior)

    def decide(self, cands: Sequence[Candidate]) -> tuple[float, float]:
        """(P(best candidate is right), P(new)) for ranked candidates, best first."""
        if len(cands) == 0:
            return 0.0, 1.0
        x = decision_features(cands)
        if self.decision is not None:
            shift = [0.0] * len(DECISION_CLASSES)
            shift[DECISION_CLASSES.index("new")] = self.prior_shift()
            p = self.decision.predict(x, shift)[0]
            return float(p[DECISION_CLASSES.index("top")]), float(p[DECISION_CLASSES.index("new")])
        if self.new is None or self.top is None:
            raise ReidError("the index calibration has no decision model: re-enroll")
        legacy = x[:, :2]
        # P(new) falls as the evidence for the best candidate grows: its features are -s1
        # and -margin, so that the monotone fit keeps that direction.
        z = self.new.logit(-legacy)[0] + self.prior_shift()
        p_new = float(np.clip(1 / (1 + np.exp(-z)), EPS, 1 - EPS))
        p_top = (1 - p_new) * float(self.top.predict(legacy)[0])
        return p_top, p_new

    def screen_decide(self, raws: Sequence[_Raw]) -> tuple[float, float] | None:
        """(P(best by global score is right), P(new)) from the embedding alone, or None
        without a screening model or candidates."""
        if self.screen is None or not raws:
            return None
        shift = [0.0] * len(DECISION_CLASSES)
        shift[DECISION_CLASSES.index("new")] = self.prior_shift()
        p = self.screen.predict(screen_features(raws), shift)[0]
        return float(p[DECISION_CLASSES.index("top")]), float(p[DECISION_CLASSES.index("new")])

    def to_dict(self) -> dict:
        out = {"pair": self.pair.to_dict()}
        for name in ("decision", "screen", "new", "top"):
            model = getattr(self, name)
            if model is not None:
                out[name] = model.to_dict()
        out.update(new_prior=self.new_prior, fitted_prior=self.fitted_prior, stats=self.stats)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> MatchCalibration:
        try:
            models = {
                k: calibrator_from_dict(d[k])
                for k in ("pair", "decision", "screen", "new", "top")
                if k in d
            }
        except TypeError:
            raise ReidError(
                "the index calibration is malformed: re-enroll to recalibrate"
            ) from None
        pair, decision = models.get("pair"), models.get("decision")
        legacy = [models.get("new"), models.get("top")]
        ok = isinstance(pair, LogisticCalibrator) and (
            (isinstance(decision, MultinomialCalibrator) and decision.names == DECISION_FEATURES)
            or (decision is None and all(isinstance(m, LogisticCalibrator) for m in legacy))
        )
        screen = models.get("screen")
        if screen is not None and not (
            isinstance(screen, MultinomialCalibrator) and screen.names == SCREEN_FEATURES
        ):
            ok = False
        if not ok:
            raise ReidError("the index calibration is not one this version reads: re-enroll")
        return cls(
            pair=pair,  # type: ignore[arg-type]
            decision=decision,  # type: ignore[arg-type]
            screen=screen,  # type: ignore[arg-type]
            new=legacy[0],  # type: ignore[arg-type]
            top=legacy[1],  # type: ignore[arg-type]
            new_prior=float(d.get("new_prior", 0.5)),
            fitted_prior=float(d.get("fitted_prior", 0.5)),
            stats=d.get("stats", {}),
        )


def _logit(p: float) -> float:
    p = min(max(p, EPS), 1 - EPS)
    return math.log(p / (1 - p))


# --------------------------------------------------------------------------- feature cache


class FeatureStore:
    """Local features (keypoints, descriptors, resized size) of gallery images by gallery
    id, of the kind the index records (:data:`reid.local.INDEX_KEY`): ``folder/features/<id>.npz``
    (descriptors as float16: half the space, no measurable change in matching), or in
    memory when ``folder`` is None. Files are written atomically; a small in-memory cache
    keeps the most recently used."""

    def __init__(self, folder: Path | str | None, cache_size: int = 4096) -> None:
        self.folder = None if folder is None else Path(folder) / FEATURES_DIR
        self._memory: dict[int, LocalFeatures] = {}
        self.cache_size = cache_size
        self._lock = threading.Lock()

    def _path(self, id_: int) -> Path:
        assert self.folder is not None
        return self.folder / f"{id_ // 1000:05d}" / f"{id_}.npz"

    def put(self, id_: int, features: LocalFeatures) -> None:
        if self.folder is not None:
            # remember what the file holds (float16 descriptors), so that this process
            # matches exactly as a later one that reads them back (was: float32 here,
            # float16 from disk, and a rerun decided some queries differently)
            features = LocalFeatures(
                np.asarray(features.xy, np.float32),
                np.asarray(features.desc).astype(np.float16).astype(np.float32),
                float(features.scale),
                tuple(int(v) for v in features.size),
            )
            path = self._path(id_)
            path.parent.mkdir(parents=True, exist_ok=True)

            def write(tmp: Path) -> None:
                with tmp.open("wb") as f:  # a file object: np.savez would add ".npz"
                    np.savez(
                        f,
                        xy=features.xy.astype(np.float32),
                        desc=features.desc.astype(np.float16),
                        scale=np.float64(features.scale),
                        size=np.array(features.size, np.int64),
                    )

            atomic_write(path, write)
        self._remember(id_, features)

    def _remember(self, id_: int, features: LocalFeatures) -> None:
        with self._lock:
            if len(self._memory) >= self.cache_size and self.folder is not None:
                self._memory.pop(next(iter(self._memory)))
            self._memory[id_] = features

    def get(self, id_: int) -> LocalFeatures:
        f = self._memory.get(id_)
        if f is not None:
            return f
        if self.folder is None:
            raise ReidError(f"no cached keypoints for gallery id {id_}")
        try:
            with np.load(self._path(id_)) as z:
                size = tuple(int(v) for v in z["size"]) if "size" in z else (0, 0)
                f = LocalFeatures(z["xy"], z["desc"].astype(np.float32), float(z["scale"]), size)
        except (OSError, KeyError, ValueError) as e:
            raise ReidError(
                f"{self._path(id_)}: cached keypoints of gallery id {id_} are missing or "
                f"unreadable ({e}); re-enroll the catalogue"
            ) from None
        self._remember(id_, f)
        return f

    def has(self, id_: int) -> bool:
        return id_ in self._memory or (self.folder is not None and self._path(id_).is_file())


# --------------------------------------------------------------------------- matcher


@dataclass
class _Raw:
    """A candidate before fusion: best cosine, best inliers, gallery evidence."""

    key: tuple[str, str, str]  # (species, individual, side)
    organisation: str
    hits: list[Hit]
    global_score: float
    inliers: int = 0
    verified: bool = False
    evidence: list[Evidence] = field(default_factory=list)
    # hits verified besides the first verify_images: the descriptor shortlist's picks
    also: list[Hit] = field(default_factory=list)
    # inliers counted on all the kept keypoints (MatchConfig.refine)
    refined: bool = False


def new_gallery_index(manifest: dict, embedding_dim: int, config: MatchConfig | None = None):
    """An empty gallery index for the model release of ``manifest``, recording the kind of
    local features it will cache (``config``'s; default RootSIFT): a matcher opened on it
    verifies with that kind and refuses another (:func:`reid.local.check_local_features`)."""
    from reid.index import GalleryIndex
    from reid.release import model_fingerprint

    index = GalleryIndex.create(
        model_fingerprint(manifest), embedding_dim, model_name=manifest["name"]
    )
    index.attachments[INDEX_KEY] = (config or MatchConfig()).sift.fingerprint()
    return index


def _with_index_refinement(local: LocalConfig | None, recorded: dict | None):
    """``local`` (None: None), or the index's own config when ``local`` asks for the same
    features without the extra keypoints a refining index keeps (``--local aliked`` on an
    index enrolled with ``--refine``): its keypoints are those plus more."""
    if local is None or not recorded or not recorded.get("refine_keypoints"):
        return local
    if getattr(local, "refine_keypoints", None) != 0:
        return local
    theirs = config_from_fingerprint(recorded)
    return theirs if replace(theirs, refine_keypoints=0) == local else local


def decisive_inliers(config: MatchConfig, local) -> int:
    """The inlier count at which verification stops early (0: never), for the kind of
    local features ``local``. Only inliers that one geometry checked are decisive: counts
    of confident learned matches without a geometric model (ALIKED's geometry
    ``"none"``) reach 20 on 1.7 % of nyala impostor pairs (the embedding's top 40,
    BENCHMARKS.md), so every candidate is verified with them."""
    if getattr(local, "geometry", "homography") != "homography":
        return 0
    return config.decisive_inliers


class _QueryMemo:
    """Results per gallery id for the last ``size`` query feature sets, thread-safe: a
    calibration query is searched up to three times (different images left out), and
    asks mostly the same gallery images again."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._held: OrderedDict[int, tuple[LocalFeatures, dict]] = OrderedDict()
        self._lock = threading.Lock()

    def known(self, query: LocalFeatures) -> dict:
        """A copy of what is remembered for ``query`` (the very object), else empty."""
        with self._lock:
            held = self._held.get(id(query))
            return dict(held[1]) if held is not None and held[0] is query else {}

    def store(self, query: LocalFeatures, known: dict) -> None:
        """Remember ``known`` for ``query``, forgetting the least recent beyond ``size``."""
        with self._lock:
            self._held[id(query)] = (query, known)
            self._held.move_to_end(id(query))
            while len(self._held) > self.size:
                self._held.popitem(last=False)


class Matcher:
    """A loaded model release, a gallery index and its keypoint cache and calibration."""

    def __init__(
        self,
        model,
        manifest: dict,
        index: GalleryIndex,
        features: FeatureStore,
        config: MatchConfig | None = None,
        device: str = "cpu",
    ) -> None:
        from reid.release import model_fingerprint

        check_fingerprint(index.fingerprint, model_fingerprint(manifest), "the gallery index")
        self.model = model
        self.manifest = manifest
        self.index = index
        self.features = features
        self.config = config or MatchConfig()
        self.device = device
        recorded = index.attachments.get(INDEX_KEY)
        #: the local features that verify: the configured kind, else the index's own
        self.local: LocalConfig = _with_index_refinement(
            self.config.local, recorded
        ) or config_from_fingerprint(recorded)
        check_local_features(recorded, self.local, "the gallery index")
        cal = index.attachments.get(CALIBRATION_KEY)
        self.calibration = MatchCalibration.from_dict(cal) if cal else None
        # locate's flank boxer (keyed on the model's flank head) and gallery_boxed's
        # answer (keyed on the index and its version): both are asked once per query
        self._boxer: tuple[object, object] | None = None
        self._boxed: tuple[GalleryIndex, int, bool] | None = None
        shortlist = self.config.local_shortlist
        if shortlist is None and self.calibration is not None:
            shortlist = self.calibration.stats.get("local_shortlist", 0)
        #: gallery images added to the verified candidates by descriptors (MatchConfig)
        self.local_shortlist = check_local_shortlist(shortlist or 0)
        self._mutual = _QueryMemo(MUTUAL_MEMO)  # descriptor counts per query feature set
        refine = self.config.refine
        if refine is None and self.calibration is not None:
            refine = self.calibration.stats.get("refine", 0)
        #: first verified candidates matched again on all kept keypoints (MatchConfig)
        self.refine = check_refine(refine or 0, self.local)
        self._refined_memo = _QueryMemo(REFINED_MEMO)  # refined pairs per query feature set
        prior = self.config.new_prior
        if prior is not None:
            check_new_prior(prior)
            if self.calibration is not None:
                self.calibration = replace(self.calibration, new_prior=float(prior))

    @classmethod
    def open(
        cls,
        index_dir: Path | str,
        model: Path | str | None = None,
        device: str = "cpu",
        config: MatchConfig | None = None,
    ) -> Matcher:
        """Open the index in ``index_dir`` with ``model`` (default: the release the index
        was built with, if it is still there, else the shipped default model)."""
        from reid.release import load_release, model_fingerprint

        index = GalleryIndex.open(index_dir)
        release = resolve_model(model, index.attachments.get("model_path"))
        net, manifest = load_release(release, device=device)
        check_fingerprint(
            index.fingerprint, model_fingerprint(manifest), index_dir, index.model_name
        )
        return cls(net, manifest, index, FeatureStore(index_dir), config, device)

    @property
    def model_version(self) -> str:
        return f"{self.manifest.get('name', '?')}@{self.index.fingerprint[:12]}"

    def embed_with_side(
        self, images: Sequence[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`embed` and each crop's P(left flank), None without a side head."""
        from reid.embed import embed_images_with_side

        if len(images) == 0:
            return np.zeros((0, self.index.dim), np.float32), None
        return embed_images_with_side(self.model, list(images), device=self.device)

    def locate(self, image: np.ndarray) -> tuple[int, int, int, int] | None:
        """The flank box (x, y, w, h in whole pixels) that the model's flank head
        (:mod:`reid.boxhead`) finds in a whole photo, or None: the model has none, or the
        gallery's photos were not cropped to boxes (:meth:`gallery_boxed`), so a query is
        matched as it is, as they were. Front doors call it for a photo that came
        without a box, unless told not to."""
        boxer = self._flank_boxer()
        if boxer is None or not self.gallery_boxed():
            return None
        b = boxer.box(image)
        return (int(b.x), int(b.y), int(b.w), int(b.h))

    def _flank_boxer(self):
        """The model's :class:`reid.boxhead.FlankBoxer` (None without a flank head), made
        once per flank head rather than once per query."""
        from reid.boxhead import boxer_of, head_of

        head = head_of(self.model)
        cached = self._boxer
        if cached is None or cached[0] is not head:
            cached = self._boxer = (head, boxer_of(self.model, self.manifest, self.device))
        return cached[1]

    def gallery_boxed(self) -> bool:
        """Whether at least half the gallery's photos were enrolled cropped to a box (a
        catalogue with boxes, e.g. from ``reid locate``, or uploads with one). A gallery
        of flank crops or whole photos enrolled as they are is not: cropping its queries
        would compare a part of a flank with whole ones (on synth-bench-v1's flank crops
        the head's box keeps 42 % of the crop and embedding top-1 falls from 0.93 to
        0.78; BENCHMARKS.md, "Locating the flank"). Counted once per version of the
        index (:attr:`reid.index.GalleryIndex.version`): enrolments and removals recount."""
        index, cached = self.index, self._boxed
        version = index.version
        if cached is not None and cached[0] is index and cached[1] == version:
            return cached[2]  # the gallery has not changed since it was counted
        entries = index.entries()
        boxed = sum(e.bbox is not None for e in entries.values())
        answer = bool(entries) and 2 * boxed >= len(entries)
        self._boxed = (index, version, answer)
        return answer

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """RGB uint8 crops -> (n, d) unit vectors."""
        from reid.embed import embed_images

        if len(images) == 0:
            return np.zeros((0, self.index.dim), np.float32)
        return embed_images(self.model, list(images), device=self.device)

    # ------------------------------------------------------------------ one query

    def match(
        self,
        image: np.ndarray,
        *,
        embedding: np.ndarray | None = None,
        side: str | None = None,
        species: str | None = None,
        organisations: Collection[str] | None = None,
        top: int = 5,
    ) -> MatchResult:
        """Match one flank crop (RGB uint8); ``side`` None searches both sides."""
        embeddings = None if embedding is None else np.asarray(embedding, np.float32)[None]
        return self.match_encounter(
            [image],
            embeddings=embeddings,
            side=side,
            species=species,
            organisations=organisations,
            top=top,
        )

    def match_encounter(
        self,
        images: Sequence[np.ndarray],
        *,
        embeddings: np.ndarray | None = None,
        side: str | None = None,
        species: str | None = None,
        organisations: Collection[str] | None = None,
        top: int = 5,
        left_probabilities: np.ndarray | None = None,
    ) -> MatchResult:
        """Match several frames of one animal (a burst) as one query: a candidate's
        global and local scores are its best over the frames.

        With ``side`` None, a model with a side head decides the side from the photos
        (``left_probabilities``: the frames' P(left) when already computed with the
        ``embeddings``): only that side is searched when it is sure enough
        (``MatchConfig.side_threshold``), both otherwise."""
        if len(images) == 0:
            raise ReidError("nothing to match: no image given")
        if side is not None and side not in SIDES:
            raise ReidError(f"side {side!r} is not left, right or unknown (None)")
        if top < 1:
            raise ReidError(f"top must be >= 1, got {top}")
        calibration = self._calibration()
        p_left = left_probabilities
        if embeddings is None:
            embeddings, p_left = self.embed_with_side(images)
        elif side is None and p_left is None and head_of(self.model) is not None:
            _, p_left = self.embed_with_side(images)
        embeddings = np.asarray(embeddings, np.float32).reshape(len(images), -1)
        left_probability = None
        if side is None and p_left is not None:
            left_probability = float(np.mean(p_left))
            side = decide_side(left_probability, self.config.side_threshold)
        local = self.local
        screened: list[tuple[float, float]] = []

        def screen(ranked: list[_Raw]) -> bool:
            if self.config.screen <= 0:
                return False
            p = calibration.screen_decide(ranked)
            if p is None or max(p) < self.config.screen:
                return False
            screened.append(p)
            return True

        raw = self.candidates(
            embeddings,
            lambda i: extract(images[i], local),
            side=side,
            species=species,
            orgs=organisations,
            screen=screen,
        )
        result = self._result(raw, calibration, top, screened[0] if screened else None)
        result.searched = [side] if side is not None else list(SIDES)
        result.left_probability = left_probability
        return result

    def candidates(
        self,
        embeddings: np.ndarray,
        feats: Sequence[LocalFeatures] | Callable[[int], LocalFeatures],
        *,
        side: str | None,
        species: str | None,
        orgs: Collection[str] | None = None,
        exclude_ids: Collection[int] = (),
        exclude_flank: tuple[str, str, str] | None = None,
        verify: bool = True,
        screen: Callable[[list[_Raw]], bool] | None = None,
    ) -> list[_Raw]:
        """Search, aggregate per flank and verify the best; unfused, best global first.

        ``feats`` holds the frames' keypoints, or makes frame ``i``'s on demand: only the
        ``verify_frames`` frames with the best global scores are verified. ``screen``
        sees the unverified candidates first: when it returns True, nothing is verified."""
        cfg = self.config
        extra = len(exclude_ids) + (64 if exclude_flank is not None else 0)
        per_frame = self.index.search(
            embeddings, cfg.shortlist * (1 if side else 2) + extra, species, side, orgs
        )
        flanks: dict[tuple[str, str, str], _Raw] = {}
        where: dict[tuple[str, str, str], dict[int, int]] = {}  # flank -> image id -> hit
        for hits in per_frame:
            for h in hits:
                flank = h.entry.flank
                if h.id in exclude_ids or flank == exclude_flank:
                    continue
                if side is not None and h.entry.side != side:  # the partitions guarantee it
                    raise AssertionError(f"gallery {h.entry.side} flank returned for {side}")
                c = flanks.get(flank)
                if c is None:
                    flanks[flank] = _Raw(flank, h.entry.organisation, [h], h.score)
                    where[flank] = {h.id: 0}
                    continue
                at = where[flank]
                j = at.get(h.id)
                if j is None:
                    at[h.id] = len(c.hits)
                    c.hits.append(h)
                elif h.score > c.hits[j].score:  # same image, better frame
                    c.hits[j] = h
                c.global_score = max(c.global_score, h.score)
        ranked = sorted(flanks.values(), key=lambda c: (-c.global_score, c.key))
        for c in ranked:
            c.hits.sort(key=lambda h: (-h.score, h.id))
        if verify and ranked and not (screen is not None and screen(ranked)):
            best = [max((h.score for h in hits), default=-np.inf) for hits in per_frame]
            frames = sorted(range(len(best)), key=lambda i: (-best[i], i))
            frames = frames[: max(1, cfg.verify_frames)]
            get = feats if callable(feats) else feats.__getitem__
            more = None
            if self.local_shortlist > 0:

                def more(first: LocalFeatures) -> list[_Raw]:
                    return self._descriptor_picks(
                        first, embeddings, flanks, species, side, orgs, exclude_ids,
                        exclude_flank,
                    )  # fmt: skip

            made: dict[int, LocalFeatures] = {}  # each frame's keypoints made once

            def frame(i: int) -> LocalFeatures:
                if i not in made:
                    made[i] = get(i)
                return made[i]

            self._verify_cascade(ranked[: cfg.verify_top], [lambda i=i: frame(i) for i in frames],
                                 more)  # fmt: skip
            if more is not None:  # picked flanks the search did not return join the list
                ranked = sorted(flanks.values(), key=lambda c: (-c.global_score, c.key))
            if self.refine > 0:  # against each frame verified (frames in the order made)
                self._refine_first(ranked, list(made.values()))
        return ranked

    def _refine_first(self, raws: Sequence[_Raw], frames: Sequence[LocalFeatures]) -> None:
        """The first :attr:`refine` verified candidates by inliers (ties: global score)
        matched again against the verified ``frames`` on all their kept keypoints
        (``local.refined()``), each on its best verified image (its best count over the
        frames, as verification keeps): the candidate's inliers and that image's evidence,
        put first, become the refined count and matches (label-blind, as ``reid eval
        --refine`` is; the pair and decision models are fitted on the same counts,
        :func:`fit_calibration` searching through :meth:`candidates`)."""
        verified = [c for c in raws if c.verified and c.evidence]
        first = sorted(verified, key=lambda c: (-c.inliers, -c.global_score, c.key))
        first = first[: self.refine]
        if not first or not frames:
            return
        best = [c.evidence[0] for c in first]  # evidence: most inliers first
        per_frame = [self._refined(f, [e.gallery_id for e in best]) for f in frames]
        results = [max(vs, key=lambda v: v.inliers) for vs in zip(*per_frame, strict=True)]
        for c, e, v in zip(first, best, results, strict=True):
            dx, dy = (e.bbox[0], e.bbox[1]) if e.bbox else (0, 0)
            c.evidence[0] = replace(
                e,
                inliers=v.inliers,
                query_points=[(float(x), float(y)) for x, y in v.query_xy],
                gallery_points=[(float(x) + dx, float(y) + dy) for x, y in v.gallery_xy],
            )
            c.inliers, c.refined = v.inliers, True
            # the refined image first (its count is the candidate's), the rest as before
            rest = sorted(c.evidence[1:], key=lambda e: (-e.inliers, -e.global_score, e.gallery_id))
            c.evidence[1:] = rest

    def _refined(self, query: LocalFeatures, ids: Sequence[int]) -> list[Verification]:
        """``query`` verified against gallery ``ids`` on all kept keypoints, remembered
        for the last few query feature sets (a calibration query is searched up to three
        times, with different images left out, and refines mostly the same pairs)."""
        known = self._refined_memo.known(query)
        todo = list(dict.fromkeys(i for i in ids if i not in known))
        if todo:
            got = verify_many(query, [self.features.get(i) for i in todo], self.local.refined())
            known.update(zip(todo, got, strict=True))
        self._refined_memo.store(query, known)
        return [known[i] for i in ids]

    def _descriptor_picks(
        self,
        query: LocalFeatures,
        embeddings: np.ndarray,
        flanks: dict[tuple[str, str, str], _Raw],
        species: str | None,
        side: str | None,
        orgs: Collection[str] | None,
        exclude_ids: Collection[int],
        exclude_flank: tuple[str, str, str] | None,
    ) -> list[_Raw]:
        """The candidates of the ``local_shortlist`` gallery images of the searched
        partition that share the most mutual-neighbour descriptors with ``query`` (ties:
        the higher embedding score), best first. A picked image's flank joins ``flanks``
        (with its embedding score) when the search did not return it; the image is
        verified besides the flank's first ``verify_images``."""
        allowed = None if orgs is None else set(orgs)
        entries = self.index.entries()
        wanted = [
            i
            for i, e in sorted(entries.items())
            if (species is None or e.species == species)
            and (side is None or e.side == side)
            and (allowed is None or e.organisation in allowed)
            and i not in exclude_ids
            and e.flank != exclude_flank
        ]
        # entries removed (or enrolled without keypoints yet) since the listing are skipped
        ids, vectors = self.index.live_vectors(wanted)
        keep = [r for r, i in enumerate(ids) if self.features.has(int(i))]
        ids, vectors = ids[keep], vectors[keep]
        if len(ids) == 0:
            return []
        q = np.asarray(embeddings, np.float32).reshape(len(embeddings), -1)
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        cosine = (vectors @ q.T).max(axis=1)
        counts = self._mutual_counts(query, ids.tolist())
        best_of_flank: dict[tuple[str, str, str], float] = {}
        for i, s in zip(ids.tolist(), cosine.tolist(), strict=True):
            f = entries[i].flank
            best_of_flank[f] = max(best_of_flank.get(f, -np.inf), s)
        # images sharing no descriptor with the query are never picked
        order = sorted((r for r in range(len(ids)) if counts[r] > 0),
                       key=lambda r: (-counts[r], -cosine[r], ids[r]))  # fmt: skip
        picked: list[_Raw] = []
        for r in order[: self.local_shortlist]:
            i, e = int(ids[r]), entries[int(ids[r])]
            hit = Hit(i, float(cosine[r]), e)
            c = flanks.get(e.flank)
            if c is None:  # its global score: the best of its images, as the search's
                c = flanks[e.flank] = _Raw(e.flank, e.organisation, [hit], best_of_flank[e.flank])
            elif all(h.id != i for h in c.hits):
                c.hits.append(hit)
                c.hits.sort(key=lambda h: (-h.score, h.id))
            if all(h.id != i for h in c.hits[: self.config.verify_images]) and all(
                h.id != i for h in c.also
            ):
                c.also.append(next(h for h in c.hits if h.id == i))
            if all(c is not d for d in picked):
                picked.append(c)
        return picked

    def _mutual_counts(self, query: LocalFeatures, ids: Sequence[int]) -> np.ndarray:
        """Mutual-neighbour counts of ``query`` against gallery ``ids``, remembered for
        the last few query feature sets (a calibration query is searched up to three
        times, with different images left out)."""
        from reid.local.recall import mutual_neighbour_counts_to

        known = self._mutual.known(query)
        todo = [i for i in ids if i not in known]
        # counted on the keypoints every pair is matched on (a refining gallery keeps more)
        first = getattr(self.local, "first", lambda f: f)
        for start in range(0, len(todo), MUTUAL_BLOCK):  # keypoints loaded a block at a time
            block = todo[start : start + MUTUAL_BLOCK]
            gallery = [first(self.features.get(i)) for i in block]
            got = mutual_neighbour_counts_to(first(query), gallery)
            known.update(zip(block, map(float, got), strict=True))
        self._mutual.store(query, known)
        return np.array([known[i] for i in ids], np.float64)

    def _verify_cascade(
        self,
        raws: Sequence[_Raw],
        frames: Sequence[Callable[[], LocalFeatures]],
        more: Callable[[LocalFeatures], list[_Raw]] | None = None,
    ) -> None:
        """Verify ``raws`` against the frames (best frame first, keypoints made on demand),
        ``verify_group`` candidates at a time, until one has ``decisive_inliers``.
        ``more(best frame's keypoints)``: candidates verified after ``raws`` when none of
        them was decisive against the best frame (the descriptor shortlist)."""
        raws = list(raws)
        for n, frame in enumerate(frames):
            f = frame()
            if self._verify_groups(raws, f):
                return
            if n == 0 and more is not None:
                # the descriptor shortlist, drawn only when the embedding's candidates
                # were not decisive against the best frame
                picked = more(f)
                # a picked image of a flank verified already: that image alone now
                again = [(c, h) for c in picked if any(c is d for d in raws) for h in c.also]
                if again:
                    self._verify_pairs(again, [f])
                extra = [c for c in picked if all(c is not d for d in raws)]
                raws += extra
                if self._verify_groups(extra, f):
                    return

    def _verify_groups(self, raws: Sequence[_Raw], f: LocalFeatures) -> bool:
        """Verify ``raws`` against ``f``, ``verify_group`` at a time; True once one of
        them has ``decisive_inliers`` (the rest are then left unverified)."""
        decisive = decisive_inliers(self.config, self.local)
        step = max(1, self.config.verify_group) if decisive > 0 else max(1, len(raws))
        for start in range(0, len(raws), step):
            group = raws[start : start + step]
            self._verify(group, [f])
            # Earlier groups were checked when verified: only this one can be decisive.
            if decisive > 0 and any(c.inliers >= decisive for c in group):
                return True
        return False

    def _verify(self, raws: Sequence[_Raw], feats: Sequence[LocalFeatures]) -> None:
        """Verify each candidate's first ``verify_images`` images and its ``also``."""
        self._verify_pairs(
            [(c, h) for c in raws for h in [*c.hits[: self.config.verify_images], *c.also]],
            feats,
        )

    def _verify_pairs(
        self, pairs: Sequence[tuple[_Raw, Hit]], feats: Sequence[LocalFeatures]
    ) -> None:
        """Verify each (candidate, gallery hit) against the frames ``feats``: a
        candidate's inliers and evidence keep the best over its pairs and frames."""
        if not pairs:
            return
        gallery = [self.features.get(h.id) for _, h in pairs]
        per_frame = [verify_many(f, gallery, self.local) for f in feats]
        for j, (c, h) in enumerate(pairs):
            best = max((v[j] for v in per_frame), key=lambda v: v.inliers)
            c.verified = True
            c.inliers = max(c.inliers, best.inliers)
            seen = next((e for e in c.evidence if e.gallery_id == h.id), None)
            if seen is not None:  # verified against an earlier frame: keep the better
                if best.inliers <= seen.inliers:
                    continue
                c.evidence.remove(seen)
            dx, dy = (h.entry.bbox[0], h.entry.bbox[1]) if h.entry.bbox else (0, 0)
            c.evidence.append(
                Evidence(
                    image=h.entry.image,
                    bbox=h.entry.bbox,
                    gallery_id=h.id,
                    global_score=h.score,
                    inliers=best.inliers,
                    query_points=[(float(x), float(y)) for x, y in best.query_xy],
                    gallery_points=[(float(x) + dx, float(y) + dy) for x, y in best.gallery_xy],
                )
            )
        for c in {id(c): c for c, _ in pairs}.values():
            c.evidence.sort(key=lambda e: (-e.inliers, -e.global_score, e.gallery_id))

    def _calibration(self) -> MatchCalibration:
        if self.calibration is None:
            raise ReidError(
                "the gallery index is not calibrated (it needs at least two flanks with two "
                "or more images each): enroll more images with reid enroll"
            )
        return self.calibration

    def _result(
        self,
        raw: list[_Raw],
        calibration: MatchCalibration,
        top: int,
        screened: tuple[float, float] | None = None,
    ) -> MatchResult:
        """The decision on ranked candidates; ``screened``: the screening model's
        (P(top), P(new)) when it decided without verification."""
        cands = rank(raw, calibration)
        if screened is not None:
            # Nothing was verified: rank by the embedding alone, as the screen did.
            cands.sort(key=lambda c: -c.global_score)
            p_top, p_new = screened
        else:
            p_top, p_new = calibration.decide(cands)
        known = bool(cands) and p_top >= p_new
        best = cands[0] if known else None
        return MatchResult(
            decision="known" if known else "new",
            individual=best.individual if best else None,
            side=best.side if best else None,
            probability=p_top if known else p_new,
            new_probability=p_new,
            candidates=cands[:top],
            model_version=self.model_version,
            verified=screened is None,
        )

    # ------------------------------------------------------------------ pairs

    def local_features(self, image: np.ndarray) -> LocalFeatures:
        """Local features of an RGB uint8 crop, as the verifier uses them: extract once
        and pass to :meth:`pair_probability` when one image is paired many times."""
        return extract(image, self.local)

    def pair_probability(
        self,
        a: np.ndarray | LocalFeatures,
        b: np.ndarray | LocalFeatures,
        emb_a: np.ndarray | None = None,
        emb_b: np.ndarray | None = None,
    ) -> float:
        """Calibrated P(same flank) of two query images (RGB uint8 crops, or their
        :meth:`local_features` together with both embeddings)."""
        calibration = self._calibration()
        if emb_a is None or emb_b is None:
            if isinstance(a, LocalFeatures) or isinstance(b, LocalFeatures):
                raise ReidError("pair_probability on keypoints needs both embeddings")
            e = self.embed([a, b])
            emb_a, emb_b = e[0], e[1]
        ea = np.asarray(emb_a, np.float64).ravel()
        eb = np.asarray(emb_b, np.float64).ravel()
        cos = float(ea @ eb / (np.linalg.norm(ea) * np.linalg.norm(eb) + 1e-12))
        fa = a if isinstance(a, LocalFeatures) else self.local_features(a)
        fb = b if isinstance(b, LocalFeatures) else self.local_features(b)
        # a refining gallery's pair model saw its likely pairs' counts on all kept
        # keypoints (MatchConfig.refine): a pair is scored as those were
        local = self.local.refined() if self.refine > 0 else self.local
        (v,) = verify_many(fa, [fb], local)
        x = np.array([[cos, math.log1p(v.inliers)]])
        return float(calibration.pair.predict(x)[0])


def rank(raw: Sequence[_Raw], calibration: MatchCalibration) -> list[Candidate]:
    """Fuse global and local scores of raw candidates and rank them, best first."""
    if not raw:
        return []
    g = np.array([c.global_score for c in raw])
    n = np.array([c.inliers for c in raw], np.float64)
    fused = calibration.fused(g, n)
    probs = calibration.pair.predict(np.column_stack([g, np.log1p(n)]))
    out = [
        Candidate(
            individual=c.key[1],
            species=c.key[0],
            side=c.key[2],
            organisation=c.organisation,
            global_score=float(c.global_score),
            local_score=float(c.inliers),
            fused_score=float(f),
            probability=float(p),
            evidence=c.evidence
            or [
                Evidence(h.entry.image, h.entry.bbox, h.id, h.score, 0, [], []) for h in c.hits[:1]
            ],
            refined=c.refined,
        )
        for c, f, p in zip(raw, fused, probs, strict=True)
    ]
    order = sorted(range(len(out)), key=lambda i: (-out[i].fused_score, -out[i].global_score, i))
    return [out[i] for i in order]


def resolve_model(model: Path | str | None, recorded: str | None = None) -> Path:
    """The release to use: ``model``, else the one recorded in the index, else the shipped
    default (:data:`reid.methods.embedding.DEFAULT_MODEL`)."""
    from reid.methods.embedding import DEFAULT_MODEL

    if model is not None:
        return Path(model)
    if recorded and (Path(recorded) / "manifest.json").is_file():
        return Path(recorded)
    if (DEFAULT_MODEL / "manifest.json").is_file():
        return DEFAULT_MODEL
    raise ReidError(f"no default model is installed at {DEFAULT_MODEL}; pass --model RELEASE_DIR")


# --------------------------------------------------------------------------- fitting


def fit_calibration(
    matcher: Matcher,
    sample: int = 1000,
    seed: int = 0,
    new_prior: float = 0.5,
    workers: int = 2,
    show_progress: bool = True,
    related: Callable[[int], Collection[int]] | None = None,
) -> MatchCalibration:
    """Fit the fusion and decision models on held-out queries made from the gallery.

    Up to ``sample`` gallery images (seeded draw) whose flank has another image are
    queries twice: against the gallery without that image (known) and without any
    image of its flank (new). Verified candidates give the fusion model's samples
    (genuine when the candidate is the query's flank); the best two fused scores of
    each query give the decision models' samples. Needs two flanks with >= 2 images.

    Such a known query sees one image of its flank fewer than a real query of that
    flank will, so its evidence is weaker and a model fitted on it is under-confident on
    real queries. The shift is measured one step down: queries whose flank has >= 3
    images are also made without one more image of their flank; a model fitted on
    those is tempered until it best predicts the leave-one-out outcomes, and that
    temperature (fitted at least on :data:`MIN_TEMPERATURE_QUERIES` such queries, else
    1) is given to the decision and screening models for the step to real queries.

    ``related(id)``: gallery ids left out with calibration query ``id`` besides itself
    (its near-duplicate frames, the rest of its burst): a real query comes from another
    encounter than the gallery's photos, and a frame matched against its own burst
    makes "known" look far easier than it is (ATRW, BENCHMARKS.md "Calibration on real
    photos"). A query with no other photo of its flank left is made only as "new".

    Raises :class:`CannotCalibrate` when fewer than :data:`MIN_KNOWN_QUERIES` of the
    drawn queries keep another photo of their flank (every flank's photos one burst:
    only "new" queries, a model that calls everything new) or when no candidate of a
    query's own flank was verified (no genuine pair for the fusion model).
    """
    index = matcher.index
    entries = index.entries()
    members: dict[tuple[str, str, str], list[int]] = {}
    for i, e in entries.items():
        members.setdefault(e.flank, []).append(i)
    eligible = sorted(i for i, e in entries.items() if len(members[e.flank]) >= 2)
    if len({entries[i].flank for i in eligible}) < 2:
        raise CannotCalibrate(
            "cannot calibrate: the gallery needs at least two flanks with two or more images"
        )
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(eligible, min(sample, len(eligible)), replace=False).tolist())
    # each query with what is left out with it (itself, its near-duplicates)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        outs = list(pool.map(
            lambda q: {q, *(related(q) if related is not None else ())}, chosen
        ))  # fmt: skip
    knowable = sum(
        any(i not in out for i in members[entries[q].flank])
        for q, out in zip(chosen, outs, strict=True)
    )
    if knowable < MIN_KNOWN_QUERIES:
        raise CannotCalibrate(
            f"cannot calibrate: only {knowable} of {len(chosen)} calibration queries have "
            "another photo of their flank that is not a near-duplicate of them (a frame "
            f"of the same burst or video); at least {MIN_KNOWN_QUERIES} are needed: enrol "
            "flanks photographed on separate occasions"
        )
    vectors = index.vectors(chosen)
    # row -> candidates of that query with one more image of its flank left out
    fewer: dict[int, list[_Raw]] = {}

    def one(row: int) -> tuple[list[_Raw], list[_Raw], tuple[str, str, str], _Raw | None]:
        q = chosen[row]
        e = entries[q]
        feats = [matcher.features.get(q)]
        emb = vectors[row : row + 1]
        out = outs[row]
        others = [i for i in members[e.flank] if i not in out]
        new = matcher.candidates(emb, feats, side=e.side, species=e.species, exclude_flank=e.flank)
        if not others:  # nothing of its flank but itself and its near-duplicates
            return [], new, e.flank, None
        known = matcher.candidates(emb, feats, side=e.side, species=e.species, exclude_ids=out)
        if len(others) >= 2:  # one step further from real queries: one more image out
            drop = others[int(np.random.default_rng([seed, q]).integers(len(others)))]
            fewer[row] = matcher.candidates(
                emb, feats, side=e.side, species=e.species, exclude_ids={*out, drop}
            )
        if not any(c.key == e.flank and c.verified for c in known):
            # Make sure the fusion model sees genuine pairs even when the embedding
            # ranks the true flank too low to be verified.
            true = [c for c in known if c.key == e.flank]
            if true:
                matcher._verify(true[:1], feats)
                return known, new, e.flank, true[0]
        return known, new, e.flank, None

    results = []
    with (
        progress_bar(len(chosen), "calibrating", enabled=show_progress) as advance,
        ThreadPoolExecutor(max(1, workers)) as pool,
    ):
        for r in pool.map(one, range(len(chosen))):
            results.append(r)
            advance(1)
    pair_x, pair_y = [], []
    for known, new, flank, _ in results:
        for c in [*known, *new]:
            if c.verified:
                pair_x.append([c.global_score, math.log1p(c.inliers)])
                pair_y.append(c.key == flank)
    if not any(pair_y):
        raise CannotCalibrate(
            f"cannot calibrate: none of {len(chosen)} calibration queries had its own flank "
            "verified among its candidates (no genuine pair to fit match probabilities on)"
        )
    pair = LogisticCalibrator(names=("global", "local")).fit(np.array(pair_x), np.array(pair_y))
    provisional = MatchCalibration(pair)
    # "dec"/"scr": leave-one-out samples; "dec2"/"scr2": one image further down
    samples: dict[str, list] = {k: [] for k in ("dec", "scr", "dec2", "scr2")}

    def arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
        return (
            np.array([f for f, _ in samples[name]]),
            np.array([o for _, o in samples[name]], np.int64),
        )

    def add(raws: list[_Raw], flank: tuple[str, str, str], absent: bool, *levels: str) -> None:
        cands = rank(raws, provisional)
        if not cands:  # nothing of this species and side left: "new", no features
            return
        right = (cands[0].species, cands[0].individual, cands[0].side) == flank
        outcome = 2 if absent else 0 if right else 1
        # raws are best global first: the screen's "top" is the embedding's best
        top = 2 if absent else 0 if raws[0].key == flank else 1
        dec, scr = decision_features(cands)[0], screen_features(raws)[0]
        for level in levels:
            samples["dec" + level].append((dec, outcome))
            samples["scr" + level].append((scr, top))

    for row, (known, new, flank, forced) in enumerate(results):
        if forced is not None:  # the true flank's forced verification must not count
            forced.inliers, forced.verified, forced.evidence = 0, False, []
        add(known, flank, False, "")
        add(new, flank, True, "", "2")  # new-flank queries serve both levels
        if row in fewer:
            add(fewer[row], flank, False, "2")
    fitted = {}
    for name, features in (("dec", DECISION_FEATURES), ("scr", SCREEN_FEATURES)):
        x, y = arrays(name)
        model = MultinomialCalibrator(names=features, classes=DECISION_CLASSES, l2=1.0)
        model.fit(x, y)
        if len(fewer) >= MIN_TEMPERATURE_QUERIES:
            x2, y2 = arrays(name + "2")
            step = MultinomialCalibrator(names=features, classes=DECISION_CLASSES, l2=1.0)
            step.fit(x2, y2)
            # from the step model's share of "new" to the leave-one-out one's
            new_at = DECISION_CLASSES.index("new")
            shift = [0.0] * len(DECISION_CLASSES)
            shift[new_at] = _logit(model.base_rates()[new_at]) - _logit(step.base_rates()[new_at])
            model.temperature = step.fit_temperature(x, y, shift)
        fitted[name] = model
    decision, screen = fitted["dec"], fitted["scr"]
    y = arrays("dec")[1]
    known_rows = y != 2
    return MatchCalibration(
        pair=pair,
        decision=decision,
        screen=screen,
        new_prior=new_prior,
        fitted_prior=float((np.sum(y == 2) + 0.5) / (len(y) + 1.0)),  # smoothed: never 0 or 1
        stats={
            "queries": len(chosen),
            "pairs": len(pair_y),
            "genuine_pairs": int(np.sum(pair_y)),
            "top1_known": float(np.mean(y[known_rows] == 0)) if known_rows.any() else 0.0,
            "temperature_queries": len(fewer),
            "temperature": decision.temperature,
            "screen_temperature": screen.temperature,
            "local_shortlist": matcher.local_shortlist,
            "refine": matcher.refine,
        },
    )


def near_duplicate_related(
    index: GalleryIndex, threshold: float | None = None
) -> Callable[[int], list[int]]:
    """:func:`fit_calibration`'s ``related`` for a gallery: a photo's near-duplicates
    (:mod:`reid.near_duplicates`: photos of its flank linked, directly or through others,
    by a whole-photo signature similarity >= ``threshold``, default
    :data:`~reid.near_duplicates.NEAR_DUPLICATE_THRESHOLD`). Found per flank when a
    calibration query first needs it (one small decode per photo of that flank); a photo
    that can no longer be read has none."""
    from reid.near_duplicates import NEAR_DUPLICATE_THRESHOLD, image_signature, link_groups

    limit = NEAR_DUPLICATE_THRESHOLD if threshold is None else threshold
    entries = index.entries()
    members: dict[tuple[str, str, str], list[int]] = {}
    for i, e in sorted(entries.items()):
        members.setdefault(e.flank, []).append(i)
    groups: dict[tuple[str, str, str], dict[int, int]] = {}
    lock = threading.Lock()

    def signature(i: int) -> np.ndarray | None:
        try:
            return image_signature(Path(entries[i].image))
        except (ReidError, OSError, ValueError):
            return None

    def group_of(flank: tuple[str, str, str]) -> dict[int, int]:
        with lock:
            if flank in groups:
                return groups[flank]
        ids = members[flank]
        sigs = [signature(i) for i in ids]
        ok = [k for k, s in enumerate(sigs) if s is not None]
        linked = np.eye(len(ids), dtype=bool)
        if ok:
            sig = np.stack([sigs[k] for k in ok])
            linked[np.ix_(ok, ok)] |= sig @ sig.T >= limit
        found = dict(zip(ids, link_groups(linked).tolist(), strict=True))
        with lock:
            groups[flank] = found
        return found

    def related(i: int) -> list[int]:
        flank = entries[i].flank
        g = group_of(flank)
        return [j for j in members[flank] if j != i and g[j] == g[i]]

    return related


# --------------------------------------------------------------------------- enrolment


def entry_of(record: ImageRecord, organisation: str = "") -> GalleryEntry:
    """The gallery record of a catalogue image (absolute path, box as integers)."""
    b = record.bbox
    bbox = None if b is None else (round(b.x), round(b.y), round(b.w), round(b.h))
    return GalleryEntry(
        image=str(Path(record.path).resolve()),
        individual=record.individual_id or "",
        species=record.species,
        side=record.side,
        organisation=organisation,
        bbox=bbox,
    )


def extract_records(
    records: Sequence[ImageRecord],
    config: LocalConfig | None,
    workers: int = 2,
    progress: Callable[[int], None] | None = None,
) -> list[LocalFeatures]:
    """Local features of each record's image (its box, if any), in worker threads."""
    from reid.embed import load_record_image

    def one(r: ImageRecord) -> LocalFeatures:
        f = extract(load_record_image(r), config)
        if progress:
            progress(1)
        return f

    with ThreadPoolExecutor(max(1, workers)) as pool:
        return list(pool.map(one, records))


@dataclass
class EnrollSummary:
    added: int
    skipped: dict[str, int]
    total: int
    calibration: dict
    located: int = 0  # photos boxed to their flank (enroll(locate=True))

    def to_dict(self) -> dict:
        return asdict(self)


def enroll(
    records: Sequence[ImageRecord],
    index_dir: Path | str,
    model: Path | str | None = None,
    *,
    organisation: str = "",
    workers: int = 2,
    calibration_sample: int = 1000,
    new_prior: float | None = None,
    config: MatchConfig | None = None,
    show_progress: bool = True,
    device: str = "cpu",
    calibration: str = "gallery",
    locate: bool = False,
) -> EnrollSummary:
    """Add the identified left/right flank images of ``records`` to the index in
    ``index_dir`` (created if absent), cache their keypoints, recalibrate, save.

    ``locate``: crop each new photo that has no box to its flank, found by the model's
    flank head (a release without one is refused), for galleries of whole-animal field
    photos; queries to such a gallery are then cropped the same way
    (:meth:`Matcher.gallery_boxed`). A gallery that mostly holds whole photos is refused
    (its queries are matched whole). Whatever ``locate``, a box-less photo of a flank
    already enrolled with a box counts as enrolled (a rerun adds nothing).

    ``new_prior``: the share of new-flank queries expected, stored with the calibration
    (default: the index's current value, else 0.5).

    Skipped: unidentified images, unknown sides, and images already enrolled (same file
    and box). An existing index made with another model is refused.

    ``calibration``: "gallery" fits the match probabilities on the gallery itself (each
    sampled photo a query with its near-duplicates out, :func:`near_duplicate_related`),
    or uses the model release's calibration (:mod:`reid.release_calibration`) when the
    gallery cannot calibrate itself (too small, or each flank's photos one burst:
    :class:`CannotCalibrate`); "release" always uses the release's.
    """
    if calibration not in CALIBRATION_SOURCES:
        raise ReidError(
            f"calibration {calibration!r} is not one of: {', '.join(CALIBRATION_SOURCES)}"
        )
    from reid.embed import embed_records
    from reid.release import load_release, model_fingerprint

    index_dir = Path(index_dir)
    if new_prior is not None:
        check_new_prior(new_prior)
    existing = None
    if is_index(index_dir):
        existing = GalleryIndex.open(index_dir)
    elif index_dir.exists() and any(index_dir.iterdir()):
        raise ReidError(
            f"{index_dir} exists and is not a gallery index: give a new or empty folder"
        )
    release = resolve_model(model, existing.attachments.get("model_path") if existing else None)
    net, manifest = load_release(release, device=device)
    fingerprint = model_fingerprint(manifest)
    if existing is not None:
        check_fingerprint(existing.fingerprint, fingerprint, index_dir, existing.model_name)
        index = existing
    else:  # a new index caches the configured kind (default rootsift)
        index = new_gallery_index(manifest, net.embedding_dim, config)
    index.attachments["model_path"] = str(Path(release).resolve())
    have = {(e.image, e.bbox) for e in index.entries().values()}
    # a photo of a flank enrolled with a box (e.g. by locate) is that box: a rerun of the
    # same box-less catalogue, with or without locate, finds it enrolled
    boxes_of: dict[tuple, tuple] = {}
    for e in sorted(index.entries().values(), key=lambda e: (e.image, e.bbox or ())):
        if e.bbox is not None:
            boxes_of[(e.image, e.individual, e.side)] = e.bbox
    located = 0
    if locate:
        whole = sum(e.bbox is None for e in index.entries().values())
        if whole and 2 * whole > len(index):
            raise ReidError(
                f"{index_dir} holds whole photos ({whole} of {len(index)} without a box), and "
                "its queries are matched whole: enroll located photos into a new index"
            )
        records, located = _located(records, net, manifest, device, show_progress, boxes_of)
    else:
        records = [_enrolled_box(r, boxes_of) for r in records]
    skipped = {"unidentified": 0, "unknown side": 0, "already enrolled": 0}
    todo: list[ImageRecord] = []
    new_entries: list[GalleryEntry] = []
    for r in records:
        if not r.individual_id:
            skipped["unidentified"] += 1
            continue
        if r.side not in SIDES:
            skipped["unknown side"] += 1
            continue
        e = entry_of(r, organisation)
        if (e.image, e.bbox) in have:
            skipped["already enrolled"] += 1
            continue
        have.add((e.image, e.bbox))
        todo.append(r)
        new_entries.append(e)
    matcher = Matcher(net, manifest, index, FeatureStore(index_dir), config, device)
    if todo:
        with progress_bar(len(todo), "embedding", enabled=show_progress) as advance:
            vectors = embed_records(net, todo, workers=workers, device=device, progress=advance)
        with progress_bar(len(todo), "keypoints", enabled=show_progress) as advance:
            feats = extract_records(todo, matcher.local, workers, advance)
        ids = index.add(vectors, new_entries)
        for i, f in zip(ids, feats, strict=True):
            matcher.features.put(i, f)
    if new_prior is None:
        old = matcher.calibration
        new_prior = 0.5 if old is None else old.new_prior
    fitted = calibrate_gallery(
        matcher, release, manifest, calibration, calibration_sample, new_prior, workers,
        show_progress,
    )  # fmt: skip
    index.attachments[CALIBRATION_KEY] = fitted.to_dict()
    index.save(index_dir)
    return EnrollSummary(len(todo), skipped, len(index), fitted.stats, located)


def _enrolled_box(record: ImageRecord, boxes_of: dict) -> ImageRecord:
    """``record`` with the box its flank was enrolled with, when it has none of its own."""
    if record.bbox is not None or not record.individual_id:
        return record
    key = (str(Path(record.path).resolve()), record.individual_id, record.side)  # as entry_of
    box = boxes_of.get(key)
    return record if box is None else replace(record, bbox=BBox(*box))


def _located(records, net, manifest, device, show_progress, boxes_of):
    """``records`` with the enrollable new photos that have no box boxed to their flank
    by the model's flank head (``enroll(locate=True)``), and how many were boxed.
    ``boxes_of``: (image, individual, side) -> its box in the gallery; a photo already
    enrolled takes that box (so it counts as enrolled) instead of a new one. A release
    without a flank head is refused: the matcher crops queries with the head only."""
    from reid.boxhead import boxer_of
    from reid.progress import progress_bar

    records = [_enrolled_box(r, boxes_of) for r in records]
    todo = [
        i for i, r in enumerate(records)
        if r.bbox is None and r.individual_id and r.side in SIDES
    ]  # fmt: skip
    if not todo:
        return records, 0
    locator = boxer_of(net, manifest, device)
    if locator is None:
        raise ReidError(
            f"{manifest.get('name', 'the model release')} has no flank head, so queries to a "
            "located gallery could not be cropped the same way: box the photos with reid "
            "locate --method cam and give the queries boxes too, or use a release with one"
        )
    with progress_bar(len(todo), "locating flanks", enabled=show_progress) as advance:
        boxes = locator.locate_records([records[i] for i in todo], progress=advance)
    out = list(records)
    for i, box in zip(todo, boxes, strict=True):
        out[i] = replace(records[i], bbox=box)
    return out, len(todo)


#: Where ``reid enroll`` takes the match calibration from (see :func:`enroll`).
CALIBRATION_SOURCES = ("gallery", "release")


def can_calibrate(index: GalleryIndex) -> bool:
    """Whether the gallery can be calibrated on itself: two flanks with >= 2 photos."""
    sizes: dict[tuple[str, str, str], int] = {}
    for e in index.entries().values():
        sizes[e.flank] = sizes.get(e.flank, 0) + 1
    return sum(n >= 2 for n in sizes.values()) >= 2


def calibrate_gallery(
    matcher: Matcher,
    release: Path | str,
    manifest: dict,
    source: str = "gallery",
    sample: int = 1000,
    new_prior: float = 0.5,
    workers: int = 2,
    show_progress: bool = True,
) -> MatchCalibration:
    """The calibration ``reid enroll`` stores with a gallery (see :func:`enroll`);
    its ``stats["source"]`` says which it is. A gallery that cannot calibrate itself
    (:class:`CannotCalibrate`) gets the release's, with ``stats["gallery_refused"]``
    saying why; without one, the error says why."""
    from reid.release_calibration import load_from_release

    why = (
        "the gallery needs at least two flanks with two or more images" if source == "gallery"
        else None
    )  # fmt: skip
    if source == "gallery" and can_calibrate(matcher.index):
        try:
            cal = fit_calibration(
                matcher, sample, new_prior=new_prior, workers=workers,
                show_progress=show_progress, related=near_duplicate_related(matcher.index),
            )  # fmt: skip
        except CannotCalibrate as e:
            why = str(e).removeprefix("cannot calibrate: ")
        else:
            cal.stats["source"] = "gallery"
            return cal
    if matcher.refine > 0:  # a release's calibration never saw refined counts
        raise CannotCalibrate(
            f"cannot calibrate: {why or 'a release calibration was asked for'}; a gallery "
            f"that refines its first candidates (--refine {matcher.refine}) is calibrated on "
            "itself only: enroll at least two flanks with two photos each, taken apart"
        )
    shipped = load_from_release(release, manifest, matcher.local)
    if shipped is None:
        if source == "release":
            raise ReidError(
                f"the model release {release} ships no calibration: fit one with reid "
                "calibrate, or calibrate on the gallery (--calibration gallery)"
            )
        raise CannotCalibrate(
            f"cannot calibrate: {why} (or a model release that ships a calibration: "
            "reid calibrate)"
        )
    # the matcher's descriptor shortlist is kept with the index as a fitted one would be
    stats = {**shipped.stats, "source": "release", "local_shortlist": matcher.local_shortlist}
    if why is not None:
        stats["gallery_refused"] = why
    return replace(shipped, new_prior=new_prior, stats=stats)


def check_local_shortlist(m) -> int:
    """Refuse a descriptor shortlist size that is not a whole number >= 0."""
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 0:
        raise ReidError(f"the descriptor shortlist must be a whole number >= 0, got {m!r}")
    return int(m)


def check_refine(n, local) -> int:
    """Refuse a refinement count that is not a whole number >= 0, or one > 0 with local
    features that keep no more keypoints than they match on (ALIKED's
    ``refine_keypoints``)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ReidError(f"the refinement count must be a whole number >= 0, got {n!r}")
    if n > 0 and not getattr(local, "refine_keypoints", 0):
        raise ReidError(
            f"refining the first {n} candidates needs a gallery whose keypoints include more "
            f"than it matches on ({local.name} here): enroll it into a new index with "
            "reid enroll --local aliked --refine N"
        )
    return int(n)


def check_new_prior(p: float) -> None:
    """Refuse a share of new-flank queries that is not strictly between 0 and 1."""
    if not 0.0 < float(p) < 1.0:
        raise ReidError(
            f"expected share of new individuals {p} is not between 0 and 1 (exclusive)"
        )


def write_json(result: MatchResult | list[MatchResult]) -> str:
    """One JSON document for one result or a list of them."""
    if isinstance(result, list):
        return json.dumps([r.to_dict() for r in result], indent=2)
    return json.dumps(result.to_dict(), indent=2)
