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
from collections.abc import Iterator
from pathlib import Path

from robench.errors import RobenchError


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """For writers that need a file name (``savefig``, ``torch.save``, ``np.save``): yields a temporary
    path in ``path``'s folder; when the block ends the file is fsynced and renamed over ``path``, and if
    the block raises it is removed and ``path`` is left as it was. Same guarantees as :func:`atomic_write`."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.fchmod(fd, _mode(target))
        os.close(fd)
    except OSError as exc:
        raise RobenchError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
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


def atomic_write(path: str | Path, data: bytes | str, encoding: str = "utf-8") -> Path:
    """Replace ``path`` with ``data`` atomically (creating its folder); returns the path.

    Raises :class:`~robench.errors.RobenchError` naming the file when it cannot be written (a full disk,
    a read-only folder), with the old file, if any, left as it was.
    """
    payload = data.encode(encoding) if isinstance(data, str) else data
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(payload)
    return Path(path)


def _mode(target: Path) -> int:
    """The permissions the new file gets: the old file's, else what ``open`` would give (0o666 less the umask);
    a temporary file alone would be private (0o600)."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


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
