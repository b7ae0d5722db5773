"""Training one model of a plan: build it, let its defense train it, checkpoint every epoch.

The optimiser and schedule follow the paper (Section 4.2): SGD with momentum 0.9, weight decay
5e-4, learning rate 0.01 with cosine annealing (T_max = epochs, stepped per epoch), batch 16;
each is a protocol option. The defense owns the loss (:meth:`Defense.loss`).

Determinism: initial weights come from ``derive_seed(seed, "init")``; epoch e re-seeds every RNG
with ``derive_seed(seed, "epoch", e)`` and shuffles with its own generator. On the CPU the same
spec therefore gives bit-identical weights, and a run killed mid-training resumes from the last
finished epoch (``partial.pt`` + ``partial.json``, read with ``weights_only=True``) to the same
weights it would have reached uninterrupted.

Data parallel (``torchrun``, :class:`~robench.distributed.Ranks`): every rank walks the same global
batches as one process would (the epoch's seeded permutation plays the part of
``DistributedSampler.set_epoch``), takes its contiguous share of each, and computes the defense's loss
inside one DistributedDataParallel forward (:class:`StepLoss`): the training attack runs on the
unwrapped model with parameter gradients off, so gradients are all-reduced once per optimiser step.
Each rank's loss is weighted by its share of the global batch, so the averaged gradient is the
single-process gradient of the global batch. Rank 0 writes the resume state; every rank resumes
from it. Dropout masks and stream-drawn random starts are drawn per rank, which is why the number of
ranks is part of a model's identity (:func:`robench.plan.make_plan`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robench.data.base import ClipDataset, batch_indices
from robench.distributed import SINGLE, Ranks
from robench.errors import RobenchError
from robench.hashing import derive_seed
from robench.interrupt import checkpoint
from robench.models.provided import ProvidedModel
from robench.models.sampling import clip_seeds, step_seeds
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
    """A trained (or loaded) model with what the defense and the trainer recorded about it (or a model object
    handed to ``robench.evaluate``: :class:`~robench.models.provided.ProvidedModel`)."""

    model: TwoStreamModel | ProvidedModel
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


class StepLoss(nn.Module):
    """A defense's loss for one batch as a module: what DistributedDataParallel wraps.

    Wrapping the whole loss (the training attack and every forward the defense makes) in one module
    gives DDP exactly one forward and one backward per optimiser step, however many times the
    defense runs the model; the attack inside runs on :attr:`model` itself, never on the wrapper.
    :attr:`last` keeps the defense's full :class:`~robench.defenses.base.LossOutput` of the step.
    """

    def __init__(self, model: TwoStreamModel, loss_fn: LossFn, ctx: TrainContext) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn
        self.ctx = ctx
        self.last: Any = None

    def forward(self, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        self.last = self.loss_fn(self.model, inputs, labels, self.ctx)
        return self.last.loss


def data_parallel(step: StepLoss, ranks: Ranks, device: torch.device) -> nn.Module:
    """``step`` wrapped in DistributedDataParallel when there are several ranks (else ``step`` itself).

    ``find_unused_parameters`` is on: a defense may leave parameters out of a step's graph (heads a
    clean pass skips). Buffers (BatchNorm running statistics) are broadcast from rank 0 at every forward.
    """
    if not ranks.parallel:
        return step
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else 0] if device.type == "cuda" else None
    return DistributedDataParallel(step, device_ids=ids, find_unused_parameters=True, forward_sync_buffers=True)


def run_epoch(step: StepLoss, ctx: TrainContext, opt: torch.optim.Optimizer, cfg: TrainingConfig,
              generator: torch.Generator, progress: Progress, label: str, ranks: Ranks = SINGLE,
              wrapped: nn.Module | None = None, seed_base: Sequence[object] = ()) -> dict[str, float]:
    """One pass over the training set; returns mean loss, training accuracy and the defense's logs.

    ``wrapped`` is ``step`` under DistributedDataParallel (:func:`data_parallel`) when ``ranks`` has
    several processes: each then trains on its share of every global batch, and the statistics
    returned are those of the global batches (summed over the ranks). With ``training.sample_seeds``
    clip i of the epoch draws its dropout masks and random starts from ``derive_seed(*seed_base,
    "clip", i)`` (:mod:`robench.models.sampling`).
    """
    model = step.model
    model.train()
    forward = wrapped if wrapped is not None else step
    batches = batch_indices(len(ctx.train_set), ctx.batch_size, shuffle=True, generator=generator)
    if cfg.max_steps_per_epoch is not None:
        batches = batches[: cfg.max_steps_per_epoch]
    steps = len(batches)
    total_loss, correct, seen = 0.0, 0, 0
    logs: dict[str, float] = {}
    shares = [ranks.share(b) for b in batches]
    with progress.task(label, steps) as bar:
        for i, (inputs, labels) in enumerate(ctx.batches(index=shares)):
            seeds = clip_seeds((*seed_base, "clip"), shares[i]) if cfg.sample_seeds else None
            with step_seeds(seeds), ctx.runtime.autocast(ctx.device):
                loss = forward(inputs, labels)
            out = step.last
            n = labels.shape[0]
            finite = bool(torch.isfinite(out.loss))
            if ranks.parallel:
                finite = ranks.sum([0.0 if finite else 1.0])[0] == 0
            if not finite:
                raise RobenchError(f"{label}: training diverged (loss {float(out.loss)}) at step {i}; "
                                   "lower training.lr or set training.grad_clip")
            share = n * ranks.world / len(batches[i])  # 1 in one process; DDP averages the ranks' gradients
            opt.zero_grad(set_to_none=True)
            (loss * share if share != 1 else loss).backward()
            if cfg.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            checkpoint()  # a safe point: a stop asked for by a signal takes effect here
            total_loss += float(out.loss.detach()) * n
            seen += n
            if out.logits is not None:
                correct += int((out.logits.detach().argmax(1) == labels).sum())
            for k, v in out.logs.items():
                logs[k] = logs.get(k, 0.0) + float(v) * n
            bar.advance(1, loss=total_loss / seen, acc=correct / seen)
    if ranks.parallel:
        keys = sorted(logs)
        sums = ranks.sum([total_loss, correct, seen, *(logs[k] for k in keys)])
        total_loss, correct, seen = sums[0], int(sums[1]), int(sums[2])
        logs = dict(zip(keys, sums[3:]))
    stats = {"loss": total_loss / max(seen, 1), "train_acc": correct / max(seen, 1), "steps": steps}
    stats.update({k: v / max(seen, 1) for k, v in logs.items()})
    return stats


def check_data_parallel(job: ModelJob, model: TwoStreamModel, train_size: int, device: torch.device,
                        ranks: Ranks) -> None:
    """Refuse, before any step, a data-parallel run that cannot reproduce the protocol's training
    (the runner checks every model it will train before it starts; the trainer checks again)."""
    if not ranks.parallel or not DEFENSES.get(job.defense.type).trains:
        return
    cfg = job.entry.training
    where = f"model {job.label} (seed {job.seed}): training under torchrun with {ranks.world} ranks"
    if cfg.batch_size % ranks.world:
        raise RobenchError(f"{where}: training.batch_size {cfg.batch_size} does not divide into {ranks.world} equal "
                           f"shares; allowed: a multiple of {ranks.world} (the global batch stays the protocol's)")
    last = train_size % cfg.batch_size
    if 0 < last < ranks.world:
        raise RobenchError(f"{where}: the training set's {train_size} clips leave a last batch of {last} clip(s), "
                           f"fewer than the ranks; set training.batch_size so that the last batch has at least "
                           f"{ranks.world} clips, or run on fewer ranks")
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if has_bn and cfg.batchnorm == "sync" and device.type != "cuda":
        raise RobenchError(f"{where} on {device.type}: training.batchnorm 'sync' (statistics over the global batch) "
                           "needs CUDA (SyncBatchNorm); allowed on this device: 'per-rank' (each rank's statistics "
                           "over its own share; part of the model's identity)")


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
                runtime: RuntimeOptions | None = None, ranks: Ranks = SINGLE) -> TrainedModel:
    """Train ``job``'s model on ``train_set``; resumes from ``workdir/partial.pt`` if present.

    For a derived defense (``job.base``), ``base`` is the trained base model: its weights are
    copied in, the main loop is skipped and only the defense's :meth:`finalize` runs. With several
    ``ranks`` every rank calls this together; all return the same model (rank 0's weights), and only
    rank 0 writes the resume state.
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
    check_data_parallel(job, model, len(train_set), device, ranks)
    if ranks.parallel and cfg.batchnorm == "sync" and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
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
    ctx.fit = lambda loss_fn, epochs, tag, lr=None: fit(model, loss_fn, epochs, tag, ctx, cfg, progress, name, lr,
                                                        ranks)

    history = ctx.history
    start_epoch, elapsed_before = 0, 0.0
    if base is not None and job.base is not None:  # (both or neither: checked above) the base did the main training
        history.extend({**h, "phase": f"base {job.base[:8]}"} for h in base.history)
        start_epoch = cfg.epochs
    if not type(defense).trains:  # weights loaded by prepare
        start_epoch = cfg.epochs
    resumed = (load_resume_state(workdir, job, progress.log) if ranks.main else None) \
        if base is None and type(defense).trains else None
    resumed = ranks.broadcast(resumed)  # every rank resumes from rank 0's reading of the files
    if resumed is not None:
        meta, state = resumed
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        history.extend(meta["history"])
        start_epoch, elapsed_before = int(meta["epoch"]) + 1, float(meta["seconds"])
        progress.log(f"resuming {name} from epoch {start_epoch}/{cfg.epochs}")
    step = StepLoss(model, defense.loss, ctx)
    wrapped = data_parallel(step, ranks, device) if start_epoch < cfg.epochs else None
    t0 = time.perf_counter()
    try:
        with progress.task(f"train {name}", cfg.epochs) as epochs_bar:
            epochs_bar.advance(start_epoch)
            for epoch in range(start_epoch, cfg.epochs):
                ctx.epoch = epoch
                seed_everything(derive_seed(job.seed, "epoch", epoch, *ranks.stream_key))
                gen = torch.Generator().manual_seed(derive_seed(job.seed, "order", epoch))
                stats = run_epoch(step, ctx, opt, cfg, gen, progress, f"  epoch {epoch + 1}/{cfg.epochs}", ranks,
                                  wrapped, (job.seed, "epoch", epoch))
                history.append({**stats, "epoch": epoch + 1, "lr": opt.param_groups[0]["lr"], "phase": "train"})
                sched.step()
                epochs_bar.advance(1, loss=stats["loss"], acc=stats["train_acc"])
                progress.log(f"{name} epoch {epoch + 1}/{cfg.epochs}: loss {stats['loss']:.4f} "
                             f"train acc {100 * stats['train_acc']:.1f}%")
                if ranks.main:
                    save_resume_state(workdir, job, epoch, model, opt, sched, history,
                                      elapsed_before + time.perf_counter() - t0)
    finally:
        wrapped = None  # the wrapper's reducer holds the process group: free it now, not at exit
        ranks.release()
    ranks.sync_state(model)  # rank 0's BatchNorm statistics everywhere before the defense's last phase
    defense.finalize(model, ctx)
    ranks.sync_state(model)
    model.eval()
    return TrainedModel(model, defense, defense.summary(model), history, elapsed_before + time.perf_counter() - t0)


def fit(model: TwoStreamModel, loss_fn: LossFn, epochs: int, tag: str, ctx: TrainContext, cfg: TrainingConfig,
        progress: Progress, name: str, lr: float | None = None, ranks: Ranks = SINGLE) -> None:
    """Extra training epochs with another loss (a defense's fine-tuning), fresh SGD + schedule."""
    opt = make_optimizer([p for p in model.parameters() if p.requires_grad], cfg, lr)
    sched = make_scheduler(opt, cfg, epochs)
    step = StepLoss(model, loss_fn, ctx)
    wrapped: nn.Module | None = data_parallel(step, ranks, ctx.device)
    try:
        for epoch in range(epochs):
            seed_everything(derive_seed(ctx.seed, tag, "epoch", epoch, *ranks.stream_key))
            gen = torch.Generator().manual_seed(derive_seed(ctx.seed, tag, "order", epoch))
            stats = run_epoch(step, ctx, opt, cfg, gen, progress, f"  {tag} {epoch + 1}/{epochs}", ranks, wrapped,
                              (ctx.seed, tag, "epoch", epoch))
            sched.step()
            ctx.history.append({**stats, "epoch": epoch + 1, "phase": tag})
            progress.log(f"{name} {tag} {epoch + 1}/{epochs}: loss {stats['loss']:.4f}")
    finally:
        wrapped = None  # as in train_model: free the wrapper while the process group is alive
        ranks.release()
