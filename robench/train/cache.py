"""The model cache: trained checkpoints keyed by model id (a content hash of their spec).

Layout: ``<cache>/models/<model_id>/model.pt`` (final checkpoint), ``partial.pt`` (last finished
epoch, for resuming), ``spec.json`` (human-readable spec) and ``.lock``. Writes are atomic
(temporary file + rename). A file lock per model id makes concurrent runs that need the same
model train it once: the second waits and then loads.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from robench import __version__
from robench.errors import RobenchError
from robench.plan import ModelJob
from robench.runtime import RuntimeOptions
from robench.train.trainer import TrainedModel, build_model

CHECKPOINT_FORMAT = 1


class ModelCache:
    """Trained models on disk under ``root/models``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root) / "models"

    def dir(self, model_id: str) -> Path:
        return self.root / model_id

    def has(self, model_id: str) -> bool:
        return (self.dir(model_id) / "model.pt").is_file()

    @contextmanager
    def lock(self, model_id: str) -> Iterator[None]:
        """Exclusive lock on one model id across processes (blocks while another holds it)."""
        d = self.dir(model_id)
        d.mkdir(parents=True, exist_ok=True)
        with open(d / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def save(self, job: ModelJob, trained: TrainedModel, device: str) -> Path:
        d = self.dir(job.id)
        d.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in trained.model.state_dict().items()}
        payload = {
            "format": CHECKPOINT_FORMAT, "model_id": job.id, "spec": job.spec, "state_dict": state,
            "summary": trained.summary, "history": trained.history, "train_seconds": trained.train_seconds,
            "robench_version": __version__, "torch_version": torch.__version__, "device": device,
        }
        tmp = d / "model.pt.tmp"
        torch.save(payload, tmp)
        os.replace(tmp, d / "model.pt")
        (d / "spec.json").write_text(json.dumps(job.spec, indent=2, sort_keys=True, default=str))
        partial = d / "partial.pt"
        if partial.exists():
            partial.unlink()
        return d / "model.pt"

    def load(self, job: ModelJob, device: torch.device, runtime: RuntimeOptions | None = None) -> TrainedModel:
        """Rebuild ``job``'s model, apply its defense's changes, load the weights."""
        path = self.dir(job.id) / "model.pt"
        try:
            payload: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:
            raise RobenchError(f"cannot read cached model {path}: {exc}; delete it to retrain") from None
        if payload.get("model_id") != job.id:
            raise RobenchError(f"cached model {path} belongs to {payload.get('model_id')}, not {job.id}")
        model, defense = build_model(job)
        missing, unexpected = model.load_state_dict(payload["state_dict"], strict=False)
        if missing or unexpected:
            raise RobenchError(f"cached model {path} does not match its spec: missing {missing[:5]}, "
                               f"unexpected {unexpected[:5]}; delete it to retrain")
        (runtime or RuntimeOptions()).prepare_model(model.to(device).eval())
        return TrainedModel(model, defense, payload.get("summary", {}), payload.get("history", []),
                            payload.get("train_seconds"), loaded_from_cache=True)
