"""One unit of season work, the same in every engine: decode, embed, match encounters.

An :class:`EncounterWorker` holds one opened :class:`~reid.match.Matcher` (model +
gallery) and a pool of decoding threads. :meth:`EncounterWorker.decode` reads the frames
of some encounters (safe decode, crop to the box, letterbox, normalise: PIL and numpy
release the GIL, so threads decode in parallel and nothing is forked after OpenCV's or
torch's thread pools have started); :meth:`EncounterWorker.process` runs the network
on all their frames in batches and matches each encounter, its frames as one burst, with
the fused, calibrated matcher. Decoding stops at the letterboxed uint8 crop; the batch is
normalised in one vectorised pass (:func:`~reid.embed.normalise_batch`) right before the
network, bit-identical to :func:`~reid.embed.preprocess` and a quarter of the bytes to
pass between threads or Ray workers. Results are plain JSON-ready dicts (:func:`result_row`),
which is what the journal stores and what the Ray engine ships back.
"""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
import torch

from reid.boxhead import head_of as flank_head_of
from reid.bulk.bursts import Encounter
from reid.bulk.sources import Capture
from reid.data.records import BBox, format_timestamp
from reid.embed import forward_with_side, inference, letterbox_input, normalise_batch
from reid.errors import ImageError
from reid.images import crop, load_image
from reid.side import head_of

#: Longer side of a frame without a box, as decoded (the verifier works at <= 480 px).
FRAME_MAX_SIDE = 1024


#: Frames of a burst verified by runs journalled before ``verify_frames`` was a setting
#: (their headers do not name it): only another value goes into a journal header.
UNRECORDED_VERIFY_FRAMES = 2


@dataclass(frozen=True)
class JobSpec:
    """What every worker needs to rebuild the same matcher: plain values, picklable."""

    index_dir: str
    model: str | None = None
    device: str = "cpu"
    batch_size: int = 32
    decode_threads: int = 2
    match_threads: int = 2  # encounters matched at once (see EncounterWorker.match)
    top: int = 5
    screen: float = 0.0  # MatchConfig.screen: decide on the embedding alone when this sure
    new_prior: float | None = None  # MatchConfig.new_prior; None: the gallery's
    verify_frames: int = 2  # MatchConfig.verify_frames: frames of a burst verified
    # MatchConfig.side_threshold; None: the matcher's default
    side_threshold: float | None = None
    # frames without a box are cropped to the flank the model's flank head finds, when
    # the gallery's photos were cropped to boxes (EncounterWorker.locate, Matcher.locate);
    # no effect for a model without one
    locate: bool = True

    def settings(self) -> dict:
        """The settings that change results (the journal header keeps them)."""
        # each only when set: journals of runs made before it existed still resume
        out: dict = {"top": self.top}
        if self.screen:
            out["screen"] = self.screen
        if self.new_prior is not None:
            out["new_prior"] = self.new_prior
        if self.verify_frames != UNRECORDED_VERIFY_FRAMES:
            out["verify_frames"] = self.verify_frames
        if self.side_threshold is not None:
            out["side_threshold"] = self.side_threshold
        if not self.locate:
            out["locate"] = False
        return out

    def match_config(self):
        from reid.match import MatchConfig

        extra = {} if self.side_threshold is None else {"side_threshold": self.side_threshold}
        return MatchConfig(
            screen=self.screen, new_prior=self.new_prior, verify_frames=self.verify_frames,
            **extra,
        )

    def to_dict(self) -> dict:
        return asdict(self)


@contextlib.contextmanager
def single_threaded_kernels(controller=None) -> Iterator[None]:
    """BLAS (numpy's, OpenCV's, FAISS's) and OpenCV's own parallel loops on one thread
    each inside the block (process-wide), restored after it. ``controller``: a
    ``threadpoolctl.ThreadpoolController`` made once, so that entering the block does
    not scan the loaded libraries again (1.4 ms each time); None makes one.

    Matching an encounter (RootSIFT extraction, descriptor products, RANSAC) is small
    work: left multi-threaded, each call wakes a second thread that mostly spins (on two
    cores, 250 encounters took 7.0 s wall and 13.4 s of CPU). Single-threaded kernels
    and one encounter per thread instead: 4.3 s wall, 8.3 s of CPU, the same results.
    """
    import cv2
    from threadpoolctl import ThreadpoolController

    controller = controller or ThreadpoolController()
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with controller.limit(limits=1, user_api="blas"):
            yield
    finally:
        cv2.setNumThreads(before)


