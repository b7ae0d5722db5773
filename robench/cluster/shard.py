"""One task's part of a plan: ``--shard I/N`` of ``robench run``.

A plan is split by content, not by position, so the same model or cell falls to the same task in
every protocol that shares it (the ten paper protocols share 62 of their 90 model rows):

- **models** go by *family*: a model and every model derived from it (ExFMem's fine-tuned variants
  derive from a base) share the task of their root, chosen by the root's id, so no two tasks train
  the same base;
- **cells** go by their own id.

Ids are SHA-256 content hashes, so the split is balanced in expectation and stable across runs: a
re-submitted task finds the work it finished before in its own store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from robench.errors import RobenchError
from robench.plan import Plan


@dataclass(frozen=True)
class Shard:
    """Task ``index`` (0-based) of ``count`` tasks over one plan."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"I/N"`` with 0 <= I < N (e.g. ``"$SLURM_ARRAY_TASK_ID/8"``)."""
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if m is None or not 0 <= int(m.group(1)) < int(m.group(2)):
            raise RobenchError(f"run --shard {text!r}: allowed: I/N with 0 <= I < N, e.g. 0/4 (task 0 of 4)")
        return cls(int(m.group(1)), int(m.group(2)))

    def takes(self, content_id: str) -> bool:
        """Whether this task owns the model family or cell with this id."""
        return int(content_id[:12], 16) % self.count == self.index

    def models(self, plan: Plan) -> set[str]:
        """The ids of this task's models: those whose root base (or themselves) it owns."""
        def root(model_id: str) -> str:
            base = plan.models[model_id].base
            return root(base) if base else model_id

        return {mid for mid in plan.models if self.takes(root(mid))}

    def cells(self, plan: Plan) -> set[str]:
        """The ids of this task's cells."""
        return {cid for cid in plan.cells if self.takes(cid)}
