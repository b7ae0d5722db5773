"""Where robench keeps things by default: the results store and the cache of trained models and data.

The command line and the Python API read the same defaults: the store is ``$ROBENCH_STORE``, else
``results/robench.sqlite`` (relative to the working folder); the cache is ``$ROBENCH_CACHE``, else a
``cache`` folder beside the store file (``results/cache`` when the store is a database URL).
"""

from __future__ import annotations

import os
from pathlib import Path

#: the results store when neither ``--store`` nor ``$ROBENCH_STORE`` names one
DEFAULT_STORE = "results/robench.sqlite"


def is_url(location: str | Path) -> bool:
    """True for a database URL (``postgresql://...``), False for a file path."""
    return "://" in str(location)


def store_location(given: str | Path | None = None) -> Path | str:
    """``given``, else ``$ROBENCH_STORE``, else :data:`DEFAULT_STORE`: a file path, or a URL kept as it is."""
    chosen = str(given) if given else os.environ.get("ROBENCH_STORE") or DEFAULT_STORE
    return chosen if is_url(chosen) else Path(chosen)


def default_store() -> Path | str:
    """The store used when none is given (:func:`store_location` of nothing)."""
    return store_location(None)


def default_cache(store: Path | str | None = None) -> Path:
    """``$ROBENCH_CACHE``, else ``cache`` beside ``store`` (the default store when None; ``results/cache`` for
    a database URL)."""
    explicit = os.environ.get("ROBENCH_CACHE")
    if explicit:
        return Path(explicit)
    where = store if store is not None else default_store()
    return (where.parent if isinstance(where, Path) else Path(DEFAULT_STORE).parent) / "cache"
