"""Protocol -> plan: the unique models to train and the unique result cells to evaluate.

A **model job** is keyed by a content hash of everything that determines the trained weights:
the identities (:mod:`robench.identity`: name, every parameter, code version) of the dataset, the
backbones and the defense, the training settings (the training attack only for defenses that
declare ``uses_training_attack``), the seed and the training precision. Two protocols (or two rows
of one protocol) that need the same model share its id, so it is trained once.

A **cell** is one number of a table: (model, attack identity, scenario, eps, evaluation subset,
evaluation precision). It is keyed the same way, so a cell already in the results store is never
recomputed, whichever protocol asked for it first, and never reused when anything differs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from robench.errors import ProtocolError
from robench.hashing import content_hash
from robench.identity import FP32, Precision, component_identity
from robench.params import full_params
from robench.protocol.schema import (
    Component,
    DefenseEntry,
    EvaluationConfig,
    Protocol,
    ThreatConfig,
    Variant,
)
from robench.registry import ATTACKS, BACKBONES, CORRUPTIONS, DATASETS, DEFENSES
from robench.scenarios import SCENARIOS

#: bump when a change to robench's generic training code changes what a given model spec produces
#: (2: the identity rule of :mod:`robench.identity`, with code versions and precision)
MODEL_FORMAT = 2
#: bump when a change to robench's generic evaluation code changes what a given cell spec produces
CELL_FORMAT = 2


@dataclass
class ModelJob:
    """One model to train (or load from the cache).

    Attributes:
        id: content hash of :attr:`spec`.
        spec: JSON-serialisable description of everything that determines the model.
        variant: dataset id within the protocol.
        defense_ids: protocol defense ids (rows) served by this model (empty for a base model that
            only serves a derived one).
        seed: training seed.
        entry: the (first) protocol defense entry, with resolved model and training settings.
        defense: the defense this model is trained with (``entry.defense``, or the base defense of
            a derived one).
        base: id of the model this one starts from (:meth:`Defense.derives_from`), or None.
        dataset: the dataset component (registry name + parameters).
        backbones: ``{modality: Component}`` with input sizes filled in from the dataset.
        num_classes: classes of the dataset.
        threat: the threat model's units (scales training-attack radii and step sizes per modality).
        precision: the numeric precision it is trained in (part of :attr:`spec`).
    """

    id: str
    spec: dict[str, Any]
    variant: str
    defense_ids: list[str]
    seed: int
    entry: DefenseEntry
    defense: Component
    base: str | None
    dataset: Component
    backbones: dict[str, Component]
    num_classes: int
    threat: ThreatConfig = field(default_factory=ThreatConfig)
    precision: Precision = FP32

    @property
    def label(self) -> str:
        if self.defense_ids:
            return "/".join(self.defense_ids)
        return f"{self.defense.type} (base model)"


@dataclass
class Cell:
    """One evaluated number: a model under one attack, scenario and eps (or clean)."""

    id: str
    model_id: str
    variant: str
    scenario: str
    attack_id: str | None
    attack_type: str | None
    attack_params: dict[str, Any]  # constructor arguments, in input units (modalities/eps/bounds included)
    eps: float  # nominal radius as written in the protocol (0 for clean)
    seed: int
    evaluation: EvaluationConfig
    spec: dict[str, Any]
    #: the corruption of a corruption cell (registered name + parameters), else None
    corruption: Component | None = None
    #: its severity, 1-5 (0 for every other cell)
    severity: int = 0


class CellKey(NamedTuple):
    """Where a cell sits in a protocol: a row (defense id) of a dataset, under an attack, scenario and eps."""

    variant: str
    defense: str
    seed: int
    attack: str | None  # None for clean
    scenario: str
    eps: float  # nominal radius, rounded to 12 decimals (0 for clean)


class GridKey(NamedTuple):
    """Where a budget-grid cell sits: a row of a dataset, for one seed, at one (eps_R, eps_S) of a grid."""

    variant: str
    defense: str
    seed: int
    grid: str
    eps_rgb: float  # nominal, rounded to 12 decimals
    eps_skeleton: float


class CorruptionKey(NamedTuple):
    """Where a corruption cell sits: a row of a dataset, for one seed, under one corruption and severity."""

    variant: str
    defense: str
    seed: int
    corruption: str  # the corruption's id in the protocol
    severity: int


class ModelKey(NamedTuple):
    """Where a model sits in a protocol: the row (defense id) of a dataset, for one seed."""

    variant: str
    defense: str
    seed: int


@dataclass
class Plan:
    """All work a protocol needs, deduplicated."""

    protocol: Protocol
    models: dict[str, ModelJob]
    cells: dict[str, Cell]
    #: where each table entry's cell is: (variant, defense id, seed, attack id, scenario, eps) -> cell id
    index: dict[CellKey, str]
    #: which model serves each row: (variant, defense id, seed) -> model id
    model_index: dict[ModelKey, str]
    #: variant -> the dataset provider's description (classes, clip counts, ...)
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: where each budget-grid point's cell is (cells shared with the tables where the radii coincide)
    grid_index: dict[GridKey, str] = field(default_factory=dict)
    #: where each corruption cell is
    corruption_index: dict[CorruptionKey, str] = field(default_factory=dict)

    def cells_of(self, model_id: str) -> list[Cell]:
        return [c for c in self.cells.values() if c.model_id == model_id]


def _fill_input_sizes(variant: Variant, model: dict[str, Component], shapes: dict[str, tuple[int, ...]],
                      where: str) -> dict[str, Component]:
    """Complete each backbone's input-size parameters from the dataset (and check given ones agree)."""
    out = {}
    for m, comp in model.items():
        cls = BACKBONES.get(comp.type)
        params = dict(comp.params)
        if m not in shapes:
            raise ProtocolError(where, f"model.{m}", comp.type, f"modalities the dataset provides: {sorted(shapes)}")
        for name, axis in cls.input_size_params.items():
            value = shapes[m][axis]
            if name in params and params[name] != value:
                raise ProtocolError(where, f"model.{m}.{name}", params[name],
                                    f"{value} (dataset '{variant.id}' gives {m} clips of shape {shapes[m]})",
                                    "or leave it out to take it from the dataset")
            params[name] = value
        out[m] = Component(comp.type, full_params(cls, params))
    return out


