"""Writing files so that a reader never sees half of one.

Every file robench writes for a user (reports, pages, records, figures, scripts, checkpoints) goes
through :func:`atomic_write`: the bytes go to a temporary file in the same folder, are flushed and
fsynced, and the temporary file is renamed over the target (an atomic replace on POSIX and Windows);
the folder is fsynced after the rename where the platform allows. A kill or a full disk at any moment
leaves either the old file untouched or the new one complete, never an empty or truncated one; the
temporary file is removed when the write fails.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from robench.errors import RobenchError


def atomic_write(path: str | Path, data: bytes | str, encoding: str = "utf-8") -> Path:
    """Replace ``path`` with ``data`` atomically (creating its folder); returns the path.

    Raises :class:`~robench.errors.RobenchError` naming the file when it cannot be written (a full disk,
    a read-only folder), with the old file, if any, left as it was.
    """
    target = Path(path)
    payload = data.encode(encoding) if isinstance(data, str) else data
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise RobenchError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise RobenchError(f"cannot write {target}: {exc.strerror or exc}; the previous file, if any, is "
                               "unchanged") from None
        raise
    _sync_folder(target.parent)
    return target


def _sync_folder(folder: Path) -> None:
    """fsync a folder so that a rename in it survives a crash (not possible on every platform)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
