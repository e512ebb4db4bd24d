"""Named synthetic catalogues, so that benchmark figures can be reproduced by name.

Individuals are identified by (seed, species, index): catalogues with different seeds
share no individual, so ``synth-bench-v1`` is made of individuals that no model trained
on ``synth-train-v1`` has seen.
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


def _stage(name: str, seed: int, purpose: str) -> SynthPreset:
    """A training stage's catalogue: 2,400 new coats of each species (``seed``), four
    photos of each flank, flank crops (every two-species stage from synth-train-v3 on)."""
    return SynthPreset(name, ("tiger", "leopard"), 2400, 4, seed, "flank", purpose)


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
            purpose="default training catalogue for the shipped model",
        ),
        SynthPreset(
            "synth-train-v2",
            ("tiger", "leopard"),
            individuals=1200,
            images_per_side=4,
            seed=0,
            mode="flank",
            purpose="four times the individuals of v1 (fewer photos each): default model v0.3",
        ),
        _stage(
            "synth-train-v3",
            3,
            "twice v2's individuals, all new coats (another seed): default model v0.4",
        ),
        _stage(
            "synth-train-v4",
            4,
            "another 2,400 new coats per species (another seed): default model v0.5",
        ),
        _stage(
            "synth-train-v5",
            5,
            "another 2,400 new coats per species (another seed): default model v0.6",
        ),
        SynthPreset(
            "synth-train-v6",
            ("leopard",),
            individuals=2400,
            images_per_side=4,
            seed=6,
            mode="flank",
            purpose="2,400 new leopard coats: a leopard-only stage tried on v0.7, not released",
        ),
        _stage(
            "synth-train-v7",
            8,
            "another 2,400 new coats per species (seed 8; seed 7 is the demo's)",
        ),
        _stage(
            "synth-train-v8",
            10,
            "another 2,400 new coats per species (seed 10; seed 9 is synth-val-v1's)",
        ),
        _stage(
            "synth-train-v9",
            12,
            "another 2,400 new coats per species (seed 12; seed 11 is the seasons')",
        ),
        _stage(
            "synth-train-v10",
            13,
            "another 2,400 new coats per species (seed 13): the stage after v0.10",
        ),
        _stage(
            "synth-train-v11",
            14,
            "another 2,400 new coats per species (seed 14): the stage after v0.11",
        ),
        _stage(
            "synth-train-v12",
            15,
            "another 2,400 new coats per species (seed 15): the stage after v0.12",
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
