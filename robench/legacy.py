"""Adopting results recorded under identity format 1, so that existing caches and stores keep working.

Before :mod:`robench.identity`, model and cell ids (format 1) left out the components' code
versions and the numeric precision, and read attack parameters from hand-written ``describe()``
methods. A format-1 result is exactly the result its format-2 id names when

* every component it involves is a robench built-in still at ``version`` 1 (the code that
  format 1 ran), or at a later version listed in :data:`SAME_AS_FORMAT1` with the parameters that
  version added set to the values that run format 1's code; no plugin and no installed package;
* it was computed in fp32: on the CPU, where format 1 never enabled bf16 autocast or TF32 (a
  CUDA result may have been bf16, so it is never adopted);
* the plan asks for fp32.

For such plans, :func:`adopt_legacy` finds format-1 cells in the store and format-1 models in the
cache, and records them once under their format-2 ids (the old rows and folders are left as they
were). The run says how many it adopted; the next run finds them under the new ids and says
nothing. Everything else is computed again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from robench.hashing import content_hash
from robench.identity import FP32, file_digest
from robench.models.weights import weights_path
from robench.params import full_params
from robench.plan import Cell, ModelJob, Plan
from robench.protocol.check import Component
from robench.registry import ATTACKS, BACKBONES, DATASETS, DEFENSES, Registry
from robench.store import CellRow, ResultsStore, unpack_bits
from robench.train.cache import ModelCache

LEGACY_FORMAT = 1
#: the attacks format 1 knew (None: clean cells)
FORMAT1_ATTACKS = (None, "fgsm", "pgd", "cw")

#: built-ins that gained parameters after format 1, where those parameters at these values run exactly the
#: code format 1 ran: ``{(kind, name): (version, {parameter: value})}``. Format-1 ids never contained them.
SAME_AS_FORMAT1: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {
    ("dataset", "synthetic"): (2, {"scenes": 0}),
    ("backbone", "i3d"): (2, {"stem_stride": 2, "stem_temporal_stride": 2, "stem_kernel": 7}),
}


@dataclass
class Adopted:
    """What :func:`adopt_legacy` recorded under new ids."""

    models: int = 0
    cells: int = 0

    def message(self) -> str:
        return (f"adopted {self.models} cached model(s) and {self.cells} stored cell(s) recorded by an older robench "
                "(identity format 1: same settings, built-in code at version 1, computed in fp32 on the CPU); they "
                "are now kept under their new ids (see docs/concepts.md, Identity and caching)")


def _runs_format1_code(registry: Registry[Any], name: str, given: dict[str, Any] | None = None) -> bool:
    """Whether the built-in ``name`` with the protocol's parameters ``given`` runs the code format 1 ran."""
    if registry.entry(name).source != "builtin":
        return False
    version = registry.get(name).version
    if version == 1:
        return True
    same = SAME_AS_FORMAT1.get((registry.kind, name))
    if same is None or version != same[0] or given is None:
        return False
    params = full_params(registry.get(name), given)
    return all(params.get(k) == v for k, v in same[1].items())


