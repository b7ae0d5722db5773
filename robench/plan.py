"""Protocol -> plan: the unique models to train and the unique result cells to evaluate.

A **model job** is keyed by a content hash of everything that determines the trained weights:
dataset and its parameters, backbones and their parameters, the training settings (the training
attack only for defenses that use one), the defense and its parameters, and the seed. Two
protocols (or two rows of one protocol) that need the same model share its id, so it is trained once.

A **cell** is one number of a table: (model, attack with all its parameters, scenario, eps,
evaluation subset). It is keyed the same way, so a cell already in the results store is never
recomputed, whichever protocol asked for it first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from robench.errors import ProtocolError
from robench.hashing import content_hash
from robench.params import full_params
from robench.protocol.schema import SCENARIOS, Component, DefenseEntry, EvaluationConfig, Protocol, ThreatConfig, Variant
from robench.registry import ATTACKS, BACKBONES, DATASETS, DEFENSES

#: bump when a change to training code changes what a given model spec produces
MODEL_FORMAT = 1
#: bump when a change to evaluation code changes what a given cell spec produces
CELL_FORMAT = 1


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


@dataclass
class Plan:
    """All work a protocol needs, deduplicated."""

    protocol: Protocol
    models: dict[str, ModelJob]
    cells: dict[str, Cell]
    #: (variant, defense id, seed, attack id or None, scenario, eps) -> cell id
    index: dict[tuple[str, str, int, str | None, str, float], str]
    #: (variant, defense id, seed) -> model id
    model_index: dict[tuple[str, str, int], str]
    #: variant -> the dataset provider's description (classes, clip counts, ...)
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)

    def cells_of(self, model_id: str) -> list[Cell]:
        return [c for c in self.cells.values() if c.model_id == model_id]

    def cell_id(self, variant: str, defense: str, seed: int, attack: str | None, scenario: str,
                eps: float) -> str | None:
        if scenario == "clean":
            attack, eps = None, 0.0
        return self.index.get((variant, defense, seed, attack, scenario, round(eps, 12)))


def _fill_input_sizes(variant: Variant, model: dict[str, Component], shapes: dict[str, tuple[int, ...]],
                      where: str) -> dict[str, Component]:
    """Complete each backbone's input-size parameters from the dataset (and check given ones agree)."""
    out = {}
    for m, comp in model.items():
        cls = BACKBONES.get(comp.type)
        derive = getattr(cls, "input_size_params", {})
        params = dict(comp.params)
        if m not in shapes:
            raise ProtocolError(where, f"model.{m}", comp.type, f"modalities the dataset provides: {sorted(shapes)}")
        for name, index in derive.items():
            value = shapes[m][index]
            if name in params and params[name] != value:
                raise ProtocolError(where, f"model.{m}.{name}", params[name],
                                    f"{value} (dataset '{variant.id}' gives {m} clips of shape {shapes[m]})",
                                    "or leave it out to take it from the dataset")
            params[name] = value
        out[m] = Component(comp.type, full_params(cls, params))
    return out