def load_capture(capture: Capture) -> np.ndarray:
    """A capture's pixels: RGB uint8, cropped to its box (pixels or fractions)."""
    name = str(capture.path)
    if capture.bbox is None:
        return load_image(capture.path, max_side=FRAME_MAX_SIDE)
    image = load_image(capture.path)
    box = capture.bbox
    if capture.bbox_relative:
        h, w = image.shape[:2]
        box = BBox(box.x * w, box.y * h, box.w * w, box.h * h)
    return crop(image, box, name=name)


def input_settings(matcher) -> tuple:
    """(input_size, mean, std) of a matcher's model: what decoding needs."""
    cfg = matcher.model.config
    return tuple(cfg.input_size), tuple(cfg.mean), tuple(cfg.std)


def model_version(matcher) -> str:
    """Release name and the start of its fingerprint, e.g. ``interim@3f2a9c01b7de``."""
    return str(matcher.model_version)


def decode_capture(capture: Capture, settings: tuple):
    """(image, letterboxed uint8 model input, "") of one capture, or (None, None, reason)
    when unreadable."""
    try:
        image = load_capture(capture)
    except ImageError as e:
        return None, None, str(e) or "unreadable image"
    size, mean, _std = settings
    return image, letterbox_input(image, size, mean), ""


def decode_encounters(encounters: Sequence[Encounter], settings: tuple, threads: int = 2):
    """Decode the frames of ``encounters`` in a pool of ``threads`` (for Ray tasks)."""
    with ThreadPoolExecutor(max(1, threads), "reid-decode") as pool:
        futures = [[pool.submit(decode_capture, f, settings) for f in e.frames] for e in encounters]
        return _collect(list(encounters), futures)


def _collect(encounters: list[Encounter], futures) -> Decoded:
    images, tensors, errors = [], [], []
    for fs in futures:
        got = [f.result() for f in fs]
        images.append([g[0] for g in got])
        tensors.append([g[1] for g in got])
        errors.append([g[2] for g in got])
    return Decoded(encounters, images, tensors, errors)


@dataclass
class Decoded:
    """The frames of some encounters, decoded: images, model inputs, or an error each."""

    encounters: list[Encounter]
    images: list[list[np.ndarray | None]]
    tensors: list[list[np.ndarray | None]]  # letterboxed uint8 (h, w, 3) model inputs
    errors: list[list[str]]
    # each encounter's frames' P(left flank) from the side head, set by embedding
    left_probabilities: list[np.ndarray] | None = None
    # each frame's flank box found by the model (x, y, w, h as fractions of the frame
    # decoded), None where the frame had a box or none was looked for; set by locate
    boxes: list[list[list[float] | None]] | None = None


