"""Where bigcat-reid keeps its data: ``$REID_HOME``, else the per-user data directory."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


#: Mode of a new ordinary file under the process umask (0o644 under the usual 022).
#: ``tempfile.mkstemp`` creates 0o600 files; files written through one and then renamed
#: into place (atomic writes) get this mode, like any other file the user writes.
FILE_MODE = 0o666 & ~_umask()


def atomic_write(target: Path, write: Callable[[Path], object]) -> None:
    """Make ``target`` by ``write(tmp)`` on a temporary file beside it, renamed into place
    (atomic on POSIX: readers see the old file or the new one, never half of it). The new
    file gets :data:`FILE_MODE`; the temporary file is removed whatever happens."""
    target = Path(target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, FILE_MODE)  # mkstemp's (and some writers') 0600 is not wanted
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def data_home() -> Path:
    """``$REID_HOME`` when set, else ``$XDG_DATA_HOME/bigcat-reid`` (~/.local/share)."""
    if home := os.environ.get("REID_HOME"):
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(xdg) / "bigcat-reid"
