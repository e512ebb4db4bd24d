"""The season's answer written back into Camtrap DP: the input package, individualID filled.

``RUN_DIR/camtrap-dp/`` is a copy of the input package: ``datapackage.json`` and
``deployments.csv`` as they were, ``media.csv`` with each ``filePath`` pointing at the
same image from the new place, and ``observations.csv`` where every matched tiger or
leopard observation has ``individualID`` (the known individual, or the proposed new
individual's ``NEW-...`` id), ``classificationMethod`` = ``machine``, ``classifiedBy``
= the model, and ``classificationProbability`` = the calibrated probability of that
decision, and the tag ``status:proposed`` (a machine match waits for a reviewer; the
registry import, :func:`reid.camtrap.import_package`, reads it). Other rows and columns
are left as they were.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from pathlib import Path

from reid.bulk.bursts import Encounter
from reid.bulk.cluster import Proposal
from reid.bulk.sources import write_csv
from reid.data.manifest import read_text

FILLED = (
    "individualID",
    "classificationMethod",
    "classifiedBy",
    "classificationProbability",
    "observationTags",
)


def _table(path: Path) -> tuple[list[str], list[dict]]:
    reader = csv.DictReader(io.StringIO(read_text(path, "CSV file"), newline=""))
    return list(reader.fieldnames or []), list(reader)


def write_filled_package(
    package: Path,
    out: Path,
    encounters: list[Encounter],
    results: dict[str, dict],
    proposed: dict[str, Proposal],
    model: str,
) -> Path:
    """Write the filled copy of ``package`` into ``out``; returns ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("datapackage.json", "deployments.csv"):
        shutil.copyfile(package / name, out / name)
    header, media = _table(package / "media.csv")
    for row in media:
        path = row.get("filePath", "")
        if path and "://" not in path and not os.path.isabs(path):
            row["filePath"] = Path(
                os.path.relpath(package.resolve() / path, out.resolve())
            ).as_posix()
    write_csv(out / "media.csv", header, media)
    answer: dict[str, tuple[str, str]] = {}
    for enc in encounters:
        r = results.get(enc.id)
        if r is None:
            continue
        p = proposed.get(enc.id)
        if r["decision"] == "known":
            ident, prob = r["individual"], r["probability"]
        elif p is not None:
            ident, prob = p.id, r["new_probability"]
        else:
            continue
        for frame in enc.frames:
            if frame.observation and frame.observation not in answer:
                answer[frame.observation] = (ident, f"{prob:.4f}")
    header, observations = _table(package / "observations.csv")
    header = header + [c for c in FILLED if c not in header]
    for row in observations:
        got = answer.get(row.get("observationID", ""))
        if got is None:
            continue
        row["individualID"], row["classificationProbability"] = got
        row["classificationMethod"] = "machine"
        row["classifiedBy"] = f"bigcat-reid {model}"
        tags = [t.strip() for t in (row.get("observationTags") or "").split("|") if t.strip()]
        tags = [t for t in tags if not t.lower().startswith("status:")] + ["status:proposed"]
        row["observationTags"] = " | ".join(tags)
    write_csv(out / "observations.csv", header, observations)
    return out
