"""Evaluating one cell: a trained model, on the evaluation set, clean or under one attack.

The model is in eval mode. For an attacked cell every batch goes through the attack (whose output
is checked against the threat model) and the prediction on the returned input decides the sample.
Random starts are seeded per sample (``derive_seed(evaluation.seed, sample index)``), so a cell's
result does not depend on the batch size, and all models see the same starting noise for the same
clip (paired comparisons between defenses).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from robench.data.base import ClipDataset, batch_indices, to_model_inputs
from robench.hashing import derive_seed
from robench.models.two_stream import TwoStreamModel
from robench.plan import Cell
from robench.progress import Progress
from robench.protocol.schema import EvaluationConfig
from robench.registry import ATTACKS
from robench.runtime import RuntimeOptions


@dataclass
class CellResult:
    """Outcome of one cell: per-sample correctness on the evaluated clips."""

    correct: np.ndarray  # bool [n]
    seconds: float

    @property
    def n(self) -> int:
        return int(self.correct.shape[0])

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean()) if self.n else float("nan")


def evaluation_indices(dataset: ClipDataset, cfg: EvaluationConfig) -> torch.Tensor:
    """The clips a cell evaluates: all of the split, or a seeded random subset of ``max_samples``."""
    n = len(dataset)
    if cfg.max_samples is None or cfg.max_samples >= n:
        return torch.arange(n)
    gen = torch.Generator().manual_seed(derive_seed("evaluation-subset", cfg.seed, n))
    return torch.randperm(n, generator=gen)[: cfg.max_samples].sort().values


def evaluate_cell(model: TwoStreamModel, dataset: ClipDataset, cell: Cell, device: torch.device,
                  progress: Progress, label: str = "", runtime: RuntimeOptions | None = None) -> CellResult:
    """Run ``cell`` on ``model`` (clean accuracy or accuracy under its attack)."""
    model.eval()
    runtime = runtime or RuntimeOptions()
    cfg = cell.evaluation
    indices = evaluation_indices(dataset, cfg)
    attack = ATTACKS.build(cell.attack_type, **cell.attack_params) if cell.attack_type else None
    outcomes: list[np.ndarray] = []
    t0 = time.perf_counter()
    batches = batch_indices(len(indices), cfg.batch_size, indices=indices)
    with progress.task(label or f"eval {cell.scenario}", len(batches)) as bar:
        for idx, batch in zip(batches, runtime.batches(dataset, batches)):
            inputs = to_model_inputs(batch, device, model.modalities)
            labels = batch["label"].to(device, non_blocking=True)
            with runtime.autocast(device):
                if attack is not None:
                    seeds = torch.tensor([derive_seed(cfg.seed, int(i)) for i in idx], dtype=torch.int64)
                    inputs = attack(model, inputs, labels, sample_seeds=seeds)
                with torch.no_grad():
                    pred = model(inputs).argmax(1)
            outcomes.append((pred == labels).cpu().numpy())
            done = np.concatenate(outcomes)
            bar.advance(1, acc=float(done.mean()))
    return CellResult(np.concatenate(outcomes) if outcomes else np.zeros(0, dtype=bool), time.perf_counter() - t0)
