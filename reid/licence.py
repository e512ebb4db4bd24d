"""The licence that model weights inherit from what they learned from.

Weights derived from a licensed data set or release carry its terms: a model fine-tuned
on ATRW (CC BY-NC-SA 4.0, ShareAlike) is under CC BY-NC-SA 4.0, and so is every model
fine-tuned or blended from it. A release records its licence in ``manifest.json``
(``licence``: one line) and in a ``LICENSE`` file beside the weights (the full terms and
attributions). Training records the licence of its starting release and of its data in
the checkpoint; ``reid export model`` writes it (joined with a ``--blend`` release's) into
the new release, so the terms cannot fall off on the way.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

LICENSE_FILE = "LICENSE"

ATRW_SUMMARY = "CC BY-NC-SA 4.0 (derived from ATRW); see LICENSE"
ATRW_TEXT = """\
These weights are derived from the ATRW dataset (Amur Tiger Re-identification in the
Wild, CVWC 2019), directly or through a model trained on it. They are therefore licensed
under the same terms as ATRW:

  Creative Commons Attribution-NonCommercial-ShareAlike 4.0 International (CC BY-NC-SA 4.0)
  https://creativecommons.org/licenses/by-nc-sa/4.0/

  - Attribution: credit the ATRW authors and data owners (below) and bigcat-reid.
  - NonCommercial: no commercial use of the weights or of models derived from them.
  - ShareAlike: models derived from these weights (fine-tuned, distilled, blended) must
    be distributed under the same licence.

Attribution required by ATRW:

  The ATRW datasets with image frames derived from the original video-clip dataset with
  additional manual annotations. Copyright (c) 2019, Shuyuan Li (SJTU), Jianguo Li
  (Intel), Weiyao Lin (SJTU), Hanlin Tang (Intel).
  Original video-clip dataset: Copyright (c) 2018, MakerCollider.com and WWF Amur tiger
  and leopard conservation programme team.
  Li, S., Li, J., Tang, H., Qian, R., Lin, W. "ATRW: A Benchmark for Amur Tiger
  Re-identification in the Wild." ACM Multimedia 2020 (arXiv:1906.05586).
"""


@dataclass(frozen=True)
class Licence:
    """One line for the manifest and model card, and the full terms for ``LICENSE``."""

    summary: str
    text: str

    def to_dict(self) -> dict:
        return {"summary": self.summary, "text": self.text}

    @classmethod
    def from_dict(cls, data: object) -> Licence | None:
        if not isinstance(data, dict):
            return None
        summary, text = data.get("summary"), data.get("text")
        if not isinstance(summary, str) or not summary.strip():
            return None
        return cls(summary.strip(), text if isinstance(text, str) else "")


ATRW = Licence(ATRW_SUMMARY, ATRW_TEXT)


def of_release(folder: Path | str) -> Licence | None:
    """The licence a release folder carries (manifest ``licence`` + ``LICENSE``), if any."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    summary = manifest.get("licence") if isinstance(manifest, dict) else None
    if not isinstance(summary, str) or not summary.strip():
        return None
    try:
        text = (folder / LICENSE_FILE).read_text(encoding="utf-8")
    except OSError:
        text = f"{summary.strip()}\n"
    return Licence(summary.strip(), text)


#: ATRW's re-ID list and test ground truth: a catalogue that is, or holds, one is ATRW's.
ATRW_FILES: tuple[str, ...] = ("reid_list_train.csv", "gt_test_plain.json")
#: ATRW's pose annotation, which sits beside its training list in the official layout.
ATRW_KEYPOINTS = "reid_keypoints_train.json"
#: How ATRW names its photos: the six-digit image id (``002019.jpg``).
ATRW_IMAGE = re.compile(r"\d{6}\.jpg")


def of_catalogue(path: Path | str | None) -> Licence | None:
    """The licence a training catalogue passes on to weights trained on it: ATRW's for the
    ATRW re-identification sets (their list/ground-truth files, or a folder holding them,
    or ATRW's training list under another name: :func:`is_renamed_atrw_list`), None for
    catalogues whose terms the project does not know (the user's own)."""
    if path is None:
        return None
    p = Path(path)
    if p.name in ATRW_FILES or (p.is_dir() and any((p / n).is_file() for n in ATRW_FILES)):
        return ATRW
    if p.suffix.lower() in (".csv", ".txt") and p.is_file() and is_renamed_atrw_list(p):
        return ATRW
    return None


def is_renamed_atrw_list(path: Path) -> bool:
    """Whether ``path`` is ATRW's training list (``reid_list_train.csv``) under another
    name: header-less ``entity_id,filename`` rows (what :func:`reid.data.load.load_catalogue`
    reads as an ATRW list) whose first row names an ATRW photo (``0,002019.jpg``), or which
    sit beside ATRW's keypoints (``reid_keypoints_train.json``). Any other header-less
    two-column CSV, numbers included, is not."""
    try:
        with path.open(encoding="utf-8") as f:
            first = [c.strip() for c in f.readline().strip().split(",")]
    except (OSError, UnicodeDecodeError):
        return False
    if len(first) != 2 or not first[0].lstrip("-").isdigit():
        return False
    return bool(ATRW_IMAGE.fullmatch(first[1])) or (path.parent / ATRW_KEYPOINTS).is_file()


def combine(*licences: Licence | None) -> Licence | None:
    """The terms of weights derived from all of ``licences`` (None entries ignored): one
    licence when they agree, else every one of them in turn."""
    unique: list[Licence] = []
    for lic in licences:
        if lic is not None and all(lic.summary != u.summary for u in unique):
            unique.append(lic)
    if not unique:
        return None
    if len(unique) == 1:
        return unique[0]
    summary = "; ".join(u.summary for u in unique)
    text = "\n\n".join(
        f"Terms {i} of {len(unique)}: {u.summary}\n\n{u.text}" for i, u in enumerate(unique, 1)
    )
    return Licence(summary, text)
