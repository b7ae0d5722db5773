"""Training one model of a plan: build it, let its defense train it, checkpoint every epoch.

The optimiser and schedule follow the paper (Section 4.2): SGD with momentum 0.9, weight decay
5e-4, learning rate 0.01 with cosine annealing (T_max = epochs, stepped per epoch), batch 16;
each is a protocol option. The defense owns the loss (:meth:`Defense.loss`).

Determinism: initial weights come from ``derive_seed(seed, "init")``; epoch e re-seeds every RNG
with ``derive_seed(seed, "epoch", e)`` and shuffles with its own generator. On the CPU the same
spec therefore gives bit-identical weights, and a run killed mid-training resumes from the last
finished epoch (``partial.pt`` + ``partial.json``, read with ``weights_only=True``) to the same
weights it would have reached uninterrupted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robench.data.base import ClipDataset, batch_indices
from robench.errors import RobenchError
from robench.hashing import derive_seed
from robench.models.two_stream import TwoStreamModel
from robench.plan import ModelJob
from robench.progress import Progress
from robench.protocol.schema import TrainingConfig
from robench.registry import BACKBONES, DEFENSES
from robench.runtime import RuntimeOptions, seed_everything
from robench.train.context import TrainContext
from robench.train.files import atomic_save, atomic_write_bytes, load_tensors, read_json


@dataclass
class TrainedModel:
    """A trained (or loaded) model with what the defense and the trainer recorded about it."""

    model: TwoStreamModel
    defense: Any
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float | None = None
    loaded_from_cache: bool = False


def build_model(job: ModelJob) -> tuple[TwoStreamModel, Any]:
    """The untrained model of ``job`` with its defense's changes (seeded: same weights every time)."""
    seed_everything(derive_seed(job.seed, "init"))
    backbones = {m: BACKBONES.build(c.type, **c.params) for m, c in job.backbones.items()}
    model = TwoStreamModel(backbones, job.num_classes)
    defense = DEFENSES.build(job.defense.type, **job.defense.params)
    defense.prepare(model)
    return model, defense


def make_optimizer(params: list[nn.Parameter], cfg: TrainingConfig, lr: float | None = None) -> torch.optim.Optimizer:
    """The protocol's optimiser: SGD with momentum (the paper), Adam or AdamW."""
    lr = cfg.lr if lr is None else lr
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               nesterov=cfg.nesterov and cfg.momentum > 0)
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=lr, betas=(cfg.momentum, 0.999), weight_decay=cfg.weight_decay)


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainingConfig,
                   epochs: int) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


LossFn = Callable[[nn.Module, dict[str, torch.Tensor], torch.Tensor, TrainContext], Any]


def run_epoch(model: TwoStreamModel, loss_fn: LossFn, ctx: TrainContext, opt: torch.optim.Optimizer,
              cfg: TrainingConfig, generator: torch.Generator, progress: Progress, label: str) -> dict[str, float]:
    """One pass over the training set; returns mean loss, training accuracy and the defense's logs."""
    model.train()
    batches = batch_indices(len(ctx.train_set), ctx.batch_size, shuffle=True, generator=generator)
    if cfg.max_steps_per_epoch is not None:
        batches = batches[: cfg.max_steps_per_epoch]
    steps = len(batches)
    total_loss, correct, seen = 0.0, 0, 0
    logs: dict[str, float] = {}
    with progress.task(label, steps) as bar:
        for i, (inputs, labels) in enumerate(ctx.batches(index=batches)):
            with ctx.runtime.autocast(ctx.device):
                out = loss_fn(model, inputs, labels, ctx)
            if not torch.isfinite(out.loss):
                raise RobenchError(f"{label}: training diverged (loss {float(out.loss)}) at step {i}; "
                                   "lower training.lr or set training.grad_clip")
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            if cfg.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            n = labels.shape[0]
            total_loss += float(out.loss.detach()) * n
            seen += n
            if out.logits is not None:
                correct += int((out.logits.detach().argmax(1) == labels).sum())
            for k, v in out.logs.items():
                logs[k] = logs.get(k, 0.0) + float(v) * n
            bar.advance(1, loss=total_loss / seen, acc=correct / seen)
    stats = {"loss": total_loss / max(seen, 1), "train_acc": correct / max(seen, 1), "steps": steps}
    stats.update({k: v / max(seen, 1) for k, v in logs.items()})
    return stats


def save_resume_state(workdir: Path, job: ModelJob, epoch: int, model: nn.Module, opt: torch.optim.Optimizer,
                      sched: torch.optim.lr_scheduler.LRScheduler, history: list[dict[str, Any]],
                      seconds: float) -> None:
    """Write the state after ``epoch``: tensors to ``partial.pt``, the rest to ``partial.json`` (both atomic)."""
    workdir.mkdir(parents=True, exist_ok=True)
    atomic_save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                 "epoch": torch.tensor(epoch)}, workdir / "partial.pt")
    atomic_write_bytes(workdir / "partial.json", json.dumps(
        {"model_id": job.id, "epoch": epoch, "history": history, "seconds": seconds}, default=str).encode())


