"""Running a protocol: plan -> train (or load) each model -> evaluate each missing cell -> store.

Work is skipped wherever its result exists: cells already in the store are not recomputed, models
already in the cache are loaded rather than trained, and a model whose cells are all stored is not
even loaded. Each cell is written the moment it finishes, so a run killed at any point re-runs to
the same results without duplicates.

Several runs of one plan (processes on one host sharing the store and the model cache) split the
work: a model another run is training is skipped and come back to, and each cell is claimed in the
store before it is computed (:meth:`ResultsStore.claim`), so every cell is computed once. A claim of
a run that was killed is taken over by the next run.

Under ``torchrun`` the ranks of one launch act as one worker (:class:`~robench.distributed.Ranks`):
rank 0 reads the store, takes the model locks and the claims and broadcasts its decisions; every rank
trains each model together (data parallel) and evaluates its share of each cell; only rank 0 writes
the model cache and the store, each cell once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from robench import __version__
from robench.cluster.shard import Shard
from robench.data.base import DatasetProvider
from robench.distributed import SINGLE, Ranks
from robench.errors import DataError, RobenchError
from robench.evaluation import CellResult, evaluate_cell
from robench.interrupt import checkpoint
from robench.plan import Cell, ModelJob, Plan, make_plan
from robench.progress import Progress
from robench.protocol.schema import Protocol
from robench.registry import DATASETS
from robench.run_layout import RunLayout
from robench.runtime import RuntimeOptions, configure, device_name, git_commit
from robench.store import CellRow, ResultsStore, claims, worker_id
from robench.train.cache import ModelCache
from robench.train.trainer import TrainedModel, build_model, check_data_parallel, train_model


@dataclass
class PlanStatus:
    """What a run would do: per model, whether it is cached and which of its cells are stored."""

    plan: Plan
    stored: set[str]
    cached: set[str]
    #: cells left to other tasks of a sharded run (``--shard``): never computed here
    outside: set[str] = field(default_factory=set)

    def _open(self, cell: Cell) -> bool:
        """Still to compute here: neither stored nor left to another task."""
        return cell.id not in self.stored and cell.id not in self.outside

    def pending_cells(self, model_id: str) -> list[Cell]:
        return [c for c in self.plan.cells_of(model_id) if self._open(c)]

    @property
    def needed(self) -> list[ModelJob]:
        """Models the run must have: those with cells to run, and the uncached bases they derive from."""
        need: dict[str, ModelJob] = {}
        for job in self.plan.models.values():
            j: ModelJob | None = job if self.pending_cells(job.id) else None
            while j is not None and j.id not in need:
                need[j.id] = j
                j = self.plan.models[j.base] if j.base and j.id not in self.cached else None
        return [j for j in self.plan.models.values() if j.id in need]  # plan order: bases first

    @property
    def to_evaluate(self) -> list[Cell]:
        return [c for c in self.plan.cells.values() if self._open(c)]


@dataclass
class RunSummary:
    """What a run did."""

    protocol: str
    models_trained: list[str] = field(default_factory=list)
    models_loaded: list[str] = field(default_factory=list)
    cells_written: int = 0
    cells_skipped: int = 0
    seconds: float = 0.0
    #: cells of the plan still not stored at the end: other workers were computing them
    cells_left: int = 0


def plan_status(plan: Plan, store: ResultsStore | None, cache: ModelCache, ranks: Ranks = SINGLE) -> PlanStatus:
    """What is stored and cached for ``plan`` (as rank 0 reads it, on every rank)."""
    found = (store.existing(plan.cells), {m for m in plan.models if cache.has(m)}) \
        if ranks.main and store is not None else None
    stored, cached = ranks.broadcast(found) or (set(), set())
    return PlanStatus(plan, stored, cached)


class Runner:
    """Executes plans against one results store and one model cache on one device."""

    def __init__(self, store: ResultsStore | None, cache: ModelCache, device: torch.device, progress: Progress,
                 data_dir: Path, runtime: RuntimeOptions | None = None, ranks: Ranks = SINGLE,
                 provided: Mapping[str, TrainedModel] | None = None) -> None:
        """``store`` is None on every rank but rank 0 (the only one that reads or writes it). ``provided``
        maps model ids to models the caller supplies (a model object handed to ``robench.evaluate``): they
        are evaluated as they are, never trained, cached or locked."""
        if store is None and ranks.main:
            raise RobenchError("the runner of rank 0 (or of a single process) needs a results store")
        self._store, self.cache, self.device, self.progress = store, cache, device, progress
        self.provided = dict(provided or {})
        #: the data-parallel processes this runner is one of (``torchrun``); one process by default
        self.ranks = ranks
        self.data_dir = data_dir
        self.runtime = runtime or RuntimeOptions.for_device(device)
        self._providers: dict[str, DatasetProvider] = {}
        #: this process as a worker (``host:pid``): the owner of its claims on cells
        self.worker = worker_id()
        configure(device, self.runtime.tf32)

    @property
    def store(self) -> ResultsStore:
        """The results store; only rank 0 has one (the other ranks never open it: two processes creating one
        SQLite file at once would find it locked)."""
        if self._store is None:
            raise RobenchError(f"rank {self.ranks.rank} of {self.ranks.world} has no results store: only rank 0 "
                               "reads and writes it")
        return self._store

    def provider(self, plan: Plan, variant: str) -> DatasetProvider:
        if variant not in self._providers:
            ds = plan.protocol.variants[variant].dataset
            self._providers[variant] = DATASETS.build(ds.type, cache_dir=self.data_dir, **ds.params)
        return self._providers[variant]

    def run(self, protocol: Protocol, overrides: list[str] | tuple[str, ...] = (), shard: Shard | None = None,
            train_only: bool = False) -> RunSummary:
        """Run ``protocol``: all of it, or one task's part (``shard``); ``train_only`` trains the models
        that have cells to compute (this task's model families) and evaluates nothing."""
        plan = make_plan(protocol, self.runtime.precision, self.ranks.world)
        status = plan_status(plan, self._store, self.cache, self.ranks)
        if shard is not None and not train_only:
            status.outside = set(plan.cells) - shard.cells(plan)
        summary = RunSummary(protocol.name, cells_skipped=len(status.stored))
        t0 = time.perf_counter()
        dev = device_name(self.device)
        problems = []
        for variant in [v for v in protocol.variants if v in {j.variant for j in status.needed}]:
            try:
                self.provider(plan, variant).check_available()  # fail before any work
            except DataError as exc:
                problems.append(str(exc))
        if problems:
            profiles = protocol.data.get("profiles") or {}
            hint = (f"\nTo run this protocol on the built-in synthetic data instead: robench run {protocol.path} "
                    f"--profile {next(iter(profiles))}" if profiles else "")
            raise DataError(f"protocol '{protocol.name}' cannot start:\n  " + "\n  ".join(problems) + hint)
        if self.ranks.parallel:  # refuse a batch or BatchNorm setting torchrun cannot honour before any work
            for job in status.needed:
                if job.id not in status.cached and job.id not in self.provided:
                    size = len(self.provider(plan, job.variant).split("train"))
                    check_data_parallel(job, build_model(job)[0], size, self.device, self.ranks)
        run_id = self.store.start_run(protocol.name, str(protocol.path), list(overrides), protocol.data,
                                      RunLayout.from_plan(plan).to_json(), __version__, git_commit(), dev) \
            if self.ranks.main else -1
        outcome = "failed"
        try:
            if train_only:
                mine = shard.models(plan) if shard is not None else set(plan.models)
                for job in status.needed:
                    if job.id in mine and job.id not in status.cached:
                        self._model(plan, job, summary)
            else:
                self._evaluate(plan, status, summary, dev)
            outcome = "complete"
        except KeyboardInterrupt:
            outcome = "interrupted"
            raise
        finally:
            if self.ranks.main:
                self.store.finish_run(run_id, outcome)
        summary.seconds = time.perf_counter() - t0
        return summary

    def _evaluate(self, plan: Plan, status: PlanStatus, summary: RunSummary, dev: str) -> None:
        """Compute every cell of ``status`` still to evaluate (training or loading models as needed)."""
        todo = status.to_evaluate
        with self.progress.task(f"{plan.protocol.name}: cells", len(todo), transient=False) as cells_bar:
            # first pass: models no other worker is training; second: wait for those that were busy
            deferred = self._pass(plan, [j for j in plan.models.values() if status.pending_cells(j.id)],
                                  status, summary, dev, cells_bar, wait=False)
            self._pass(plan, deferred, status, summary, dev, cells_bar, wait=True)
        todo_ids = {c.id for c in todo}
        summary.cells_left = self.ranks.broadcast(len(todo_ids - self.store.existing(todo_ids))
                                                  if self.ranks.main else 0)

    def _pass(self, plan: Plan, jobs: list[ModelJob], status: PlanStatus, summary: RunSummary, dev: str,
              cells_bar: Any, wait: bool) -> list[ModelJob]:
        """Train or load each job's model and evaluate the cells of it that no other worker holds.

        With ``wait=False`` a model that another process is training right now is skipped and returned,
        so this worker takes other work meanwhile; with ``wait=True`` it waits for that model.
        """
        deferred = []
        for job in jobs:
            cells = status.pending_cells(job.id)
            # other workers may have written some
            stored_now = self.ranks.broadcast(self.store.existing(c.id for c in cells) if self.ranks.main else set())
            pending = [c for c in cells if c.id not in stored_now]
            if not pending:
                continue
            trained = self._model(plan, job, summary, wait)
            if trained is None:
                deferred.append(job)
                continue
            provider = self.provider(plan, job.variant)
            main = self.ranks.main
            for cell in pending:
                checkpoint()  # a safe point: between cells
                if not self.ranks.broadcast(claims.claim(self.store, cell.id, self.worker) if main else False):
                    continue  # stored meanwhile, or another live worker is computing it
                try:
                    split = provider.split(cell.evaluation.split)
                    label = _cell_label(plan, job, cell)
                    result = evaluate_cell(trained.model, split, cell, self.device, self.progress, label, self.runtime,
                                           self.ranks)
                    if main:
                        self.store.write_cell(_row(plan.protocol, job, cell, result, dev))
                finally:
                    if main:
                        claims.release(self.store, cell.id, self.worker)
                summary.cells_written += 1
                cells_bar.advance(1)
                self.progress.log(f"{label}: {100 * result.accuracy:.2f}% of {result.n} ({result.seconds:.1f}s)")
            del trained
        return deferred

    @contextmanager
    def _lock(self, model_id: str, wait: bool) -> Iterator[bool]:
        """The model's lock, taken by rank 0 for every rank; yields whether it is held.

        Two locks: the store's (across machines, when the store is PostgreSQL) and the model cache's
        file lock (the processes of one host).
        """
        if not self.ranks.main:
            yield self.ranks.broadcast(False)
            return
        with claims.lock(self.store, f"model {model_id}", wait) as everywhere:
            if not everywhere:
                yield self.ranks.broadcast(False)
                return
            with self.cache.lock(model_id, wait) as held:
                yield self.ranks.broadcast(held)

    def model_of(self, plan: Plan, job: ModelJob, summary: RunSummary | None = None) -> TrainedModel:
        """``job``'s model: provided by the caller, loaded from the cache, or trained now (and cached); waits
        while another process trains it."""
        trained = self._model(plan, job, summary or RunSummary(plan.protocol.name), wait=True)
        if trained is None:  # (waiting, the lock is always taken)
            raise RobenchError(f"model {job.id[:12]}: its lock could not be taken")
        return trained

    def _model(self, plan: Plan, job: ModelJob, summary: RunSummary, wait: bool = True) -> TrainedModel | None:
        """Load ``job``'s model from the cache, or train it (once, under a per-model lock); None if another
        process holds the lock and ``wait`` is False."""
        if job.id in self.provided:
            return self.provided[job.id]
        main = self.ranks.main
        # a finished model needs no lock (its files are written atomically, model.json last): a cache on
        # read-only media serves its models
        if self.ranks.broadcast(self.cache.has(job.id) if main else False):
            return self._load(job, summary)
        with self._lock(job.id, wait) as held:
            if not held:
                return None
            if self.ranks.broadcast(self.cache.has(job.id) if main else False):  # trained while we waited
                return self._load(job, summary)
            base = self._model(plan, plan.models[job.base], summary) if job.base else None  # waits for it
            provider = self.provider(plan, job.variant)
            train_set = provider.split("train")
            trained = train_model(job, train_set, self.device, self.progress, self.cache.dir(job.id),
                                  name=f"{job.label} seed {job.seed} [{job.id[:8]}]", base=base, runtime=self.runtime,
                                  ranks=self.ranks)
            if main:
                self.cache.save(job, trained, device_name(self.device))
                self.store.write_model(job.id, job.spec, trained.summary, trained.history, trained.train_seconds,
                                       device_name(self.device))
            summary.models_trained.append(job.id)
            return trained


    def _load(self, job: ModelJob, summary: RunSummary) -> TrainedModel:
        """``job``'s model from the cache (recorded in the store if the store does not know it yet)."""
        trained = self.cache.load(job, self.device, self.runtime)
        summary.models_loaded.append(job.id)
        if self.ranks.main and job.id not in self.store.models():
            self.store.write_model(job.id, job.spec, trained.summary, trained.history, trained.train_seconds,
                                   device_name(self.device))
        return trained


def _cell_label(plan: Plan, job: ModelJob, cell: Cell) -> str:
    v = plan.protocol.variants[job.variant]
    defense = "/".join(v.defenses[d].label for d in job.defense_ids)
    if cell.corruption is not None:
        return f"{defense} | {cell.corruption.type} severity {cell.severity}"
    if cell.attack_id is None:
        return f"{defense} | clean"
    radii = "/".join(f"{e * 255:.3g}" for e in dict.fromkeys(
        cell.attack_params["eps"][m] / v.threat.scale[m] for m in cell.attack_params["eps"]))
    return f"{defense} | {v.attacks[cell.attack_id].label} {cell.scenario} eps {radii}/255"


def _row(protocol: Protocol, job: ModelJob, cell: Cell, result: CellResult, device: str) -> CellRow:
    eps_by = cell.attack_params.get("eps", {}) if cell.attack_type else {}
    return CellRow(
        cell_id=cell.id, model_id=job.id, protocol=protocol.name, dataset=job.dataset.type,
        dataset_params=job.spec["dataset"]["params"], defense=job.defense.type,
        defense_params=job.spec["defense"]["params"], attack=cell.attack_type,
        attack_params=cell.spec["attack"]["params"] if cell.attack_type else None, scenario=cell.scenario,
        eps=cell.eps, eps_rgb=eps_by.get("rgb"), eps_skeleton=eps_by.get("skeleton"), n=result.n,
        correct=int(result.correct.sum()), per_sample=result.correct, seed=cell.seed, duration_s=result.seconds,
        robench_version=__version__, git_commit=git_commit(), torch_version=torch.__version__, device=device,
        spec=cell.spec, details=result.details.to_json() if result.details is not None else None,
    )
