"""Where bigcat-reid keeps its data: ``$REID_HOME``, else the per-user data directory."""

from __future__ import annotations

import os
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


#: Mode of a new ordinary file under the process umask (0o644 under the usual 022).
#: ``tempfile.mkstemp`` creates 0o600 files; files written through one and then renamed
#: into place (atomic writes) get this mode, like any other file the user writes.
FILE_MODE = 0o666 & ~_umask()


def data_home() -> Path:
    """``$REID_HOME`` when set, else ``$XDG_DATA_HOME/bigcat-reid`` (~/.local/share)."""
    if home := os.environ.get("REID_HOME"):
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(xdg) / "bigcat-reid"
