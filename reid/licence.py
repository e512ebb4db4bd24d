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


def of_catalogue(path: Path | str | None) -> Licence | None:
    """The licence a training catalogue passes on to weights trained on it: ATRW's for the
    ATRW re-identification sets (their list/ground-truth files, or a folder holding them),
    None for catalogues whose terms the project does not know (the user's own)."""
    if path is None:
        return None
    p = Path(path)
    names = {"reid_list_train.csv", "gt_test_plain.json"}
    if p.name in names or (p.is_dir() and any((p / n).is_file() for n in names)):
        return ATRW
    if p.suffix.lower() == ".csv" and p.is_file():
        try:
            with p.open(encoding="utf-8") as f:
                first = f.readline().strip().split(",")
        except (OSError, UnicodeDecodeError):
            return None
        if len(first) == 2 and first[0].lstrip("-").isdigit():  # ATRW's header-less list
            return ATRW
    return None


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
