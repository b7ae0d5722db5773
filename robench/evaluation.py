"""Evaluating one cell: a trained model, on the evaluation set, clean or under one attack.

The model is in eval mode. An attacked cell runs its attack's stages in turn (one stage for a
single attack; AutoAttack's members for the ensemble), each only on the clips that every stage
before left correctly classified. A stage that is an :class:`~robench.attacks.engine.EngineAttack`
streams the clips through :func:`~robench.attacks.engine.run_engine`: a fixed-size active batch,
refilled from the rest of the evaluation set as clips are fooled. Every returned input is checked
against the threat model and then re-classified, and that prediction decides the clip.

Random starts are seeded per sample (``derive_seed(evaluation.seed, clip index)``), so a cell's
result does not depend on the batch size or on the refilling, and all models see the same
starting noise for the same clip (paired comparisons between defenses).

Sharded (``torchrun``, :class:`~robench.distributed.Ranks`): rank r evaluates batches r, r + world, ...
of the single-process batch list, the per-clip outcomes of every stage are gathered on every rank,
and the next stage starts from the same remaining clips everywhere. Because every draw is seeded per
clip, the per-clip results equal a single process's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from robench.attacks.base import Attack, check_adversarial
from robench.attacks.engine import EngineAttack, Finished, Model, Rows, make_rows, run_engine
from robench.attacks.plausible import JOINTS, plausibility
from robench.data.base import ClipDataset, batch_indices, to_model_inputs
from robench.distributed import SINGLE, Ranks
from robench.hashing import derive_seed
from robench.interrupt import checkpoint
from robench.models.bpda import backward_approximation
from robench.models.provided import ProvidedModel
from robench.models.two_stream import TwoStreamModel
from robench.plan import Cell
from robench.progress import Progress
from robench.protocol.schema import EvaluationConfig
from robench.registry import ATTACKS, CORRUPTIONS
from robench.runtime import RuntimeOptions
from robench.sanity import model_checks
from robench.store.details import CLEAN, ROBUST, CellDetails


@dataclass
class CellResult:
    """Outcome of one cell: per-sample correctness on the evaluated clips (and, if attacked, details)."""

    correct: np.ndarray  # bool [n]
    seconds: float
    details: CellDetails | None = None

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


def _chunks(model: TwoStreamModel | ProvidedModel, dataset: ClipDataset, indices: torch.Tensor, positions: np.ndarray,
            attacked: Sequence[str], cfg: EvaluationConfig, device: torch.device, runtime: RuntimeOptions,
            ranks: Ranks = SINGLE) -> Iterator[Rows]:
    """The clips at ``positions`` of ``indices`` as :class:`Rows`, ``batch_size`` at a time, loaded lazily
    (this rank's batches only)."""
    order = torch.as_tensor(positions, dtype=torch.int64)
    batches = ranks.strided(batch_indices(len(order), cfg.batch_size, indices=order))
    for pos, batch in zip(batches, runtime.batches(dataset, [indices[p] for p in batches])):
        inputs = to_model_inputs(batch, device, model.modalities)
        labels = batch["label"].to(device, non_blocking=True)
        seeds = torch.tensor([derive_seed(cfg.seed, int(i)) for i in indices[pos]], dtype=torch.int64)
        yield make_rows(inputs, labels, attacked, seeds, pos=pos)


def _finished(stage: Attack, model: Model, chunks: Iterator[Rows], capacity: int) -> Iterator[Finished]:
    if isinstance(stage, EngineAttack):
        yield from run_engine(stage, model, chunks, capacity)
        return
    for rows in chunks:  # an attack written as perturb() only: one batch at a time
        adv = stage(model, rows.clean, rows.labels, rows.seeds)
        yield Finished(rows, adv, torch.zeros(len(rows), dtype=torch.bool))


@dataclass
class _Judged:
    """A group of finished rows after the check and the re-classification."""

    pos: np.ndarray
    correct: np.ndarray
    untouched: np.ndarray
    metrics: dict[str, np.ndarray]


def _judge(model: Model, stage: Attack, label: str, group: list[Finished]) -> _Judged:
    """Check and re-classify finished rows."""
    rows = Rows.cat([f.rows for f in group])
    adv = {m: torch.cat([f.adversarial[m] for f in group]) for m in group[0].adversarial}
    check_adversarial(rows.clean, adv, stage.eps, stage.bounds, attack=label, plausible=stage.plausible,
                      norm=stage.norm)
    with torch.no_grad():
        correct = model(adv).argmax(1) == rows.labels
    untouched = torch.cat([f.untouched for f in group])
    metrics = {k: torch.cat([f.metrics[k] for f in group]).double().cpu().numpy() for k in group[0].metrics}
    if "skeleton" in stage.eps and rows.clean["skeleton"].shape[3] == JOINTS:
        # how plausible the adversarial skeletons are, constrained or not
        for k, v in plausibility(adv["skeleton"], rows.clean["skeleton"]).items():
            metrics[f"skeleton/{k}"] = v.cpu().numpy()
    return _Judged(rows.pos.cpu().numpy(), correct.cpu().numpy(), untouched.cpu().numpy(), metrics)


def _run_stage(model: Model, stage: Attack, label: str, chunks: Iterator[Rows], capacity: int) -> Iterator[_Judged]:
    """Attack every row of ``chunks`` with ``stage``; yields judged groups of about ``capacity`` rows."""
    group: list[Finished] = []
    size = 0
    for fin in _finished(stage, model, chunks, capacity):
        checkpoint()  # a safe point: between batches of the attack
        group.append(fin)
        size += len(fin.rows)
        if size >= capacity:
            yield _judge(model, stage, label, group)
            group, size = [], 0
    if group:
        yield _judge(model, stage, label, group)


def evaluate_cell(model: TwoStreamModel | ProvidedModel, dataset: ClipDataset, cell: Cell, device: torch.device,
                  progress: Progress, label: str = "", runtime: RuntimeOptions | None = None,
                  ranks: Ranks = SINGLE) -> CellResult:
    """Run ``cell`` on ``model`` (clean accuracy or accuracy under its attack).

    With several ``ranks`` every rank calls this together, evaluates its share of the batches and
    returns the whole cell's result (the same on every rank).
    """
    model.eval()
    runtime = runtime or RuntimeOptions()
    cfg = cell.evaluation
    indices = evaluation_indices(dataset, cfg)
    n = len(indices)
    t0 = time.perf_counter()
    if not cell.attack_type:
        corrupt = _corrupter(cell) if cell.corruption is not None else None
        return CellResult(_clean(model, dataset, indices, cfg, device, progress, label, runtime, ranks, corrupt),
                          time.perf_counter() - t0)
    attack = ATTACKS.build(cell.attack_type, **cell.attack_params)
    stages = list(attack.stages())
    details = CellDetails([name for name, _ in stages], np.full(n, ROBUST, dtype=np.int8),
                          gradient_free=[type(stage).gradient_free for _, stage in stages])
    remaining = np.arange(n)
    with runtime.autocast(device), backward_approximation(model, cfg.bpda):
        if n:
            first = next(_chunks(model, dataset, indices, remaining[: cfg.batch_size], (), cfg, device, runtime))
            details.model = model_checks(model, first.clean)
        for k, (name, stage) in enumerate(stages, start=1):
            if remaining.size == 0:
                break
            chunks = _chunks(model, dataset, indices, remaining, stage.modalities, cfg, device, runtime, ranks)
            judged: list[_Judged] = []
            with progress.task(f"{label or cell.scenario} {name}", int(remaining.size)) as bar:
                for j in _run_stage(model, stage, name, chunks, cfg.batch_size):
                    judged.append(j)
                    bar.advance(len(j.pos) * ranks.world)
            if ranks.parallel:  # every rank needs every clip's outcome to know what the next stage attacks
                judged = [j for part in ranks.gather(judged) for j in part]
            still = np.zeros(n, dtype=bool)
            for j in judged:
                details.broken_by[j.pos[~j.correct]] = np.where(j.untouched[~j.correct], CLEAN, k)
                still[j.pos[j.correct]] = True
                for key, values in j.metrics.items():
                    details.metrics.setdefault(f"{name}/{key}", np.full(n, np.nan))[j.pos] = values
            remaining = np.flatnonzero(still)
            if isinstance(stage, EngineAttack):
                for audit in ranks.gather(stage.audit):
                    details.gradients.absorb(audit)
    return CellResult(details.broken_by == ROBUST, time.perf_counter() - t0, details)


#: inputs of a batch and the dataset indices of its clips -> the inputs the model is shown
Transform = Callable[[dict[str, torch.Tensor], torch.Tensor], dict[str, torch.Tensor]]


def _corrupter(cell: Cell) -> Transform:
    """The corruption of a corruption cell, seeded per clip from the evaluation seed, the corruption's name and
    the severity (so every model sees the same corrupted clips, whatever the batch)."""
    assert cell.corruption is not None
    comp, severity, seed = cell.corruption, cell.severity, cell.evaluation.seed
    corruption = CORRUPTIONS.build(comp.type, **comp.params)

    def apply(inputs: dict[str, torch.Tensor], indices: torch.Tensor) -> dict[str, torch.Tensor]:
        seeds = torch.tensor([derive_seed(seed, int(i), "corruption", comp.type, severity) for i in indices],
                             dtype=torch.int64)
        return corruption(inputs, severity, seeds)

    return apply


def _clean(model: TwoStreamModel | ProvidedModel, dataset: ClipDataset, indices: torch.Tensor, cfg: EvaluationConfig,
           device: torch.device, progress: Progress, label: str, runtime: RuntimeOptions,
           ranks: Ranks = SINGLE, transform: Transform | None = None) -> np.ndarray:
    """Per-clip correctness of the model's predictions on the clips at ``indices`` (after ``transform``, if any)."""
    numbered = ranks.strided(list(enumerate(batch_indices(len(indices), cfg.batch_size, indices=indices))))
    outcomes: dict[int, np.ndarray] = {}
    correct = seen = 0
    with progress.task(label or "eval clean", len(numbered)) as bar, runtime.autocast(device), torch.no_grad():
        for (b, idx), batch in zip(numbered, runtime.batches(dataset, [idx for _, idx in numbered])):
            checkpoint()
            inputs = to_model_inputs(batch, device, model.modalities)
            if transform is not None:
                inputs = transform(inputs, idx)
            labels = batch["label"].to(device, non_blocking=True)
            outcomes[b] = (model(inputs).argmax(1) == labels).cpu().numpy()
            correct, seen = correct + int(outcomes[b].sum()), seen + len(outcomes[b])
            bar.advance(1, acc=correct / max(seen, 1))
    if ranks.parallel:
        outcomes = {b: o for part in ranks.gather(outcomes) for b, o in part.items()}
    return np.concatenate([outcomes[b] for b in sorted(outcomes)]) if outcomes else np.zeros(0, dtype=bool)