class EncounterWorker:
    """Decode, embed and match encounters with one matcher (see the module text)."""

    def __init__(self, spec: JobSpec, matcher=None) -> None:
        if matcher is None:
            from reid.match import Matcher

            matcher = Matcher.open(
                spec.index_dir, model=spec.model, device=spec.device, config=spec.match_config()
            )
        self.spec = spec
        self.matcher = matcher
        self.input = input_settings(matcher)
        self._pool = ThreadPoolExecutor(max(1, spec.decode_threads), "reid-decode")
        self.network_s = 0.0  # wall time in the network (normalising the batches included)
        self._match_pool = (
            ThreadPoolExecutor(spec.match_threads, "reid-match") if spec.match_threads > 1 else None
        )
        from threadpoolctl import ThreadpoolController

        self._threadpools = ThreadpoolController()  # torch, FAISS, OpenCV loaded by now

    @property
    def model_version(self) -> str:
        return model_version(self.matcher)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._match_pool is not None:
            self._match_pool.shutdown(wait=False, cancel_futures=True)

    def _decode_one(self, capture: Capture):
        return decode_capture(capture, self.input)

    def decode_async(self, encounters: Sequence[Encounter]):
        """Start decoding the frames of ``encounters`` in the threads; returns a callable
        that waits for them and gives the :class:`Decoded`."""
        encounters = list(encounters)
        futures = [[self._pool.submit(self._decode_one, f) for f in e.frames] for e in encounters]

        def wait() -> Decoded:
            return _collect(encounters, futures)

        return wait

    def decode(self, encounters: Sequence[Encounter]) -> Decoded:
        return self.decode_async(encounters)()

    def embed(self, decoded: Decoded) -> list[np.ndarray]:
        """Each encounter's frame embeddings (n_good_frames, d), in batches; frames
        without a box are first cropped to the flank found (:meth:`locate`, once)."""
        if decoded.boxes is None:
            self.locate(decoded)
        flat = [t for ts in decoded.tensors for t in ts if t is not None]
        d = self.matcher.model.embedding_dim
        out = np.empty((len(flat), d), np.float32)
        model = self.matcher.model
        sided = head_of(model) is not None
        p_left = np.empty(len(flat), np.float32)
        bs = max(1, self.spec.batch_size)
        _size, mean, std = self.input
        started = time.perf_counter()
        with inference(model, self.spec.device) as dev:
            for start in range(0, len(flat), bs):
                batch = normalise_batch(np.stack(flat[start : start + bs]), mean, std)
                if not sided:
                    batch = batch.to(dev).contiguous(memory_format=torch.channels_last)
                    out[start : start + len(batch)] = model(batch).float().cpu().numpy()
                    continue
                emb, p = forward_with_side(model, batch, dev)  # one pass: embedding and side
                out[start : start + len(batch)] = emb
                p_left[start : start + len(batch)] = p
        self.network_s += time.perf_counter() - started
        per, sides, i = [], [], 0
        for ts in decoded.tensors:
            n = sum(t is not None for t in ts)
            per.append(out[i : i + n])
            sides.append(p_left[i : i + n])
            i += n
        decoded.left_probabilities = sides if sided else None
        return per

    def locate(self, decoded: Decoded) -> None:
        """Crop the frames that came without a box to the flank that the model's flank
        head finds (:meth:`reid.match.Matcher.locate`; ``JobSpec.locate``) and make their
        model inputs again; the boxes go to ``decoded.boxes``. Runs where the network
        does (the local engine's thread, a Ray worker), as the start of :meth:`embed`."""
        decoded.boxes = [[None] * len(e.frames) for e in decoded.encounters]
        if not self.spec.locate or flank_head_of(self.matcher.model) is None:
            return
        size, mean, _std = self.input
        started = time.perf_counter()
        for k, enc in enumerate(decoded.encounters):
            for j, capture in enumerate(enc.frames):
                image = decoded.images[k][j]
                if image is None or capture.bbox is not None:
                    continue
                box = self.matcher.locate(image)
                if box is None:
                    continue
                h, w = image.shape[:2]
                decoded.boxes[k][j] = [round(box[0] / w, 6), round(box[1] / h, 6),
                                       round(box[2] / w, 6), round(box[3] / h, 6)]  # fmt: skip
                image = crop(image, BBox(*box), name=str(capture.path))
                decoded.images[k][j] = image
                decoded.tensors[k][j] = letterbox_input(image, size, mean)
        self.network_s += time.perf_counter() - started

    def process(self, decoded: Decoded) -> list[dict]:
        """Locate, embed and match decoded encounters; one result row each, in order."""
        return self.match(decoded, self.embed(decoded))

    def match(self, decoded: Decoded, embeddings: list[np.ndarray]) -> list[dict]:
        """Match decoded encounters given their frame embeddings (:meth:`embed`); one
        result row each, in order.

        Encounters are independent: ``match_threads`` of them are matched at once, each
        on one thread with single-threaded kernels (:func:`single_threaded_kernels`;
        OpenCV and numpy release the GIL). The rows do not depend on the thread count."""
        n = len(decoded.encounters)
        with single_threaded_kernels(self._threadpools):
            if self._match_pool is None or n < 2:
                return [self._match_one(decoded, embeddings, k) for k in range(n)]
            return list(
                self._match_pool.map(lambda k: self._match_one(decoded, embeddings, k), range(n))
            )

    def _match_one(self, decoded: Decoded, embeddings: list[np.ndarray], k: int) -> dict:
        enc = decoded.encounters[k]
        good = [j for j, im in enumerate(decoded.images[k]) if im is not None]
        skipped = {
            enc.frames[j].key: decoded.errors[k][j]
            for j in range(len(enc.frames))
            if decoded.images[k][j] is None
        }
        if not good:
            return result_row(enc, None, None, None, None, skipped, self.model_version)
        images = [decoded.images[k][j] for j in good]
        emb = embeddings[k]
        side = None if enc.side == "unknown" else enc.side
        p_left = decoded.left_probabilities
        result = self.matcher.match_encounter(
            images, embeddings=emb, side=side, species=enc.species, top=self.spec.top,
            left_probabilities=None if p_left is None else p_left[k],
        )
        rep = max(range(len(good)), key=lambda j: (images[j].shape[0] * images[j].shape[1], -j))
        row = result_row(enc, result, emb, good, rep, skipped, self.model_version)
        boxes = decoded.boxes[k] if decoded.boxes else []
        if any(b is not None for b in boxes):
            # the flank each frame was cropped to (fractions of the frame), by frame key
            row["located_boxes"] = {
                enc.frames[j].key: b for j, b in enumerate(boxes) if b is not None
            }
        return row


