"""Names that become file names, and paths that must stay inside the folder the user named.

A track's name is a folder under the leaderboard root and an entry's id the name of its record there,
so both come from files a stranger may write. :func:`check_name` allows letters, digits, ``_``, ``.``
and ``-`` only (no separator, no ``..``, no control character, nothing absolute), and
:func:`inside` resolves a path, symlinks included, and refuses it unless it lies under the root.
"""

from __future__ import annotations

import re
from pathlib import Path

from robench.errors import RobenchError

#: a track name, an entry id, a record's file stem
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}")
ALLOWED = "1 to 80 letters, digits, '_', '.' or '-', starting with a letter or digit, and no '..'"


def check_name(value: object, what: str) -> str:
    """``value`` if it is a safe name (see the module docstring), else a :class:`RobenchError` naming ``what``."""
    if not isinstance(value, str) or not NAME.fullmatch(value) or ".." in value:
        raise RobenchError(f"{what}: found {value!r}; allowed: {ALLOWED}")
    return value


def resolve(path: Path, what: str) -> Path:
    """``path`` with every symlink resolved; a symlink loop is a clear error."""
    try:
        return path.resolve()
    except (RuntimeError, OSError) as exc:  # RuntimeError: "Symlink loop from ..."
        raise RobenchError(f"{what} {path}: cannot resolve it ({exc}); a symlink loop?") from None


def inside(root: Path, target: Path, what: str) -> Path:
    """``target`` resolved, if it lies under ``root`` (resolved); else a :class:`RobenchError`: robench never
    writes outside the folder it was given, whatever names or symlinks say."""
    base = resolve(root, "leaderboard folder")
    found = resolve(target, what)
    if not found.is_relative_to(base):
        raise RobenchError(f"{what} {target} resolves to {found}, outside the leaderboard folder {base}; robench "
                           "writes nothing there")
    return found


def safe_link(url: object) -> str | None:
    """``url`` if it is an http(s) link without spaces or quotes, else None (shown as text, never a link)."""
    if isinstance(url, str) and re.fullmatch(r"https?://[^\s\"'<>`]+", url):
        return url
    return None
