"""Images to embeddings: safe decode, crop, letterbox, normalise, batch, forward.

Resizing is a *letterbox*: the image is scaled to fit inside the model's input size with
its aspect ratio kept, centred, and the border filled with the normalisation mean (zero
after normalising). Stripe and rosette identity lives in the geometry of the pattern
(spacing, angles, shapes), which stretching would distort differently for every crop
shape; flank crops are about 2:1 like the default input of 160x320, so for them the
border is a few pixels at most, while odd boxes from camera-trap frames keep their
proportions instead of being squashed. Training must use this same :func:`preprocess`.

Decoding runs in DataLoader worker processes. Workers touch only PIL and numpy, never
OpenCV or torch kernels, so the default ``fork`` start is safe even after the parent has
started OpenCV's or torch's thread pools (and it starts in milliseconds, where ``spawn``
re-imports torch in every worker); pass ``start_method="spawn"`` to be conservative.
An undecodable image stops the run with one :class:`~reid.errors.ImageError` line that
names it, raised in the parent, not a worker traceback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from reid.data.records import ImageRecord
from reid.errors import ImageError
from reid.images import crop, load_image
from reid.model import EmbeddingModel

#: Large JPEGs are decoded at a reduced scale first when their longer side exceeds
#: this many times the input's longer side (only for records without a box).
DECODE_OVERSAMPLE = 2


def letterbox(image: np.ndarray, input_size: tuple[int, int], fill: Sequence[int]) -> np.ndarray:
    """``image`` (H x W x 3 uint8) scaled to fit ``input_size`` (h, w), aspect kept, centred
    on a ``fill``-coloured canvas; antialiased when shrinking."""
    out_h, out_w = input_size
    h, w = image.shape[:2]
    scale = min(out_h / h, out_w / w)
    new_h = min(out_h, max(1, round(h * scale)))
    new_w = min(out_w, max(1, round(w * scale)))
    if (new_h, new_w) != (h, w):
        resized = Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR)
        image = np.asarray(resized)
    if (new_h, new_w) == (out_h, out_w):
        return np.ascontiguousarray(image)
    canvas = np.empty((out_h, out_w, 3), np.uint8)
    top, left = (out_h - new_h) // 2, (out_w - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = image
    # the fill only where the image is not (one side pads; a broadcast fill of the whole
    # canvas cost a third of the letterboxing)
    colour = np.asarray(fill, np.uint8)
    canvas[:top] = colour
    canvas[top + new_h :] = colour
    canvas[top : top + new_h, :left] = colour
    canvas[top : top + new_h, left + new_w :] = colour
    return canvas


def letterbox_input(
    image: np.ndarray, input_size: tuple[int, int], mean: Sequence[float]
) -> np.ndarray:
    """The uint8 half of :func:`preprocess`: ``image`` (H x W x 3 uint8 RGB) letterboxed to
    ``input_size`` = (h, w) on a canvas of the mean colour. Decoding workers stop here and
    the consumer normalises whole batches with :func:`normalise_batch` (a quarter of the
    bytes to pass around, and one vectorised pass instead of one per image)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 RGB image, got {image.dtype} {image.shape}")
    fill = np.clip(np.round(np.asarray(mean, np.float32) * 255.0), 0, 255).astype(np.uint8)
    return letterbox(image, input_size, fill)