def load_resume_state(workdir: Path, job: ModelJob,
                      log: Callable[[str], None]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The state :func:`save_resume_state` left for ``job``, or None (nothing usable: train from the start).

    Read with ``weights_only=True``. A resume state that cannot be read, belongs to another
    model or whose two files disagree is reported by path and ignored, never half-used.
    """
    pt, meta_path = workdir / "partial.pt", workdir / "partial.json"
    if not pt.exists() and not meta_path.exists():
        return None
    try:
        meta = read_json(meta_path, "resume state", "training restarts from epoch 1")
        state = load_tensors(pt, "resume state", "training restarts from epoch 1")
        epoch = state.get("epoch")
        if meta.get("model_id") != job.id or not isinstance(epoch, torch.Tensor) or int(epoch) != meta.get("epoch"):
            raise RobenchError(f"resume state {pt} does not belong to model {job.id} at the epoch {meta_path} "
                               "records; training restarts from epoch 1")
    except RobenchError as exc:
        log(f"robench: warning: {exc}")
        return None
    return meta, state


def train_model(job: ModelJob, train_set: ClipDataset, device: torch.device, progress: Progress,
                workdir: Path, name: str = "", base: TrainedModel | None = None,
                runtime: RuntimeOptions | None = None) -> TrainedModel:
    """Train ``job``'s model on ``train_set``; resumes from ``workdir/partial.pt`` if present.

    For a derived defense (``job.base``), ``base`` is the trained base model: its weights are
    copied in, the main loop is skipped and only the defense's :meth:`finalize` runs.
    """
    cfg = job.entry.training
    model, defense = build_model(job)
    if (base is None) != (job.base is None):
        raise RobenchError(f"model {job.id}: base model {'missing' if base is None else 'unexpected'}")
    if base is not None:
        unexpected = model.load_state_dict(base.model.state_dict(), strict=False).unexpected_keys
        if unexpected:
            raise RobenchError(f"model {job.id}: base model {job.base} has weights the derived model lacks: "
                               f"{unexpected[:5]}")
    runtime = runtime or RuntimeOptions()
    runtime.prepare_model(model.to(device))
    opt = make_optimizer([p for p in model.parameters() if p.requires_grad], cfg)
    sched = make_scheduler(opt, cfg, cfg.epochs)
    name = name or f"{job.entry.label} [{job.id[:8]}]"
    ctx = TrainContext(
        device=device, train_set=train_set, batch_size=cfg.batch_size, epochs=cfg.epochs, lr=cfg.lr, attack=cfg.attack,
        attack_eps=cfg.attack_eps, threat=job.threat, attack_mode=cfg.attack_mode, seed=job.seed,
        modalities=model.modalities, runtime=runtime, log=progress.log, defense=job.defense.type,
        uses_training_attack=type(defense).uses_training_attack,
    )
    ctx.fit = lambda loss_fn, epochs, tag, lr=None: fit(model, loss_fn, epochs, tag, ctx, cfg, progress, name, lr)

    history = ctx.history
    start_epoch, elapsed_before = 0, 0.0
    if base is not None and job.base is not None:  # (both or neither: checked above) the base did the main training
        history.extend({**h, "phase": f"base {job.base[:8]}"} for h in base.history)
        start_epoch = cfg.epochs
    if not type(defense).trains:  # weights loaded by prepare
        start_epoch = cfg.epochs
    resumed = load_resume_state(workdir, job, progress.log) if base is None and type(defense).trains else None
    if resumed is not None:
        meta, state = resumed
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        history.extend(meta["history"])
        start_epoch, elapsed_before = int(meta["epoch"]) + 1, float(meta["seconds"])
        progress.log(f"resuming {name} from epoch {start_epoch}/{cfg.epochs}")
    t0 = time.perf_counter()
    with progress.task(f"train {name}", cfg.epochs) as epochs_bar:
        epochs_bar.advance(start_epoch)
        for epoch in range(start_epoch, cfg.epochs):
            ctx.epoch = epoch
            seed_everything(derive_seed(job.seed, "epoch", epoch))
            gen = torch.Generator().manual_seed(derive_seed(job.seed, "order", epoch))
            stats = run_epoch(model, defense.loss, ctx, opt, cfg, gen, progress, f"  epoch {epoch + 1}/{cfg.epochs}")
            history.append({**stats, "epoch": epoch + 1, "lr": opt.param_groups[0]["lr"], "phase": "train"})
            sched.step()
            epochs_bar.advance(1, loss=stats["loss"], acc=stats["train_acc"])
            progress.log(f"{name} epoch {epoch + 1}/{cfg.epochs}: loss {stats['loss']:.4f} "
                         f"train acc {100 * stats['train_acc']:.1f}%")
            save_resume_state(workdir, job, epoch, model, opt, sched, history,
                              elapsed_before + time.perf_counter() - t0)
    defense.finalize(model, ctx)
    model.eval()
    return TrainedModel(model, defense, defense.summary(model), history, elapsed_before + time.perf_counter() - t0)


def fit(model: TwoStreamModel, loss_fn: LossFn, epochs: int, tag: str, ctx: TrainContext, cfg: TrainingConfig,
        progress: Progress, name: str, lr: float | None = None) -> None:
    """Extra training epochs with another loss (a defense's fine-tuning), fresh SGD + schedule."""
    opt = make_optimizer([p for p in model.parameters() if p.requires_grad], cfg, lr)
    sched = make_scheduler(opt, cfg, epochs)
    for epoch in range(epochs):
        seed_everything(derive_seed(ctx.seed, tag, "epoch", epoch))
        gen = torch.Generator().manual_seed(derive_seed(ctx.seed, tag, "order", epoch))
        stats = run_epoch(model, loss_fn, ctx, opt, cfg, gen, progress, f"  {tag} {epoch + 1}/{epochs}")
        sched.step()
        ctx.history.append({**stats, "epoch": epoch + 1, "phase": tag})
        progress.log(f"{name} {tag} {epoch + 1}/{epochs}: loss {stats['loss']:.4f}")
