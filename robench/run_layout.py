"""What a run records so that a report can be rendered from the results store alone.

Each ``robench run`` stores, with the run (the store's ``runs.layout`` column, as JSON), a
:class:`RunLayout`: the protocol's datasets with their defenses (rows) and attacks, its tables,
figures and claims, and where every table entry's cell and every row's trained model is in the
store. ``robench report`` rebuilds the layout with :meth:`RunLayout.from_json` and reads nothing
else about the protocol: the protocol file may have changed or gone since the run.

The layout is versioned (:data:`LAYOUT_FORMAT`): a run recorded by a robench whose layout differs
is refused with a message saying how to re-record it (run the same protocol again; its stored cells
and cached models are reused, so that takes seconds).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from robench.errors import RobenchError
from robench.protocol.budgets import BudgetGrid
from robench.protocol.layout import ClaimSpec, FigureSpec, TableSpec
from robench.registry import CORRUPTIONS, PLUGIN_DIGESTS, plugin_module_name

if TYPE_CHECKING:
    from robench.plan import Plan
    from robench.protocol.corruptions import CorruptionSuite

#: version of the layout stored with each run; reports refuse other versions with a clear message
#: (2: untyped lists of cells and models; 3: this module's typed layout, claims select rows by id,
#: table and figure kinds contributed by defenses, the plugin files of the run)
LAYOUT_FORMAT = 3


class LayoutFormatError(RobenchError):
    """A stored run layout was written by a robench with another :data:`LAYOUT_FORMAT`."""

    def __init__(self, name: str, found: object) -> None:
        self.name, self.found = name, found
        super().__init__(f"the run of protocol '{name}' was recorded by another robench version (run layout format "
                         f"{found}, this version reads {LAYOUT_FORMAT}); run the same protocol again: stored cells "
                         "are reused")


def _plain(value: Any) -> Any:
    """``value`` as JSON gives it back (tuples become lists, keys strings): equal after a round trip."""
    return json.loads(json.dumps(value))


@dataclass(frozen=True)
class CellRef:
    """Where one table entry's cell is: a row (defense id) of a dataset, for one seed, under an attack.

    Attributes:
        variant: dataset id within the protocol.
        defense: defense id (the protocol's row id under ``defenses:``).
        seed: training seed of the model.
        attack: attack id, None for the clean cell.
        scenario: ``clean``, ``R``, ``S`` or ``RS``.
        eps: nominal radius as written in the protocol, rounded to 12 decimals (0 for clean), in the
            threat model's units (RGB on [0, 1], skeleton in metres).
        cell_id: the cell's id in the results store.
    """

    variant: str
    defense: str
    seed: int
    attack: str | None
    scenario: str
    eps: float
    cell_id: str


@dataclass(frozen=True)
class GridRef:
    """Where one point of a budget grid is: a row of a dataset, for one seed, at nominal radii (eps_R, eps_S)."""

    variant: str
    defense: str
    seed: int
    grid: str
    eps_rgb: float
    eps_skeleton: float
    cell_id: str


@dataclass(frozen=True)
class CorruptionRef:
    """Where one corruption cell is: a row of a dataset, for one seed, under a corruption id at a severity."""

    variant: str
    defense: str
    seed: int
    corruption: str
    severity: int
    cell_id: str


@dataclass(frozen=True)
class CorruptionInfo:
    """A corruption of the protocol's suite as a report names it.

    Attributes:
        label: display label.
        type: registered corruption name.
        modality: the input it changes.
        family: the group it is reported under.
        graded: whether its severities differ; if not, its one cell (at the first severity) stands for all.
    """

    label: str
    type: str
    modality: str
    family: str
    graded: bool = True


@dataclass(frozen=True)
class SuiteLayout:
    """The protocol's corruption suite on one dataset: corruptions by id, severities, the mCE baseline row."""

    corruptions: dict[str, CorruptionInfo]
    severities: list[int]
    baseline: str


@dataclass(frozen=True)
class ModelRef:
    """Which trained model serves a row (defense id) of a dataset for one seed (``model_id`` in the store)."""

    variant: str
    defense: str
    seed: int
    model_id: str


@dataclass(frozen=True)
class DefenseRef:
    """A row of the protocol on one dataset.

    Attributes:
        label: display label.
        type: registered defense name (``defenses.<id>.type``).
        params: the defense's protocol parameters for this dataset (overrides applied).
        modalities: the model's branches, sorted (``["rgb", "skeleton"]``; one for unimodal models).
    """

    label: str
    type: str
    params: dict[str, Any]
    modalities: list[str]


@dataclass(frozen=True)
class AttackRef:
    """An evaluation attack of the protocol: display label, registered name, radii (threat-model units)."""

    label: str
    type: str
    eps: list[float]


@dataclass(frozen=True)
class VariantLayout:
    """The protocol on one dataset.

    Attributes:
        label: display label of the dataset.
        dataset: registered dataset name.
        info: the dataset provider's description (classes, clip counts per split, ...).
        defenses: defense id -> row.
        attacks: attack id -> attack.
        scenarios: the scenarios run (``clean``, ``R``, ``S``, ``RS``).
        budgets: budget grids by id.
        corruptions: the corruption suite, if any.
    """

    label: str
    dataset: str
    info: dict[str, Any]
    defenses: dict[str, DefenseRef]
    attacks: dict[str, AttackRef]
    scenarios: list[str]
    budgets: dict[str, BudgetGrid] = field(default_factory=dict)
    corruptions: SuiteLayout | None = None

    def train_clips(self) -> int:
        """Training clips of the dataset (0 if its provider does not say)."""
        clips = self.info.get("clips", {})
        return int(clips.get("train", 0)) if isinstance(clips, dict) else 0


@dataclass(frozen=True)
class RunLayout:
    """Everything a report needs about one run of a protocol (see the module docstring).

    Attributes:
        format: :data:`LAYOUT_FORMAT` of the robench that recorded it.
        name, description, profile: the protocol's (``name`` includes ``@profile``).
        seeds: training seeds.
        variants: dataset id -> the protocol on that dataset.
        tables, figures, claims: the protocol's report sections, validated.
        cells: where each table entry's cell is.
        models: which model serves each row and seed.
        grid_cells: where each budget-grid point's cell is.
        corruption_cells: where each corruption cell is.
        plugins: the protocol's plugin files, absolute path -> SHA-256 of the content the run
            imported; a report imports a file again (to find a defense that contributes tables or
            figures) only while its content is exactly that, so a store never makes robench run
            code other than what its own run ran.
    """

    format: int
    name: str
    description: str
    profile: str | None
    seeds: list[int]
    variants: dict[str, VariantLayout]
    tables: list[TableSpec]
    figures: list[FigureSpec]
    claims: list[ClaimSpec]
    cells: list[CellRef]
    models: list[ModelRef]
    plugins: dict[str, str] = field(default_factory=dict)
    grid_cells: list[GridRef] = field(default_factory=list)
    corruption_cells: list[CorruptionRef] = field(default_factory=list)

    # -- lookups ---------------------------------------------------------------------------------
    def cell_ids(self) -> set[str]:
        """Ids of every cell the run's tables, grids, corruption tables and figures rest on."""
        return ({c.cell_id for c in self.cells} | {g.cell_id for g in self.grid_cells}
                | {c.cell_id for c in self.corruption_cells})

    def model_ids(self, variant: str, defense: str) -> list[str]:
        """Ids of the models serving row ``defense`` on dataset ``variant``, in seed order."""
        return [m.model_id for m in self.models if m.variant == variant and m.defense == defense]

    def table(self, table_id: str) -> TableSpec:
        """The table spec with id ``table_id``."""
        for t in self.tables:
            if t.id == table_id:
                return t
        raise KeyError(table_id)

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def from_plan(cls, plan: Plan) -> RunLayout:
        """The layout of a planned run (what :class:`~robench.runner.Runner` stores with it)."""
        p = plan.protocol
        variants = {
            vid: VariantLayout(
                label=v.label, dataset=v.dataset.type, info=_plain(plan.datasets.get(vid, {})),
                defenses={d: DefenseRef(e.label, e.defense.type, _plain(e.defense.params), sorted(e.model))
                          for d, e in v.defenses.items()},
                attacks={a: AttackRef(e.label, e.attack.type, [float(x) for x in e.eps]) for a, e in v.attacks.items()},
                scenarios=list(v.scenarios), budgets=dict(v.budgets), corruptions=_suite_layout(v.corruptions))
            for vid, v in p.variants.items()
        }
        cells = [CellRef(k[0], k[1], int(k[2]), k[3], k[4], float(k[5]), cid) for k, cid in plan.index.items()]
        models = [ModelRef(k[0], k[1], int(k[2]), mid) for k, mid in plan.model_index.items()]
        return cls(LAYOUT_FORMAT, p.name, p.description, p.profile, list(p.seeds), variants,
                   [TableSpec.from_json(t.to_json()) for t in p.tables],
                   [FigureSpec.from_json(f.to_json()) for f in p.figures],
                   [ClaimSpec.from_json(c.to_json()) for c in p.claims], cells, models,
                   {str(path): PLUGIN_DIGESTS[plugin_module_name(path)] for path in p.plugins},
                   [GridRef(*k, cid) for k, cid in plan.grid_index.items()],
                   [CorruptionRef(*k, cid) for k, cid in plan.corruption_index.items()])

    # -- JSON ------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable mapping (what the store keeps); :meth:`from_json` reads it back equal."""
        return {
            "format": self.format,
            "name": self.name,
            "description": self.description,
            "profile": self.profile,
            "seeds": list(self.seeds),
            "variants": {
                vid: {"label": v.label, "dataset": v.dataset, "info": v.info,
                      "defenses": {d: {"label": e.label, "type": e.type, "params": e.params,
                                       "modalities": list(e.modalities)} for d, e in v.defenses.items()},
                      "attacks": {a: {"label": e.label, "type": e.type, "eps": list(e.eps)}
                                  for a, e in v.attacks.items()},
                      "scenarios": list(v.scenarios),
                      **({"budgets": {g: grid.to_json() for g, grid in v.budgets.items()}} if v.budgets else {}),
                      **({"corruptions": _suite_json(v.corruptions)} if v.corruptions is not None else {})}
                for vid, v in self.variants.items()
            },
            "tables": [t.to_json() for t in self.tables],
            "figures": [f.to_json() for f in self.figures],
            "claims": [c.to_json() for c in self.claims],
            "cells": [[c.variant, c.defense, c.seed, c.attack, c.scenario, c.eps, c.cell_id] for c in self.cells],
            "models": [[m.variant, m.defense, m.seed, m.model_id] for m in self.models],
            "plugins": dict(self.plugins),
            # (absent from layouts of runs without budget grids or corruptions, and from older ones)
            **({"grid_cells": [[g.variant, g.defense, g.seed, g.grid, g.eps_rgb, g.eps_skeleton, g.cell_id]
                                for g in self.grid_cells]} if self.grid_cells else {}),
            **({"corruption_cells": [[c.variant, c.defense, c.seed, c.corruption, c.severity, c.cell_id]
                                      for c in self.corruption_cells]} if self.corruption_cells else {}),
        }

    @classmethod
    def from_json(cls, data: Any) -> RunLayout:
        """Read a stored layout; raises :class:`LayoutFormatError` for one of another :data:`LAYOUT_FORMAT`."""
        name = str(data.get("name", "?")) if isinstance(data, dict) else "?"
        found = data.get("format", 1) if isinstance(data, dict) else None
        if found != LAYOUT_FORMAT:
            raise LayoutFormatError(name, found)
        try:
            variants = {
                str(vid): VariantLayout(
                    label=v["label"], dataset=v["dataset"], info=dict(v["info"]),
                    defenses={str(d): DefenseRef(e["label"], e["type"], dict(e["params"]), list(e["modalities"]))
                              for d, e in v["defenses"].items()},
                    attacks={str(a): AttackRef(e["label"], e["type"], [float(x) for x in e["eps"]])
                             for a, e in v["attacks"].items()},
                    scenarios=list(v["scenarios"]),
                    budgets={str(g): BudgetGrid.from_json(grid) for g, grid in v.get("budgets", {}).items()},
                    corruptions=_suite_from_json(v["corruptions"]) if "corruptions" in v else None)
                for vid, v in data["variants"].items()
            }
            return cls(
                format=int(data["format"]), name=data["name"], description=data.get("description", ""),
                profile=data.get("profile"), seeds=[int(s) for s in data["seeds"]], variants=variants,
                tables=[TableSpec.from_json(t) for t in data["tables"]],
                figures=[FigureSpec.from_json(f) for f in data["figures"]],
                claims=[ClaimSpec.from_json(c) for c in data["claims"]],
                cells=[CellRef(c[0], c[1], int(c[2]), c[3], c[4], float(c[5]), c[6]) for c in data["cells"]],
                models=[ModelRef(m[0], m[1], int(m[2]), m[3]) for m in data["models"]],
                plugins={str(k): str(v) for k, v in dict(data.get("plugins", {})).items()},
                grid_cells=[GridRef(g[0], g[1], int(g[2]), g[3], float(g[4]), float(g[5]), g[6])
                            for g in data.get("grid_cells", [])],
                corruption_cells=[CorruptionRef(c[0], c[1], int(c[2]), c[3], int(c[4]), c[5])
                                  for c in data.get("corruption_cells", [])],
            )
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise RobenchError(f"the stored layout of the run of protocol '{name}' is malformed "
                               f"({type(exc).__name__}: {exc}); run the same protocol again to re-record it") from None


def _suite_layout(suite: CorruptionSuite | None) -> SuiteLayout | None:
    if suite is None:
        return None
    infos = {}
    for cid, entry in suite.entries.items():
        cls = CORRUPTIONS.get(entry.corruption.type)
        infos[cid] = CorruptionInfo(entry.label, entry.corruption.type, cls.modality, cls.family, cls.graded())
    return SuiteLayout(infos, list(suite.severities), suite.baseline)


def _suite_json(suite: SuiteLayout) -> dict[str, Any]:
    return {"corruptions": {cid: {"label": i.label, "type": i.type, "modality": i.modality, "family": i.family,
                                  "graded": i.graded} for cid, i in suite.corruptions.items()},
            "severities": list(suite.severities), "baseline": suite.baseline}


def _suite_from_json(data: dict[str, Any]) -> SuiteLayout:
    return SuiteLayout({str(cid): CorruptionInfo(str(i["label"]), str(i["type"]), str(i["modality"]), str(i["family"]),
                                                 bool(i.get("graded", True)))
                        for cid, i in data["corruptions"].items()},
                       [int(s) for s in data["severities"]], str(data["baseline"]))
