"""Named synthetic catalogues, so that benchmark figures can be reproduced by name.

Individuals are identified by (seed, species, index): catalogues with different seeds
share no individual, so ``synth-bench-v1`` is made of individuals that no model trained
on ``synth-train-v1`` has seen. Default model v0.13 was also trained on seeds 3, 4, 5, 8,
10 and 12-15 (seed 6: a leopard-only stage, not released), the stage catalogues
synth-train-v3..v12, removed since (git keeps them): a catalogue meant to be unseen by it
takes another seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reid.data.records import ImageRecord
from reid.errors import ReidError
from reid.progress import progress_bar


@dataclass(frozen=True)
class SynthPreset:
    name: str
    species: tuple[str, ...]
    individuals: int  # per species
    images_per_side: int
    seed: int
    mode: str  # "flank" crops or whole "frame"s with a bounding box
    purpose: str

    @property
    def images(self) -> int:
        return len(self.species) * self.individuals * self.images_per_side * 2


PRESETS: dict[str, SynthPreset] = {
    p.name: p
    for p in (
        SynthPreset(
            "synth-bench-v1",
            ("tiger", "leopard"),
            individuals=50,
            images_per_side=4,
            seed=1_000_003,
            mode="flank",
            purpose="the standard synthetic benchmark: unseen tigers and leopards",
        ),
        SynthPreset(
            "synth-train-v1",
            ("tiger", "leopard"),
            individuals=300,
            images_per_side=6,
            seed=0,
            mode="flank",
            purpose="the catalogue of training/configs/default.yaml (from ImageNet weights)",
        ),
        SynthPreset(
            "synth-train-v2",
            ("tiger", "leopard"),
            individuals=1200,
            images_per_side=4,
            seed=0,
            mode="flank",
            purpose="four times the individuals of v1 (fewer photos each): bench/bench_index.py "
            "models real embeddings on it",
        ),
        SynthPreset(
            "synth-val-v1",
            ("tiger", "leopard"),
            individuals=100,
            images_per_side=4,
            seed=9,
            mode="flank",
            purpose="validation for inference choices (input size), so that they are never "
            "tuned on synth-bench-v1",
        ),
        SynthPreset(
            "demo",
            ("tiger", "leopard"),
            individuals=8,
            images_per_side=3,
            seed=7,
            mode="flank",
            purpose="the demo catalogue: small enough to generate and match in seconds",
        ),
    )
}


def render_preset(
    preset: SynthPreset, out: Path, *, workers: int = 2, show_progress: bool = True
) -> list[ImageRecord]:
    """Render ``preset`` into ``out`` (images + manifest.csv) with a progress bar."""
    from reid.synthetic.catalogue import write_catalogue

    with progress_bar(preset.images, f"rendering {preset.name}", enabled=show_progress) as adv:
        return write_catalogue(
            out,
            species=preset.species,
            individuals=preset.individuals,
            images_per_side=preset.images_per_side,
            seed=preset.seed,
            mode=preset.mode,
            workers=max(1, workers),
            progress=adv,
        )


def get_preset(name: str) -> SynthPreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ReidError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None
