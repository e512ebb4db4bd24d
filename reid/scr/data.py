"""The data of a spatial capture-recapture (SCR) survey: detectors, capture history, mask.

These are the contract between what builds capture histories (registry, season runs,
Camtrap DP deployments) and what fits them (:mod:`reid.scr.fit`). Coordinates are metres
in a projected plane (x east, y north); they are exact and sensitive (see
:mod:`reid.privacy`): whatever shows them to a reader generalises them first.

Every class validates itself on construction and raises :class:`ScrDataError` with a
one-line message naming what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from reid.errors import ReidError

DETECTOR_TYPES = ("proximity", "count")


class ScrDataError(ReidError):
    """A capture history, detector layout or mask that cannot be fitted."""


def _float_array(value, name: str, ndim: int) -> np.ndarray:
    try:
        array = np.array(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ScrDataError(f"{name} must be numeric: {exc}") from None
    if array.ndim != ndim:
        raise ScrDataError(f"{name} must have {ndim} dimensions, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ScrDataError(f"{name} has a missing or infinite value")
    array.setflags(write=False)
    return array


@dataclass(frozen=True)
class Detectors:
    """Detectors (one per station) and their effort per occasion.

    ``ids``: one id per detector (two facing cameras at one station are one detector).
    ``xy``: (K, 2) metres. ``usage``: (K, S) effort, e.g. active days of detector k in
    occasion s; 0 means the detector was not operating. ``country``: ISO code per detector
    or None.
    """

    ids: tuple[str, ...]
    xy: np.ndarray
    usage: np.ndarray
    country: tuple[str | None, ...] = ()

    def __post_init__(self) -> None:
        ids = tuple(str(i) for i in self.ids)
        object.__setattr__(self, "ids", ids)
        if not ids:
            raise ScrDataError("a survey needs at least one detector")
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})
            raise ScrDataError(f"detector ids must be unique; repeated: {', '.join(dup[:5])}")
        xy = _float_array(self.xy, "detector xy", 2)
        if xy.shape != (len(ids), 2):
            raise ScrDataError(f"detector xy must have shape ({len(ids)}, 2), got {xy.shape}")
        usage = _float_array(self.usage, "usage", 2)
        if usage.shape[0] != len(ids) or usage.shape[1] < 1:
            raise ScrDataError(
                f"usage must have shape ({len(ids)}, occasions >= 1), got {usage.shape}"
            )
        if np.any(usage < 0):
            raise ScrDataError("usage (effort) must be >= 0")
        country = tuple(self.country) if self.country else (None,) * len(ids)
        if len(country) != len(ids):
            raise ScrDataError(
                f"country must have one entry per detector ({len(ids)}), got {len(country)}"
            )
        object.__setattr__(self, "xy", xy)
        object.__setattr__(self, "usage", usage)
        object.__setattr__(self, "country", country)

    @property
    def n_detectors(self) -> int:
        return len(self.ids)

    @property
    def n_occasions(self) -> int:
        return int(self.usage.shape[1])

    def countries(self) -> tuple[str, ...]:
        """The distinct known countries, sorted."""
        return tuple(sorted({c for c in self.country if c is not None}))

    def subset(self, keep) -> Detectors:
        """The detectors where ``keep`` (bool mask or index array) selects."""
        idx = np.arange(self.n_detectors)[np.asarray(keep)]
        return Detectors(
            ids=tuple(self.ids[i] for i in idx),
            xy=self.xy[idx],
            usage=self.usage[idx],
            country=tuple(self.country[i] for i in idx),
        )


@dataclass(frozen=True)
class CaptureHistory:
    """Detections of N individuals at K detectors on S occasions.

    ``counts[i, k, s]``: detections of individual i at detector k on occasion s. For
    ``"proximity"`` detectors only presence counts (values > 0 are read as 1 by the fit);
    for ``"count"`` detectors the number is Poisson.
    """

    individuals: tuple[str, ...]
    detectors: Detectors
    counts: np.ndarray
    detector_type: str = "proximity"
    occasion_labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        individuals = tuple(str(i) for i in self.individuals)
        object.__setattr__(self, "individuals", individuals)
        if len(set(individuals)) != len(individuals):
            raise ScrDataError("individual ids must be unique")
        if self.detector_type not in DETECTOR_TYPES:
            raise ScrDataError(
                f"detector_type must be one of {', '.join(DETECTOR_TYPES)}, "
                f"got {self.detector_type!r}"
            )
        try:
            counts = np.array(self.counts)
        except (TypeError, ValueError) as exc:
            raise ScrDataError(f"counts must be an integer array: {exc}") from None
        n, k, s = len(individuals), self.detectors.n_detectors, self.detectors.n_occasions
        if counts.size == 0 and n == 0:
            counts = np.zeros((0, k, s), dtype=np.int64)
        if counts.shape != (n, k, s):
            raise ScrDataError(
                f"counts must have shape (individuals {n}, detectors {k}, occasions {s}), "
                f"got {counts.shape}"
            )
        if counts.dtype.kind == "f":
            if not np.all(np.isfinite(counts)) or np.any(counts != np.round(counts)):
                raise ScrDataError("counts must be whole numbers")
        elif counts.dtype.kind not in "iub":
            raise ScrDataError(f"counts must be integers, got dtype {counts.dtype}")
        counts = counts.astype(np.int64)
        if np.any(counts < 0):
            raise ScrDataError("counts must be >= 0")
        used = self.detectors.usage > 0
        off = (counts > 0) & ~used[None, :, :]
        if np.any(off):
            i, kk, ss = np.argwhere(off)[0]
            raise ScrDataError(
                f"individual {individuals[i]} detected at detector {self.detectors.ids[kk]} "
                f"on occasion {ss} when its usage is 0 (not operating)"
            )
        labels = tuple(str(x) for x in self.occasion_labels)
        if labels and len(labels) != s:
            raise ScrDataError(f"occasion_labels must have {s} entries, got {len(labels)}")
        counts.setflags(write=False)
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "occasion_labels", labels)

    @property
    def n_individuals(self) -> int:
        return len(self.individuals)

    @property
    def n_detections(self) -> int:
        """Detections as the fit counts them (presence per detector-occasion for proximity)."""
        if self.detector_type == "proximity":
            return int(np.count_nonzero(self.counts))
        return int(self.counts.sum())

    def detected_in(self, country: str) -> np.ndarray:
        """Bool (N,): individuals detected at least once at a detector in ``country``."""
        at = np.array([c == country for c in self.detectors.country], dtype=bool)
        return self.counts[:, at, :].sum(axis=(1, 2)) > 0

    def subset_detectors(self, keep) -> CaptureHistory:
        """The history at the selected detectors only; individuals never seen there drop."""
        idx = np.arange(self.detectors.n_detectors)[np.asarray(keep)]
        counts = self.counts[:, idx, :]
        seen = counts.sum(axis=(1, 2)) > 0
        return CaptureHistory(
            individuals=tuple(n for n, s in zip(self.individuals, seen, strict=True) if s),
            detectors=self.detectors.subset(idx),
            counts=counts[seen],
            detector_type=self.detector_type,
            occasion_labels=self.occasion_labels,
        )


@dataclass(frozen=True)
class Mask:
    """Habitat mask: centres of the cells where activity centres may lie."""

    xy: np.ndarray
    cell_area_m2: float
    country: tuple[str | None, ...] = field(default=())

    def __post_init__(self) -> None:
        xy = _float_array(self.xy, "mask xy", 2)
        if xy.shape[0] == 0 or xy.shape[1] != 2:
            raise ScrDataError(f"mask xy must have shape (cells >= 1, 2), got {xy.shape}")
        area = float(self.cell_area_m2)
        if not np.isfinite(area) or area <= 0:
            raise ScrDataError(f"mask cell_area_m2 must be > 0, got {self.cell_area_m2}")
        country = tuple(self.country)
        if country and len(country) != xy.shape[0]:
            raise ScrDataError(
                f"mask country must have one entry per cell ({xy.shape[0]}), got {len(country)}"
            )
        object.__setattr__(self, "xy", xy)
        object.__setattr__(self, "cell_area_m2", area)
        object.__setattr__(self, "country", country)

    @property
    def n_cells(self) -> int:
        return int(self.xy.shape[0])

    @property
    def area_km2(self) -> float:
        return self.n_cells * self.cell_area_m2 / 1e6

    def subset(self, keep) -> Mask:
        idx = np.arange(self.n_cells)[np.asarray(keep)]
        if idx.size == 0:
            raise ScrDataError("the mask subset has no cells")
        return Mask(
            xy=self.xy[idx],
            cell_area_m2=self.cell_area_m2,
            country=tuple(self.country[i] for i in idx) if self.country else (),
        )
