"""Small heads stored in a model release beside the weights whose feature map they read
(the side head of :mod:`reid.side`, the flank head of :mod:`reid.boxhead`).

A head is a safetensors file named in the manifest under its key, with its SHA-256 and
the SHA-256 of the weights it was fitted for (``weights_sha256``): loading refuses a
changed file, and a head fitted for other weights.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from reid.errors import ReidError


def save_state(module: nn.Module, path: Path) -> None:
    """``module``'s tensors to ``path`` (safetensors)."""
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()},
              str(path))  # fmt: skip


def read_state(path: Path) -> dict:
    """The tensors of a head file; a clear error when it is not readable safetensors."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ReidError(f"{path}: not readable safetensors: {e}") from None


def load_state(head: nn.Module, state: dict, path: Path, what: str, num_features: int):
    """``head`` with ``state`` loaded, in eval mode; refused unless every tensor fits."""
    expected = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if expected != found:
        raise ReidError(
            f"{path}: {what} tensors {found} do not fit a backbone of {num_features} "
            f"features (expected {expected})"
        )
    head.load_state_dict(state)
    return head.eval()


def write_to_release(folder: Path, key: str, filename: str, head: nn.Module, info: dict) -> dict:
    """Write ``head`` into a release folder as ``filename`` and record it under ``key``
    in the manifest (with ``info``: what it was fitted on, its measured quality), both
    atomically; returns the new manifest."""
    from reid.paths import atomic_write
    from reid.release import read_manifest, sha256_of

    folder = Path(folder)
    manifest = read_manifest(folder)
    atomic_write(folder / filename, lambda tmp: save_state(head, tmp))
    manifest[key] = {
        "file": filename,
        "sha256": sha256_of(folder / filename),
        "weights_sha256": manifest["sha256"],  # the feature map it reads
        **info,
    }
    text = json.dumps(manifest, indent=2) + "\n"
    atomic_write(folder / "manifest.json", lambda tmp: tmp.write_text(text))
    return manifest


def release_file(
    folder: Path,
    manifest: dict,
    key: str,
    default_file: str,
    what: str,
    refit: str,
    *,
    weights_recorded: bool = True,
) -> Path | None:
    """The checked path of the release's head under ``key``, or None if it has none:
    refused when fitted for other weights (``refit`` says how to refit it), missing, or
    not the file the manifest's SHA-256 names. ``weights_recorded=False`` accepts an
    entry that does not say which weights it was fitted for (heads written before it
    was recorded)."""
    from reid.release import sha256_of

    entry = manifest.get(key)
    if not entry:
        return None
    path = Path(folder) / Path(str(entry.get("file", default_file))).name
    fitted_for = entry.get("weights_sha256")
    if (fitted_for is not None or weights_recorded) and fitted_for != manifest.get("sha256"):
        raise ReidError(
            f"{path}: the {what} was fitted for other weights ({str(fitted_for)[:12]}); "
            f"refit it {refit}"
        )
    if not path.is_file():
        raise ReidError(f"{folder}: {what} {path.name} is missing")
    if sha256_of(path) != entry.get("sha256"):
        raise ReidError(f"{path}: SHA-256 mismatch with the manifest: refusing to load it")
    return path
