"""Files a run writes: whole or not at all, with the mode a plain ``open()`` gives.

Every output of ``dorefa`` (checkpoint, metrics, configuration, figures) goes
through :func:`write_atomic`, so a crash leaves the previous file intact and
every file gets the same mode.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

__all__ = ["write_atomic", "file_mode"]


def file_mode() -> int:
    """The mode a plain ``open()`` gives a new file: ``0o666`` less the umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomic(path: str | os.PathLike, write: Callable[[IO], Any], *, binary: bool = False) -> None:
    """Write ``path`` through a temp file in the same directory: ``write(file)``,
    fsync, ``os.replace``.  The file gets the mode a plain ``open()`` would give
    it (``mkstemp`` makes 0600 files)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), file_mode())
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not possible on every platform
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
