"""Exceptions raised by robench.

Every error a user can cause (a bad protocol, an unknown name, missing data) is a
:class:`RobenchError`. The command line prints its message and exits with status 2,
without a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class RobenchError(Exception):
    """Base class of the errors caused by input: the message says what to change."""


class ProtocolError(RobenchError):
    """A protocol file is malformed: names the file, the key path, what was found and what is allowed."""

    def __init__(self, file: str | None, key: str, found: object, allowed: str, hint: str = "") -> None:
        self.file, self.key, self.found, self.allowed = file, key, found, allowed
        where = f"{file}: " if file else ""
        msg = f"{where}key '{key}': found {found!r}; allowed: {allowed}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)


class UnknownNameError(RobenchError, KeyError):
    """A registry lookup failed: lists the valid names and the closest matches."""

    def __init__(self, kind: str, name: str, valid: Iterable[str]) -> None:
        valid = sorted(valid)
        self.kind, self.name, self.valid = kind, name, valid
        close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
        msg = f"unknown {kind} '{name}'; valid: {', '.join(valid) or '(none registered)'}"
        if close:
            msg += f"; did you mean {' or '.join(repr(c) for c in close)}?"
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class AttackCheckError(RobenchError):
    """An attack returned an input outside its threat model (eps-ball, valid range, untouched modality)."""


class DataError(RobenchError):
    """A dataset is missing, incomplete or unreadable."""


class StoreError(RobenchError):
    """The results store cannot be opened or written."""