def photo_side(given: str, searched: list[str]) -> str | None:
    """The side read from the photo: the one side searched when none was given, else None."""
    if given in ("left", "right") or len(searched) != 1:
        return None
    return searched[0]


def result_row(
    enc: Encounter,
    result,
    embeddings: np.ndarray | None,
    good: list[int] | None,
    rep: int | None,
    skipped: dict[str, str],
    model_version: str,
) -> dict:
    """One encounter's journal record: JSON-ready, probabilities rounded to 6 places.

    Encounters that match nobody keep their representative frame (the largest crop) and
    its embedding, plus the burst's mean embedding, for clustering new individuals."""
    frame = enc.frames[0]
    row: dict = {
        "id": enc.id,
        "deployment": enc.deployment,
        "species": enc.species,
        "side": enc.side,
        "start": format_timestamp(enc.start) if enc.start else "",
        "end": format_timestamp(enc.end) if enc.end else "",
        "site": frame.site or "",
        "country": frame.country or "",
        "lat": frame.lat,
        "lon": frame.lon,
        "frames": [f.key for f in enc.frames],
        "media": [str(f.path) for f in enc.frames],
        "skipped": skipped,
        "model_version": model_version,
    }
    if result is None:
        row.update(
            decision="unreadable",
            individual=None,
            matched_side=None,
            photo_side=None,
            left_probability=None,
            probability=None,
            new_probability=None,
            candidates=[],
            verified=None,
        )
        return row
    row.update(
        decision=result.decision,
        individual=result.individual,
        matched_side=result.side,
        # the side the photo shows, when the side was not given and the side head was sure
        photo_side=photo_side(enc.side, result.searched),
        left_probability=None
        if result.left_probability is None
        else round(float(result.left_probability), 6),
        probability=round(float(result.probability), 6),
        new_probability=round(float(result.new_probability), 6),
        verified=bool(result.verified),
        candidates=[
            {
                "individual": c.individual,
                "side": c.side,
                "probability": round(float(c.probability), 6),
                "fused_score": round(float(c.fused_score), 6),
                "evidence": c.evidence[0].image if c.evidence else "",
            }
            for c in result.candidates[:3]
        ],
    )
    if result.decision != "known":
        mean = embeddings.mean(axis=0)
        mean /= max(float(np.linalg.norm(mean)), 1e-12)
        row["representative"] = enc.frames[good[rep]].key
        row["embedding"] = encode_vector(mean)
        row["representative_embedding"] = encode_vector(embeddings[rep])
    return row


def encode_vector(v: np.ndarray) -> str:
    """A float32 vector as base64 text (exact: the journal must round-trip it)."""
    return base64.b64encode(np.asarray(v, "<f4").tobytes()).decode("ascii")


def decode_vector(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), "<f4").copy()
