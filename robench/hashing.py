"""Content hashes and derived seeds.

Everything robench caches is keyed by a hash of what determines it: a trained model by its
dataset, architecture, training and defense settings and seed; a result cell by its model, attack,
scenario and evaluation settings. The hash is SHA-256 over canonical JSON (sorted keys, floats by
``repr``), so the same settings always give the same key, across processes and machines.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any


def _canonical(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, float):
        if math.isfinite(obj) and obj == int(obj) and abs(obj) < 2**53:
            return int(obj)  # 1.0 and 1 are the same setting
        return repr(obj)
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    raise TypeError(f"cannot hash {type(obj).__name__}: {obj!r}")


def canonical_json(obj: Any) -> str:
    """Deterministic JSON text of ``obj`` (dicts sorted, floats normalised)."""
    return json.dumps(_canonical(obj), sort_keys=True, separators=(",", ":"))


def content_hash(obj: Any, length: int = 16) -> str:
    """Hex SHA-256 of :func:`canonical_json`, truncated to ``length`` characters."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed derived from ``parts`` (stable across runs, processes and platforms)."""
    digest = hashlib.sha256(canonical_json(list(parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)