def make_plan(protocol: Protocol, precision: Precision = FP32, ranks: int = 1) -> Plan:
    """Expand a validated protocol into deduplicated model jobs and cells.

    ``precision`` is the numeric precision the run trains and evaluates in (fp32 on the CPU,
    bf16 autocast and TF32 on CUDA by default): part of every model and cell id. ``ranks`` is the
    number of data-parallel processes that train (``torchrun``); above 1 it is part of the id of every
    model that trains, with ``training.batchnorm`` (stream-drawn dropout masks and random starts
    differ per rank, and per-rank BatchNorm sees only a rank's share, so the weights depend on it),
    unless ``training.sample_seeds`` is on and BatchNorm is synchronised: then the weights are those
    of one process, and so is the id. Evaluation does not depend on it.
    """
    models: dict[str, ModelJob] = {}
    cells: dict[str, Cell] = {}
    index: dict[CellKey, str] = {}
    model_index: dict[ModelKey, str] = {}
    datasets: dict[str, dict[str, Any]] = {}
    grid_index: dict[GridKey, str] = {}
    corruption_index: dict[CorruptionKey, str] = {}
    where = str(protocol.path)
    for variant in protocol.variants.values():
        provider = DATASETS.build(variant.dataset.type, **variant.dataset.params)
        datasets[variant.id] = provider.describe()
        shapes = provider.input_shapes()
        dataset_identity = component_identity(DATASETS, variant.dataset, where=where, key="dataset")
        for entry in variant.defenses.values():
            backbones = _fill_input_sizes(variant, entry.model, shapes, where)
            backbone_identity = {m: component_identity(BACKBONES, c, where=where, key=f"model.{m}")
                                 for m, c in backbones.items()}
            row = _Row(variant, entry, backbones, dataset_identity, backbone_identity, provider.num_classes, precision,
                       ranks)
            for seed in protocol.seeds:
                job = _add_job(models, row, entry.defense, seed)
                if entry.id not in job.defense_ids:
                    job.defense_ids.append(entry.id)
                model_index[ModelKey(variant.id, entry.id, seed)] = job.id
                for key, cell in _cells_for(job.id, variant, backbones, seed, precision):
                    cells.setdefault(cell.id, cell)
                    index[CellKey(variant.id, entry.id, seed, *key)] = cell.id
                for gkey, cell in _grid_cells(job.id, variant, entry.id, backbones, seed, precision):
                    cells.setdefault(cell.id, cell)
                    grid_index[GridKey(variant.id, entry.id, seed, *gkey)] = cell.id
                for ckey, cell in _corruption_cells(job.id, variant, backbones, seed, precision):
                    cells.setdefault(cell.id, cell)
                    corruption_index[CorruptionKey(variant.id, entry.id, seed, *ckey)] = cell.id
    return Plan(protocol, models, cells, index, model_index, datasets, grid_index, corruption_index)


