"""The model cache: trained checkpoints keyed by model id (a content hash of their spec).

Layout of ``<cache>/models/<model_id>/``:

``model.pt``
    the trained weights: a flat state dict of tensors and nothing else, read with
    ``torch.load(weights_only=True)`` (nothing in the cache can run code when loaded).
``model.json``
    everything else, as JSON: the model id and spec, the defense's summary, the training
    history, seconds, versions, device and precision. Written after ``model.pt``; an entry is
    complete only when both exist.
``partial.pt`` / ``partial.json``
    the last finished epoch while training (see :mod:`robench.train.trainer`), removed when done.
``.lock``
    a file lock per model id: concurrent runs that need the same model train it once.

Writes are atomic (temporary file + rename). A file that cannot be read is reported by path with
the fix (delete the folder to retrain); it never stands in for another model.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from robench import __version__
from robench.errors import RobenchError
from robench.plan import ModelJob
from robench.runtime import RuntimeOptions
from robench.train.files import atomic_save, atomic_write_bytes, load_state, load_tensors, read_json
from robench.train.trainer import TrainedModel, build_model

#: version of the files above; older entries (format 1: one pickled payload) are not read
CHECKPOINT_FORMAT = 2


class ModelCache:
    """Trained models on disk under ``root/models``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root) / "models"

    def dir(self, model_id: str) -> Path:
        return self.root / model_id

    def has(self, model_id: str) -> bool:
        d = self.dir(model_id)
        return (d / "model.pt").is_file() and (d / "model.json").is_file()

    @contextmanager
    def lock(self, model_id: str, wait: bool = True) -> Iterator[bool]:
        """Exclusive lock on one model id across the processes of one host; yields whether it is held.

        ``wait=True`` blocks while another process holds it (and always yields True); ``wait=False``
        yields False at once instead, so a worker can take other work meanwhile.
        """
        d = self.dir(model_id)
        try:
            d.mkdir(parents=True, exist_ok=True)
            fh = open(d / ".lock", "w")  # closed by the with block below
        except OSError as exc:
            raise RobenchError(f"cannot train into the model cache {self.root}: {exc.strerror or exc}; pass --cache a "
                               "writable folder (a read-only cache can only serve models it already holds)") from None
        with fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def save(self, job: ModelJob, trained: TrainedModel, device: str) -> Path:
        """Store a model trained here and remove its resume state."""
        state = {k: v.detach().cpu() for k, v in trained.model.state_dict().items()}
        path = self.write(job, state, {"summary": trained.summary, "history": trained.history,
                                       "train_seconds": trained.train_seconds, "robench_version": __version__,
                                       "torch_version": torch.__version__, "device": device})
        for name in ("partial.pt", "partial.json"):
            (path.parent / name).unlink(missing_ok=True)
        return path

    def write(self, job: ModelJob, state: dict[str, Tensor], record: dict[str, Any]) -> Path:
        """Write ``model.pt`` (tensors only), then ``model.json``: ``record`` (summary, history, provenance)
        with the format, model id, spec and precision; returns the path of ``model.pt``."""
        d = self.dir(job.id)
        d.mkdir(parents=True, exist_ok=True)
        meta = {**record, "format": CHECKPOINT_FORMAT, "model_id": job.id, "spec": job.spec,
                "precision": job.precision.identity()}
        atomic_save(state, d / "model.pt")
        atomic_write_bytes(d / "model.json", json.dumps(meta, indent=1, sort_keys=True, default=str).encode())
        return d / "model.pt"

    def load(self, job: ModelJob, device: torch.device, runtime: RuntimeOptions | None = None) -> TrainedModel:
        """Rebuild ``job``'s model, apply its defense's changes, load the weights (``weights_only``)."""
        d = self.dir(job.id)
        fix = f"delete the folder {d} to retrain this model ({job.label}, seed {job.seed})"
        meta = read_json(d / "model.json", "cached model record", fix)
        if meta.get("format") != CHECKPOINT_FORMAT or meta.get("model_id") != job.id:
            raise RobenchError(f"cached model {d} is format {meta.get('format')!r} of model {meta.get('model_id')!r}, "
                               f"not format {CHECKPOINT_FORMAT} of {job.id}; {fix}")
        state = load_tensors(d / "model.pt", "cached model", fix)
        if not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
            raise RobenchError(f"cached model {d / 'model.pt'} is not a state dict of tensors; {fix}")
        model, defense = build_model(job)
        why = load_state(model, state)
        if why is not None:
            raise RobenchError(f"cached model {d / 'model.pt'} {why} (its spec); {fix}")
        (runtime or RuntimeOptions()).prepare_model(model.to(device).eval())
        return TrainedModel(model, defense, meta.get("summary", {}), meta.get("history", []),
                            meta.get("train_seconds"), loaded_from_cache=True)