def normalise_batch(
    batch: torch.Tensor | np.ndarray, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """Letterboxed uint8 images (N, h, w, 3) as model input (N, 3, h, w) float32 in
    channels_last memory (what the network runs fastest on; no transposing copy):
    ``(x / 255 - mean) / std``, the same float32 operations, in the same order, as
    :func:`preprocess`, so both give bit-identical inputs (a test checks it). For the
    consumer of decoded images, not for forked decoding workers (torch kernels)."""
    if isinstance(batch, np.ndarray):
        batch = torch.from_numpy(np.ascontiguousarray(batch))
    if batch.dtype != torch.uint8 or batch.ndim != 4 or batch.shape[3] != 3:
        shape = tuple(batch.shape)
        raise ValueError(f"expected an N x H x W x 3 uint8 batch, got {batch.dtype} {shape}")
    x = batch.permute(0, 3, 1, 2).to(torch.float32)  # keeps the NHWC strides: channels_last
    x.mul_(torch.tensor(np.float32(1 / 255.0)))
    x.sub_(torch.tensor(np.asarray(mean, np.float32)).view(1, 3, 1, 1))
    x.div_(torch.tensor(np.asarray(std, np.float32)).view(1, 3, 1, 1))
    return x


def preprocess(
    image: np.ndarray,
    input_size: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
) -> torch.Tensor:
    """An RGB uint8 image (H x W x 3) as the model's input: (3, h, w) float32, letterboxed
    to ``input_size`` = (h, w) and normalised with ``mean`` / ``std`` (0..1 scale)."""
    boxed = letterbox_input(image, input_size, mean)
    # numpy, not torch: this runs in forked DataLoader workers (see the module text);
    # normalise_batch does the same float32 operations in the same order on batches.
    mean_a = np.asarray(mean, np.float32)
    std_a = np.asarray(std, np.float32)
    x = (boxed.astype(np.float32) * np.float32(1 / 255.0) - mean_a) / std_a
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def load_record_image(record: ImageRecord, input_size: tuple[int, int] | None = None) -> np.ndarray:
    """A record's image, safely decoded, cropped to its box if it has one.

    With ``input_size``, an image without a box whose longer side is over
    :data:`DECODE_OVERSAMPLE` times the input's is decoded at a reduced scale (JPEG DCT
    scaling: several times faster on large photos, and it is shrunk to the input anyway).
    Training should read images through this function too, so both see the same pixels.
    """
    if record.bbox is not None:
        return crop(load_image(record.path), record.bbox, name=str(record.path))
    max_side = None if input_size is None else DECODE_OVERSAMPLE * max(input_size)
    return load_image(record.path, max_side=max_side)


class RecordDataset(Dataset):
    """ImageRecords as model inputs. Item ``i`` is ``(tensor, i, error)``: ``error`` is ""
    or the one-line reason image ``i`` could not be read (its tensor is then zeros), so the
    caller can raise it cleanly in the main process."""

    def __init__(
        self,
        records: Sequence[ImageRecord],
        input_size: tuple[int, int],
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        self.records = list(records)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.mean = tuple(mean)
        self.std = tuple(std)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, str]:
        try:
            image = load_record_image(self.records[i], self.input_size)
        except ImageError as e:
            return torch.zeros(3, *self.input_size), i, str(e) or "unreadable image"
        return preprocess(image, self.input_size, self.mean, self.std), i, ""


@contextlib.contextmanager
def inference(model: EmbeddingModel, device: str | torch.device) -> Iterator[torch.device]:
    """Model in eval mode on ``device`` under ``torch.inference_mode``; mode restored after.

    The model is moved to channels_last memory format (and stays so: parameters keep
    their identity, values are unchanged): on CPU the forward pass is about 6x faster
    that way (efficientnet_lite0, 160x320, batch 32: 60 vs 10 images/s on 2 cores).
    """
    was_training = model.training
    device = torch.device(device)
    model.to(device=device, memory_format=torch.channels_last).eval()
    try:
        with torch.inference_mode():
            yield device
    finally:
        model.train(was_training)


def _forward(model: EmbeddingModel, batch: torch.Tensor, device: torch.device) -> np.ndarray:
    batch = batch.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    return model(batch).float().cpu().numpy()


def embed_records(
    model: EmbeddingModel,
    records: Sequence[ImageRecord],
    batch_size: int = 32,
    workers: int = 2,
    device: str | torch.device = "cpu",
    progress: Callable[[int], None] | None = None,
    start_method: str | None = "fork",
) -> np.ndarray:
    """Embeddings of ``records`` in order: (N, D) float32 unit vectors.

    ``workers`` processes decode and preprocess (0: in this process); ``progress(n)`` is
    called after each batch of n images. ``start_method`` is the workers' multiprocessing
    start method (None: the platform default; "fork" falls back to it where unavailable).
    """
    cfg = model.config
    out = np.empty((len(records), model.embedding_dim), np.float32)
    if not records:
        return out
    dataset = RecordDataset(records, cfg.input_size, cfg.mean, cfg.std)
    n_batches = -(-len(records) // batch_size)
    workers = max(0, min(workers, n_batches))
    context = None
    if workers > 0 and start_method is not None:
        import multiprocessing

        if start_method in multiprocessing.get_all_start_methods():
            context = start_method
    with inference(model, device) as dev:
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=False,
            num_workers=workers,
            multiprocessing_context=context,
            pin_memory=dev.type == "cuda",
            prefetch_factor=2 if workers > 0 else None,
        )
        for batch, index, errors in loader:
            bad = [e for e in errors if e]
            if bad:
                raise ImageError(bad[0])
            out[index.numpy()] = _forward(model, batch, dev)
            if progress:
                progress(len(index))
    return out


def embed_images(
    model: EmbeddingModel,
    images: Sequence[np.ndarray],
    batch_size: int = 32,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Embeddings of decoded RGB uint8 images (e.g. uploads), in this process: (N, D)."""
    cfg = model.config
    out = np.empty((len(images), model.embedding_dim), np.float32)
    with inference(model, device) as dev:
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            boxed = np.stack([letterbox_input(im, cfg.input_size, cfg.mean) for im in chunk])
            batch = normalise_batch(boxed, cfg.mean, cfg.std)
            out[start : start + len(chunk)] = _forward(model, batch, dev)
    return out


def embed_images_with_side(
    model: EmbeddingModel,
    images: Sequence[np.ndarray],
    batch_size: int = 32,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`embed_images` plus each image's P(left flank) from the model's side head
    (:mod:`reid.side`), read off the same forward pass; None when the model has none."""
    from reid.side import head_of

    if head_of(model) is None:
        return embed_images(model, images, batch_size, device), None
    cfg = model.config
    out = np.empty((len(images), model.embedding_dim), np.float32)
    p_left = np.empty(len(images), np.float32)
    with inference(model, device) as dev:
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            boxed = np.stack([letterbox_input(im, cfg.input_size, cfg.mean) for im in chunk])
            batch = normalise_batch(boxed, cfg.mean, cfg.std)
            emb, p = forward_with_side(model, batch, dev)
            out[start : start + len(chunk)] = emb
            p_left[start : start + len(chunk)] = p
    return out, p_left


def forward_with_side(
    model: EmbeddingModel, batch: torch.Tensor, device: torch.device
) -> tuple[np.ndarray, np.ndarray | None]:
    """One forward pass (inside :func:`inference`): the batch's embeddings and each
    image's P(left flank) read off the same feature map, None without a side head."""
    from reid.side import side_probabilities

    batch = batch.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    features = model.forward_features(batch)
    emb = torch.nn.functional.normalize(model.forward_neck(features), dim=1)
    return emb.float().cpu().numpy(), side_probabilities(model, features)