def _format1_params(kind: str, name: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` without those added after format 1 (see :data:`SAME_AS_FORMAT1`)."""
    added = SAME_AS_FORMAT1.get((kind, name), (0, {}))[1]
    return {k: v for k, v in params.items() if k not in added}


def _eligible(plan: Plan) -> bool:
    if any(job.precision != FP32 for job in plan.models.values()):
        return False
    for job in plan.models.values():
        if not _runs_format1_code(DATASETS, job.dataset.type, job.dataset.params):
            return False
        if not all(_runs_format1_code(BACKBONES, c.type, c.params) for c in job.backbones.values()):
            return False
        names = [(DEFENSES, job.defense.type)]
        if DEFENSES.get(job.defense.type).uses_training_attack:
            names.append((ATTACKS, job.entry.training.attack.type))
        if not all(_runs_format1_code(r, n) for r, n in names):
            return False
    return all(_runs_format1_code(ATTACKS, c.attack_type) for c in plan.cells.values() if c.attack_type)


def _legacy_backbone_params(comp: Component) -> dict[str, Any]:
    params = _format1_params("backbone", comp.type, dict(comp.params))
    for name in BACKBONES.get(comp.type).file_params:
        value = params.get(name)
        if value is None:
            params.pop(name, None)
        elif value:
            params[name] = file_digest(weights_path(str(value)))
    return params


def _legacy_model_id(job: ModelJob, base_id: str | None) -> str:
    ds_cls = DATASETS.get(job.dataset.type)
    training = job.entry.training
    uses_attack = DEFENSES.get(job.defense.type).uses_training_attack
    train_spec = training.identity()
    if uses_attack:
        train_spec["attack"] = {"type": training.attack.type, "params": training.attack.params,
                                "eps": training.attack_eps}
    defense = DEFENSES.build(job.defense.type, **job.defense.params)
    spec: dict[str, Any] = {
        "format": LEGACY_FORMAT,
        "dataset": {"name": job.dataset.type,
                    "params": _format1_params("dataset", job.dataset.type,
                                              full_params(ds_cls, job.dataset.params, ds_cls.location_params))},
        "num_classes": job.num_classes,
        "model": {m: {"backbone": c.type, "params": _legacy_backbone_params(c)} for m, c in job.backbones.items()},
        "training": train_spec,
        "defense": {"type": job.defense.type, "params": dataclasses.asdict(defense)},
        "seed": job.seed,
    }
    if uses_attack:
        spec["threat"] = {"scale": {m: job.threat.scale[m] for m in job.backbones},
                          "bounds": {m: job.threat.bounds[m] for m in job.backbones}}
    if base_id is not None:
        spec["base"] = base_id
    return content_hash(spec)


def _legacy_attack_params(cell: Cell) -> dict[str, Any]:
    """What format 1's hand-written ``describe()`` of fgsm, pgd and cw returned."""
    p = full_params(ATTACKS.get(str(cell.attack_type)), cell.attack_params)
    eps = dict(p["eps"])
    out: dict[str, Any] = {"modalities": list(p["modalities"]), "eps": eps,
           "bounds": {m: list(b) if b is not None else None for m, b in p["bounds"].items() if m in eps}}
    if cell.attack_type == "fgsm":
        out.update(step_size=eps, steps=1, random_start=False, restarts=1)
    else:
        step = p["step_size"]
        out.update(step_size=dict(step) if isinstance(step, dict) else dict.fromkeys(eps, float(step)),
                   steps=p["steps"], random_start=p["random_start"], restarts=p["restarts"])
    out.update(loss="cw" if cell.attack_type == "cw" else p["loss"], early_stop=p["early_stop"])
    if cell.attack_type == "cw":
        out["kappa"] = float(p["kappa"])
    return out


def legacy_ids(plan: Plan) -> tuple[dict[str, str], dict[str, str]]:
    """``({new model id: format-1 id}, {new cell id: format-1 id})`` for an eligible plan, else empty maps."""
    if not _eligible(plan):
        return {}, {}
    models: dict[str, str] = {}
    for job in plan.models.values():  # plan order: bases first
        models[job.id] = _legacy_model_id(job, models[job.base] if job.base else None)
    cells: dict[str, str] = {}
    for cell in plan.cells.values():
        if cell.attack_type not in FORMAT1_ATTACKS:
            continue  # an attack format 1 did not have: nothing of it can be stored under a format-1 id
        ev = cell.spec["evaluation"]
        attack = None if cell.attack_type is None else {"type": cell.attack_type, "params": _legacy_attack_params(cell)}
        spec = {"format": LEGACY_FORMAT, "model": models[cell.model_id], "scenario": cell.scenario, "attack": attack,
                "evaluation": ev}
        cells[cell.id] = content_hash(spec)
    return models, cells


def _adopt_model(cache: ModelCache, job: ModelJob, old_id: str) -> bool:
    old = cache.dir(old_id) / "model.pt"
    if cache.has(job.id) or not old.is_file():
        return False
    try:  # format 1 stored torch.__version__, a str subclass that weights_only must be told about
        with torch.serialization.safe_globals([torch.torch_version.TorchVersion]):
            payload = torch.load(old, map_location="cpu", weights_only=True)
    except Exception:
        return False
    if not isinstance(payload, dict) or payload.get("format") != LEGACY_FORMAT or payload.get("model_id") != old_id \
            or not str(payload.get("device", "")).startswith("cpu"):
        return False
    record = {"summary": payload.get("summary", {}), "history": payload.get("history", []),
              **{k: payload.get(k) for k in ("train_seconds", "robench_version", "torch_version", "device")}}
    cache.write(job, dict(payload["state_dict"]), {**record, "adopted_from": old_id})
    return True


def adopt_legacy(plan: Plan, store: ResultsStore, cache: ModelCache) -> Adopted:
    """Record the plan's format-1 results under their new ids (see the module docstring)."""
    done = Adopted()
    model_ids, cell_ids = legacy_ids(plan)
    if not model_ids:
        return done
    for mid, old in model_ids.items():
        done.models += _adopt_model(cache, plan.models[mid], old)
    stored = store.existing(cell_ids)
    missing = {new: old for new, old in cell_ids.items() if new not in stored}
    rows = store.cells(missing.values()) if missing else {}
    for new, old in missing.items():
        row = rows.get(old)
        if row is None or not str(row["device"]).startswith("cpu"):
            continue
        cell = plan.cells[new]
        job = plan.models[cell.model_id]
        per_sample = unpack_bits(row["per_sample"], int(row["n"]))
        done.cells += store.write_cell(CellRow(
            cell_id=new, model_id=job.id, protocol=row["protocol"], dataset=row["dataset"],
            dataset_params=job.spec["dataset"]["params"], defense=row["defense"],
            defense_params=job.spec["defense"]["params"], attack=row["attack"],
            attack_params=cell.spec["attack"]["params"] if cell.attack_type else None, scenario=row["scenario"],
            eps=row["eps"], eps_rgb=row["eps_rgb"], eps_skeleton=row["eps_skeleton"], n=int(row["n"]),
            correct=int(row["correct"]), per_sample=per_sample if per_sample is not None else np.zeros(0, dtype=bool),
            seed=int(row["seed"]), duration_s=float(row["duration_s"]), robench_version=row["robench_version"],
            git_commit=row["git_commit"], torch_version=row["torch_version"], device=row["device"],
            spec={**cell.spec, "adopted_from": old}))
    return done

