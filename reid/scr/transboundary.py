"""Transboundary SCR: one joint estimate against separate national ones.

A national survey sees only its own cameras and, with its mask clipped at the border,
places every animal it detects on its own side: an animal that lives across the line
and visits is counted as a resident, and one ranging on both sides is counted by both
countries. The joint fit uses all cameras and the cross-border identities, so it does
neither; :func:`fit_by_country` returns both views side by side.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from reid.scr.data import CaptureHistory, Mask, ScrDataError
from reid.scr.fit import ScrEstimate, fit_scr


@dataclass(frozen=True)
class TransboundaryEstimate:
    joint: ScrEstimate
    by_country: dict[str, ScrEstimate]  # countries whose own data could be fitted
    not_fitted: dict[str, str] = field(default_factory=dict)  # country -> why not
    individuals_by_country: dict[str, int] = field(default_factory=dict)
    shared_individuals: tuple[str, ...] = ()  # detected in two or more countries

    @property
    def n_shared(self) -> int:
        return len(self.shared_individuals)

    def to_dict(self) -> dict:
        return {
            "joint": self.joint.to_dict(),
            "by_country": {c: e.to_dict() for c, e in self.by_country.items()},
            "not_fitted": dict(self.not_fitted),
            "individuals_by_country": dict(self.individuals_by_country),
            "n_shared": self.n_shared,
            "shared_individuals": list(self.shared_individuals),
            # what two separate national surveys would report together
            "sum_of_national_abundance": sum(e.abundance for e in self.by_country.values()),
        }


def mask_countries(ch: CaptureHistory, mask: Mask) -> tuple[str | None, ...]:
    """The mask's country per cell, or the country of the nearest detector when unknown."""
    if mask.country:
        return mask.country
    det = ch.detectors
    if all(c is None for c in det.country):
        raise ScrDataError("no detector has a country: a per-country estimate needs them")
    d2 = ((mask.xy[:, None, :] - det.xy[None, :, :]) ** 2).sum(axis=2)
    return tuple(det.country[k] for k in d2.argmin(axis=1))


def fit_by_country(
    ch: CaptureHistory, mask: Mask, clip_at_border: bool = True
) -> TransboundaryEstimate:
    """The joint estimate and one per country, as separate national surveys would make them.

    Each country's estimate uses its own detectors, the detections there only (an
    individual seen only abroad is not in it) and the mask cells in that country
    (``clip_at_border=False``: the whole mask, as a national survey that lets home ranges
    cross the border would; its density is comparable, its abundance is not national).
    A country whose data cannot be fitted (e.g. no animal seen at two of its cameras)
    is listed in ``not_fitted`` with the reason.
    """
    joint = fit_scr(ch, mask)
    cell_country = mask_countries(ch, mask)
    countries = ch.detectors.countries()
    if not countries:
        raise ScrDataError("no detector has a country: a per-country estimate needs them")
    by_country: dict[str, ScrEstimate] = {}
    not_fitted: dict[str, str] = {}
    seen_in: dict[str, np.ndarray] = {}
    for code in countries:
        seen_in[code] = ch.detected_in(code)
        at = np.array([c == code for c in ch.detectors.country])
        cells = np.array([c == code or not clip_at_border for c in cell_country])
        if not cells.any():
            not_fitted[code] = "no mask cell in this country"
            continue
        national = ch.subset_detectors(at)
        try:
            by_country[code] = fit_scr(national, mask.subset(cells))
        except ScrDataError as exc:
            not_fitted[code] = str(exc)
    n_countries = np.sum([seen_in[c] for c in countries], axis=0)
    shared = tuple(ch.individuals[i] for i in np.flatnonzero(n_countries >= 2))
    return TransboundaryEstimate(
        joint=joint,
        by_country=by_country,
        not_fitted=not_fitted,
        individuals_by_country={c: int(seen_in[c].sum()) for c in countries},
        shared_individuals=shared,
    )
