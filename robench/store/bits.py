"""Per-clip outcomes, stored compactly: one bit per evaluated clip, in evaluation order."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def pack_bits(values: np.ndarray | Iterable[bool]) -> bytes:
    """Per-clip booleans -> bytes (8 clips per byte, the first clip in the highest bit)."""
    return np.packbits(np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=bool)).tobytes()


def unpack_bits(blob: bytes | None, n: int) -> np.ndarray | None:
    """Inverse of :func:`pack_bits` for ``n`` clips (None for a cell stored without them)."""
    if blob is None:
        return None
    return np.unpackbits(np.frombuffer(blob, dtype=np.uint8))[:n].astype(bool)
