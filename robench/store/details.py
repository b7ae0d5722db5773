"""What an attacked cell stores beyond its per-clip correctness, and how it is encoded in the store.

The ``details`` column of an attacked cell is the JSON of :class:`CellDetails`: the stages the attack
ran (AutoAttack's members, or the attack itself), which stage fooled each clip, the robust accuracy
after each stage, the gradient audit and the forward-pass checks (:mod:`robench.sanity`), and per-clip
numbers a stage reports (FAB-T's budget factor). Reports and leaderboard records decode it from here.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robench.attacks.engine import GradientAudit
from robench.sanity import ModelChecks

#: :attr:`CellDetails.broken_by` codes: never fooled, and misclassified without any attack
ROBUST, CLEAN = -1, 0


@dataclass
class CellDetails:
    """What an attacked cell records beyond per-sample correctness.

    ``broken_by[i]`` is :data:`ROBUST` (-1), :data:`CLEAN` (0, wrong on the clean input) or k >= 1:
    stage k (``stages[k - 1]``) fooled clip i. ``gradients`` sums the stages' gradient audits and
    ``model`` holds the forward-pass checks (:mod:`robench.sanity`).
    """

    stages: list[str]
    broken_by: np.ndarray
    gradients: GradientAudit = field(default_factory=GradientAudit)
    model: ModelChecks | None = None
    gradient_free: list[bool] = field(default_factory=list)  # per stage: reads only outputs (Square)
    #: per-clip numbers a stage reports, keyed "<stage>/<name>" (e.g. FAB-T's budget factor; NaN = not reached)
    metrics: dict[str, np.ndarray] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The store's ``details`` column (``broken_by`` as base64 of int8)."""
        return {"stages": list(self.stages), "accuracy_after": self.accuracy_after(),
                "broken_by": base64.b64encode(self.broken_by.astype(np.int8).tobytes()).decode(),
                "gradients": dataclasses.asdict(self.gradients),
                "model": dataclasses.asdict(self.model) if self.model is not None else None,
                "gradient_free": list(self.gradient_free),
                "metrics": {k: [None if not np.isfinite(x) else round(float(x), 5) for x in v]
                            for k, v in self.metrics.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CellDetails:
        broken = np.frombuffer(base64.b64decode(data["broken_by"]), dtype=np.int8).copy()
        model = ModelChecks(**data["model"]) if data.get("model") is not None else None
        metrics = {k: np.array([np.inf if x is None else x for x in v], dtype=np.float64)
                   for k, v in (data.get("metrics") or {}).items()}
        return cls(list(data["stages"]), broken, GradientAudit(**data["gradients"]), model,
                   [bool(x) for x in data.get("gradient_free", [])], metrics)

    def correct_after(self, stage: str) -> np.ndarray:
        """Per-clip robustness after the stages up to and including ``stage`` (bool ``[n]``)."""
        if stage not in self.stages:
            raise KeyError(f"stage {stage!r} is not one of {self.stages}")
        k = self.stages.index(stage) + 1
        return (self.broken_by == ROBUST) | (self.broken_by > k)

    def accuracy_after(self) -> list[float]:
        """Robust accuracy after each stage, in stage order (AutoAttack's running report)."""
        n = max(len(self.broken_by), 1)
        wrong = (self.broken_by == CLEAN).sum()
        out = []
        for k in range(1, len(self.stages) + 1):
            wrong += (self.broken_by == k).sum()
            out.append(float(1 - wrong / n))
        return out


def details_of(row: Mapping[str, Any]) -> CellDetails | None:
    """A stored cell row's details (None for a clean cell, or a row stored without them)."""
    raw = row.get("details")
    return CellDetails.from_json(json.loads(raw) if isinstance(raw, str) else raw) if raw else None
