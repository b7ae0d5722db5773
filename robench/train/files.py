"""Checkpoint files that are written atomically and read without running code.

Tensors go through ``torch.save`` and are read back with ``torch.load(weights_only=True)``;
everything else is JSON beside them. A file that cannot be read raises a
:class:`~robench.errors.RobenchError` naming the path and the fix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from robench.errors import RobenchError
from robench.files import atomic_file, atomic_write


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`robench.files.atomic_write`)."""
    atomic_write(path, data)


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` atomically: a temporary file in the same folder, fsynced, then renamed."""
    with atomic_file(path) as tmp:
        torch.save(obj, tmp)


def read_json(path: Path, what: str, fix: str) -> dict[str, Any]:
    """A JSON object from ``path``, or a :class:`RobenchError` naming the file, the problem and ``fix``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RobenchError(f"cannot read {what} {path}: {exc}; {fix}") from None
    if not isinstance(data, dict):
        raise RobenchError(f"{what} {path} holds {type(data).__name__}, not a JSON object; {fix}")
    return data


def load_tensors(path: Path, what: str, fix: str) -> dict[str, Any]:
    """A ``torch.save``d mapping read with ``weights_only=True``, or a :class:`RobenchError` naming ``path``."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RobenchError(f"cannot read {what} {path} safely ({first}); {fix}") from None
    if not isinstance(obj, dict):
        raise RobenchError(f"{what} {path} holds {type(obj).__name__}, not a mapping of tensors; {fix}")
    return obj


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> str | None:
    """Load ``state`` into ``model`` strictly; returns why it does not fit (a shape, missing or unexpected keys),
    or None once loaded."""
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shapes that do not fit
        return f"does not fit: {str(exc).strip().splitlines()[0]}"
    if missing or unexpected:
        return f"does not match: missing {missing[:5]}, unexpected {unexpected[:5]}"
    return None
