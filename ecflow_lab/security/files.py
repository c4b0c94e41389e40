"""Private files: written atomically with 0600 permissions in directories that are not world-writable."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def ensure_private_dir(path: str | os.PathLike[str], mode: int = 0o700) -> Path:
    """Create ``path`` (and parents) if needed and make sure the leaf has ``mode`` (default 0700)."""
    p = Path(path).expanduser()
    p.mkdir(parents=True, exist_ok=True, mode=mode)
    if stat.S_IMODE(p.stat().st_mode) != mode:
        os.chmod(p, mode)
    return p


def write_private(path: str | os.PathLike[str], data: str | bytes, *, mode: int = 0o600,
                  overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically; the file never exists with wider permissions than ``mode``.

    The content goes to a temporary file created with ``mode`` in the same directory, then is renamed
    into place, so a reader sees either the old or the new file, never a partial one. With
    ``overwrite=False`` an existing file raises ``FileExistsError`` and is left untouched.
    """
    p = Path(path).expanduser()
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, p)
        else:
            os.link(tmp, p)  # fails with FileExistsError instead of replacing
            os.unlink(tmp)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return p


def is_private(path: str | os.PathLike[str]) -> bool:
    """True when neither group nor others may read or write ``path``."""
    return stat.S_IMODE(Path(path).stat().st_mode) & 0o077 == 0
