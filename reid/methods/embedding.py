"""Method ``embedding``: cosine similarity of a released embedding model's vectors."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from reid.data.records import ImageRecord
from reid.errors import ReidError

#: The shipped default release: ``models/bigcat-default`` at the repository root.
DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "bigcat-default"


class EmbeddingMethod:
    """Embed every image once (decoding in ``workers`` processes), then score all pairs
    by the dot product of the unit vectors. ``model`` is a release folder (default: the
    shipped :data:`DEFAULT_MODEL`); it is loaded, and its SHA-256 checked, on creation.
    ``input_size`` (H, W) embeds at another size than the release's, to choose one
    (``bench/bench_input_size.py``). Progress: one unit per image embedded."""

    name = "embedding"

    def __init__(
        self,
        workers: int = 2,
        model: Path | str | None = None,
        batch_size: int = 32,
        device: str = "cpu",
        input_size: tuple[int, int] | None = None,
    ) -> None:
        from dataclasses import replace

        from reid.release import load_release, model_fingerprint

        if model is None:
            if not (DEFAULT_MODEL / "manifest.json").is_file():
                raise ReidError(
                    f"no default model is installed at {DEFAULT_MODEL}; pass --model RELEASE_DIR"
                )
            model = DEFAULT_MODEL
        self.workers = max(0, workers)
        self.batch_size = max(1, batch_size)
        self.device = device
        self.model, self.manifest = load_release(Path(model), device=device)
        if input_size is not None:
            self.model.config = replace(self.model.config, input_size=input_size)
            self.manifest = {
                "train_input_size": self.manifest["input_size"],
                **self.manifest,
                "input_size": list(self.model.config.input_size),
            }
        self.fingerprint = model_fingerprint(self.manifest)

    def work(self, n_images: int) -> int:
        return n_images

    def embeddings(
        self, records: Sequence[ImageRecord], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        from reid.embed import embed_records

        return embed_records(
            self.model,
            records,
            batch_size=self.batch_size,
            workers=self.workers,
            device=self.device,
            progress=progress,
        )

    def similarity(
        self, records: Sequence[ImageRecord], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        e = self.embeddings(records, progress)
        return e @ e.T


class RerankedEmbeddingMethod(EmbeddingMethod):
    """Method ``embedding-rerank``: :class:`EmbeddingMethod`'s cosine similarity re-ranked
    by k-reciprocal neighbours among all the images scored together
    (:func:`reid.rerank.k_reciprocal_rerank`, the paper's parameters). Uses no label."""

    name = "embedding-rerank"

    def similarity(
        self, records: Sequence[ImageRecord], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        from reid.rerank import k_reciprocal_rerank

        return k_reciprocal_rerank(super().similarity(records, progress))