@dataclass(frozen=True)
class _Row:
    """What the models of one protocol row (a defense entry of one dataset) share."""

    variant: Variant
    entry: DefenseEntry
    backbones: dict[str, Component]
    dataset_identity: dict[str, Any]
    backbone_identity: dict[str, dict[str, Any]]
    num_classes: int
    precision: Precision
    ranks: int = 1


def _add_job(models: dict[str, ModelJob], row: _Row, defense: Component, seed: int) -> ModelJob:
    """The job training ``defense`` for ``row`` (after, first, the job of the model it derives from)."""
    cls = DEFENSES.get(defense.type)
    derived = DEFENSES.build(defense.type, **defense.params).derives_from()
    base = _add_job(models, row, Component(derived[0], dict(derived[1])), seed) if derived else None
    cfg = row.entry.training
    training = cfg.identity()
    if cls.uses_training_attack:
        harness = ATTACKS.get(cfg.attack.type).harness_params
        attack = Component(cfg.attack.type, {k: v for k, v in cfg.attack.params.items() if k not in harness})
        training["attack"] = {**component_identity(ATTACKS, attack), "eps": cfg.attack_eps}
    if row.ranks > 1 and cls.trains and not (cfg.sample_seeds and cfg.batchnorm == "sync"):
        # stream-drawn dropout and random starts, or per-rank BatchNorm: the weights depend on the ranks
        training["data_parallel"] = {"ranks": row.ranks, "batchnorm": cfg.batchnorm}
    spec: dict[str, Any] = {
        "format": MODEL_FORMAT,
        "dataset": row.dataset_identity,
        "num_classes": row.num_classes,
        "model": row.backbone_identity,
        "training": training,
        "defense": component_identity(DEFENSES, defense),
        "seed": seed,
        "precision": row.precision.identity(),
    }
    threat = row.variant.threat
    if cls.uses_training_attack:
        spec["threat"] = {"scale": {m: threat.scale[m] for m in row.backbones},
                          "bounds": {m: threat.bounds[m] for m in row.backbones}}
    if base is not None:
        spec["base"] = base.id
    mid = content_hash(spec)
    if mid not in models:
        models[mid] = ModelJob(mid, spec, row.variant.id, [], seed, row.entry, defense, base.id if base else None,
                               row.variant.dataset, row.backbones, row.num_classes, threat, row.precision)
    return models[mid]