def make_plan(protocol: Protocol) -> Plan:
    """Expand a validated protocol into deduplicated model jobs and cells."""
    models: dict[str, ModelJob] = {}
    cells: dict[str, Cell] = {}
    index: dict[tuple[str, str, int, str | None, str, float], str] = {}
    model_index: dict[tuple[str, str, int], str] = {}
    datasets: dict[str, dict[str, Any]] = {}
    where = str(protocol.path)
    for variant in protocol.variants.values():
        provider = DATASETS.build(variant.dataset.type, **variant.dataset.params)
        datasets[variant.id] = provider.describe()
        shapes = provider.input_shapes()
        ds_cls = DATASETS.get(variant.dataset.type)
        where_params = ("cache_dir", *getattr(ds_cls, "location_params", ()))  # where the data is, not what it is
        dataset_spec = {"name": variant.dataset.type, "params": full_params(ds_cls, variant.dataset.params, where_params)}
        for entry in variant.defenses.values():
            backbones = _fill_input_sizes(variant, entry.model, shapes, where)
            for seed in protocol.seeds:

                def add_job(defense: Component) -> ModelJob:
                    """The job training ``defense`` (and, first, the job of the model it derives from)."""
                    built = DEFENSES.build(defense.type, **defense.params)
                    derived = built.derives_from()
                    base = add_job(Component(derived[0], dict(derived[1]))) if derived else None
                    uses_attack = bool(getattr(built, "uses_training_attack", False))
                    spec = {
                        "format": MODEL_FORMAT,
                        "dataset": dataset_spec,
                        "num_classes": provider.num_classes,
                        "model": {m: {"backbone": c.type, "params": _identity_params(c, f"model.{m}", where)}
                                  for m, c in backbones.items()},
                        "training": entry.training.identity(with_attack=uses_attack),
                        "defense": {"type": defense.type, "params": built.describe()},
                        "seed": seed,
                    }
                    if uses_attack:
                        spec["threat"] = {"scale": {m: variant.threat.scale[m] for m in backbones},
                                          "bounds": {m: variant.threat.bounds[m] for m in backbones}}
                    if base is not None:
                        spec["base"] = base.id
                    mid = content_hash(spec)
                    if mid not in models:
                        models[mid] = ModelJob(mid, spec, variant.id, [], seed, entry, defense,
                                               base.id if base else None, variant.dataset, backbones,
                                               provider.num_classes, variant.threat)
                    return models[mid]

                job = add_job(entry.defense)
                if entry.id not in job.defense_ids:
                    job.defense_ids.append(entry.id)
                model_index[(variant.id, entry.id, seed)] = job.id
                for key, cell in _cells_for(job.id, variant, backbones, seed):
                    cells.setdefault(cell.id, cell)
                    index[(variant.id, entry.id, seed, *key)] = cell.id
    return Plan(protocol, models, cells, index, model_index, datasets)


@lru_cache(maxsize=64)
def _file_digest(path: str, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _identity_params(comp: Component, key: str, where: str) -> dict[str, Any]:
    """A component's parameters as they determine a model: files (e.g. a checkpoint) by content, not by path."""
    params = dict(comp.params)
    for name in getattr(BACKBONES.get(comp.type), "file_params", ()):
        value = params.get(name)
        if value is None:
            params.pop(name, None)  # no file: the id stays what it was before the parameter existed
        elif value:
            path = Path(str(value)).expanduser()
            if not path.is_file():
                raise ProtocolError(where, f"{key}.{name}", str(value), "an existing file")
            st = path.stat()
            params[name] = _file_digest(str(path.resolve()), st.st_mtime_ns, st.st_size)
    return params


def _cells_for(model_id: str, variant: Variant, backbones: dict[str, Component], seed: int
               ) -> Iterable[tuple[tuple[str | None, str, float], Cell]]:
    ev = variant.evaluation
    ev_spec = {"split": ev.split, "max_samples": ev.max_samples, "seed": ev.seed}
    for scenario in variant.scenarios:
        attacked = SCENARIOS[scenario]
        if any(m not in backbones for m in attacked):
            continue  # e.g. an RGB attack on a skeleton-only model
        if not attacked:
            spec = {"format": CELL_FORMAT, "model": model_id, "scenario": "clean", "attack": None, "evaluation": ev_spec}
            yield (None, "clean", 0.0), Cell(content_hash(spec), model_id, variant.id, "clean", None, None, {}, 0.0,
                                             seed, ev, spec)
            continue
        for aid, entry in variant.attacks.items():
            for eps in entry.eps:
                params = variant.threat.attack_kwargs(entry.attack, attacked, eps)
                described = ATTACKS.build(entry.attack.type, **params).describe()
                spec = {"format": CELL_FORMAT, "model": model_id, "scenario": scenario,
                        "attack": {"type": entry.attack.type, "params": described}, "evaluation": ev_spec}
                yield (aid, scenario, round(eps, 12)), Cell(
                    content_hash(spec), model_id, variant.id, scenario, aid, entry.attack.type, params, eps, seed, ev, spec)
