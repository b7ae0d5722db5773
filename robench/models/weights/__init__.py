"""Weights files shipped with robench, named ``builtin:NAME`` wherever a backbone takes a ``checkpoint``.

``builtin:i3d-synthetic`` is the I3D of the synthetic profiles (width 0.125, 3x3x3 stride-1 stem)
pretrained on synthetic actions that no bundled protocol uses, with other performers and rooms: the
synthetic stand-in for the paper's Kinetics-pretrained I3D (AMR paper, Sec. 4.1). It was made by
:mod:`robench.train.pretrain`; ``i3d-synthetic.json`` beside it records how, on which device, and its
held-out action accuracy and pose error. Like any checkpoint it enters model ids by content
(:func:`robench.identity.identity_params`), so replacing the file retrains what used it.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from robench.errors import RobenchError

#: the prefix that names a bundled weights file instead of a path
BUILTIN_PREFIX = "builtin:"


def builtin_weights() -> dict[str, Path]:
    """``{name: path}`` of the weights files shipped with robench."""
    root = Path(str(resources.files(__name__)))
    return {p.stem: p for p in sorted(root.glob("*.pt"))}


def weights_path(value: str | Path) -> Path:
    """The file a ``checkpoint`` value names: ``builtin:NAME`` (a bundled file) or a path (``~`` expanded).

    Raises :class:`RobenchError` for an unknown built-in name, listing the names there are. Whether a
    path exists is the caller's to check (it knows which protocol key to name).
    """
    text = str(value)
    if not text.startswith(BUILTIN_PREFIX):
        return Path(text).expanduser()
    name = text.removeprefix(BUILTIN_PREFIX)
    available = builtin_weights()
    if name not in available:
        names = ", ".join(BUILTIN_PREFIX + n for n in available) or "none"
        raise RobenchError(f"unknown built-in checkpoint {text!r}; available: {names}, or a path to a weights file")
    return available[name]