def _evaluation_specs(ev: EvaluationConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """The evaluation part of a clean cell's identity, and of an attacked cell's."""
    ev_spec: dict[str, Any] = {"split": ev.split, "max_samples": ev.max_samples, "seed": ev.seed}
    # BPDA changes only attacks' gradients: part of attacked cells' ids when on (and only then, so the ids of
    # exact-gradient cells stay as they were), never of clean cells'
    return ev_spec, ({**ev_spec, "bpda": ev.bpda} if ev.bpda != "off" else ev_spec)


def _clean_cell(model_id: str, variant: Variant, seed: int, precision: Precision) -> Cell:
    ev_spec, _ = _evaluation_specs(variant.evaluation)
    spec = {"format": CELL_FORMAT, "model": model_id, "scenario": "clean", "attack": None,
            "evaluation": ev_spec, "precision": precision.identity()}
    return Cell(content_hash(spec), model_id, variant.id, "clean", None, None, {}, 0.0, seed, variant.evaluation, spec)


def _attacked_cell(model_id: str, variant: Variant, aid: str, scenario: str, eps: float | dict[str, float],
                   seed: int, precision: Precision) -> Cell:
    """The cell of attack ``aid`` on ``scenario``'s modalities at nominal ``eps`` (one radius for every attacked
    modality, or one per modality)."""
    entry = variant.attacks[aid]
    attacked = SCENARIOS[scenario]
    nominal = eps if isinstance(eps, dict) else dict.fromkeys(attacked, eps)
    params = variant.threat.attack_kwargs(entry.attack, attacked, eps)
    _, attacked_ev_spec = _evaluation_specs(variant.evaluation)
    spec = {"format": CELL_FORMAT, "model": model_id, "scenario": scenario,
            "attack": component_identity(ATTACKS, Component(entry.attack.type, params)),
            "evaluation": attacked_ev_spec, "precision": precision.identity()}
    return Cell(content_hash(spec), model_id, variant.id, scenario, aid, entry.attack.type, params,
                max(nominal.values()), seed, variant.evaluation, spec)


def _cells_for(model_id: str, variant: Variant, backbones: dict[str, Component], seed: int, precision: Precision
               ) -> Iterable[tuple[tuple[str | None, str, float], Cell]]:
    for scenario in variant.scenarios:
        attacked = SCENARIOS[scenario]
        if any(m not in backbones for m in attacked):
            continue  # e.g. an RGB attack on a skeleton-only model
        if not attacked:
            yield (None, "clean", 0.0), _clean_cell(model_id, variant, seed, precision)
            continue
        for aid, entry in variant.attacks.items():
            for eps in entry.eps:
                yield (aid, scenario, round(eps, 12)), _attacked_cell(model_id, variant, aid, scenario, eps, seed,
                                                                      precision)


def _grid_cells(model_id: str, variant: Variant, defense: str, backbones: dict[str, Component], seed: int,
                precision: Precision) -> Iterable[tuple[tuple[str, float, float], Cell]]:
    """The cells of every budget grid that sweeps row ``defense``: at (eps_R, eps_S) the clean cell when both are
    0, the XR or XS cell when one is, else the XRS cell with a radius per modality (the XRS cell of the tables
    where the two are equal)."""
    if not all(m in backbones for m in SCENARIOS["RS"]):
        return  # a unimodal model has no budget pairs
    for gid, grid in variant.budgets.items():
        if grid.defenses and defense not in grid.defenses:
            continue
        for r, s in grid.pairs():
            if r == 0 and s == 0:
                cell = _clean_cell(model_id, variant, seed, precision)
            elif s == 0:
                cell = _attacked_cell(model_id, variant, grid.attack, "R", r, seed, precision)
            elif r == 0:
                cell = _attacked_cell(model_id, variant, grid.attack, "S", s, seed, precision)
            else:
                cell = _attacked_cell(model_id, variant, grid.attack, "RS", {"rgb": r, "skeleton": s}, seed, precision)
            yield (gid, round(r, 12), round(s, 12)), cell


def _corruption_cells(model_id: str, variant: Variant, backbones: dict[str, Component], seed: int,
                      precision: Precision) -> Iterable[tuple[tuple[str, int], Cell]]:
    """The cells of the corruption suite: the clean evaluation with one corruption at one severity (a corruption
    of an input the model does not take is left out; one with a single level is evaluated once)."""
    suite = variant.corruptions
    if suite is None:
        return
    ev_spec, _ = _evaluation_specs(variant.evaluation)
    for cid, entry in suite.entries.items():
        cls = CORRUPTIONS.get(entry.corruption.type)
        if cls.modality not in backbones:
            continue
        identity = component_identity(CORRUPTIONS, entry.corruption)
        for severity in suite.severities if cls.graded() else suite.severities[:1]:
            spec = {"format": CELL_FORMAT, "model": model_id, "scenario": "corrupted", "attack": None,
                    "corruption": {**identity, "severity": severity}, "evaluation": ev_spec,
                    "precision": precision.identity()}
            yield (cid, severity), Cell(content_hash(spec), model_id, variant.id, "corrupted", None, None, {}, 0.0,
                                        seed, variant.evaluation, spec, entry.corruption, severity)
