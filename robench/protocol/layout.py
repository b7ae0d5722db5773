"""The report side of a protocol: its tables, figures and claims.

Tables (``tables:``)
    ``kind: accuracy`` (default) is the paper's layout: one block per dataset, rows and columns
    of accuracies. A row is a defense id (its model under the table's attack) or a mapping
    ``{id, defense, attack, label}`` (Table 1's rows are attacks on one model). A column is one of
    ``clean, R, S, RS`` (an accuracy), ``Avg`` (Eq. 13), ``RI`` (Eq. 14, relative to the
    ``baseline`` row), or a mapping ``{id, label, defense, scenario}``: the same cell of another
    model (Table 1's unimodal columns). ``reference`` carries the paper's printed values: per
    dataset, per row id, a list in column order (``null`` where the paper prints nothing).
    ``kind: amr_weights`` is Table 3: the mean AMR weight per modality per AMR of ``defense``.

Figures (``figures:``)
    ``kind: eps_curves`` (Figure 2): accuracy of ``defense`` against eps for each attack and
    scenario, plus the clean line, one panel per dataset, x in units of ``eps_unit``.
    ``kind: amr_weights`` (Figure 4): per-channel mean AMR weights of ``defense``, RGB vs skeleton.

Claims (``claims:``)
    qualitative statements of the paper, each checked on one table (see :data:`CLAIMS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from robench.protocol.check import Checker

SCENARIO_COLUMNS = ("clean", "R", "S", "RS")
STANDARD_COLUMNS = (*SCENARIO_COLUMNS, "Avg", "RI")
COLUMN_LABELS = {"clean": "Clean", "R": "XR", "S": "XS", "RS": "XRS", "Avg": "Avg", "RI": "RI"}

#: the paper's qualitative claims robench checks (implemented in robench.report.claims)
CLAIMS: dict[str, str] = {
    "skeleton_more_robust": "the skeleton modality is more robust than RGB: attacking the skeleton alone costs less "
                            "accuracy than attacking RGB alone (XS > XR)",
    "fusion_not_more_robust": "fusion is no more robust than its weakest modality: with one modality attacked the "
                              "fused model is below the unimodal model of the other, clean one",
    "amr_best": "AMR is best on XRS, Avg and RI",
    "more_amrs_help_larger": "more AMRs help on the larger dataset: RI grows with the number of AMRs on it",
    "minsim_exfmem_weak_rgb": "MinSim and ExFMem are weak on XR and XRS: below adversarial training on both "
                              "modalities and below AMR",
}


@dataclass
class RowSpec:
    """A table row: ``defense``'s model under ``attack`` (None: the table's attack)."""

    id: str
    defense: str
    attack: str | None
    label: str


@dataclass
class ColumnSpec:
    """A table column: a scenario accuracy, Avg, RI, or a scenario of a fixed other model."""

    id: str
    label: str
    kind: str  # "scenario", "avg" or "ri"
    scenario: str | None = None
    defense: str | None = None  # a fixed model (custom columns), else the row's


@dataclass
class TableSpec:
    """One table of a protocol (see the module docstring)."""

    id: str
    title: str
    kind: str
    attack: str | None
    eps: float | None
    rows: list[RowSpec]
    columns: list[ColumnSpec]
    baseline: str | None
    datasets: list[str]
    reference: dict[str, dict[str, list[float | None]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    defense: str | None = None  # kind amr_weights: whose weights
    row_header: str = "Defense"
    bold: bool = True  # mark the best value of each column


@dataclass
class FigureSpec:
    """One figure of a protocol (see the module docstring)."""

    id: str
    title: str
    kind: str
    defense: str
    datasets: list[str]
    attacks: list[str] = field(default_factory=list)
    scenarios: list[str] = field(default_factory=list)
    eps_unit: float = 2 / 255


@dataclass
class ClaimSpec:
    """A qualitative claim of the paper, checked on one table."""

    id: str
    table: str
    text: str


def _standard_column(name: str) -> ColumnSpec:
    if name in SCENARIO_COLUMNS:
        return ColumnSpec(name, COLUMN_LABELS[name], "scenario", scenario=name)
    return ColumnSpec(name, COLUMN_LABELS[name], name.lower())


def _columns(c: Checker, value: Any, path: tuple[str, ...], defenses: dict[str, Any]) -> list[ColumnSpec]:
    if not isinstance(value, list) or not value:
        raise c.fail(path, value, f"a non-empty list of columns: {', '.join(STANDARD_COLUMNS)} or "
                     "{id, label, defense, scenario}")
    out = []
    for j, col in enumerate(value):
        cpath = (*path, str(j))
        if isinstance(col, str):
            if col not in STANDARD_COLUMNS:
                raise c.fail(cpath, col, "columns from " + ", ".join(STANDARD_COLUMNS) + " or {id, label, defense, scenario}")
            out.append(_standard_column(col))
            continue
        col = c.mapping(col, cpath, "a column name or {id, label, defense, scenario}")
        c.keys(col, cpath, ("id", "label", "defense", "scenario"))
        for key in ("id", "defense", "scenario"):
            if key not in col:
                raise c.fail((*cpath, key), "(missing)", "a value: custom columns need id, defense and scenario")
        if col["defense"] not in defenses:
            raise c.fail((*cpath, "defense"), col["defense"], "a defense id of this protocol: " + ", ".join(defenses))
        if col["scenario"] not in SCENARIO_COLUMNS:
            raise c.fail((*cpath, "scenario"), col["scenario"], "one of " + ", ".join(SCENARIO_COLUMNS))
        out.append(ColumnSpec(str(col["id"]), str(col.get("label", col["id"])), "scenario", col["scenario"],
                              col["defense"]))
    ids = [col.id for col in out]
    if len(set(ids)) != len(ids):
        raise c.fail(path, ids, "distinct column ids")
    return out


def _rows(c: Checker, value: Any, path: tuple[str, ...], defenses: dict[str, Any], attacks: dict[str, Any],
          default_attack: str | None) -> list[RowSpec]:
    if not isinstance(value, list) or not value:
        raise c.fail(path, value, "a non-empty list of defense ids or {id, defense, attack, label}")
    out = []
    for j, row in enumerate(value):
        rpath = (*path, str(j))
        if isinstance(row, str):
            row = {"defense": row}
        row = c.mapping(row, rpath, "a defense id or {id, defense, attack, label}")
        c.keys(row, rpath, ("id", "defense", "attack", "label"))
        defense = row.get("defense")
        if defense not in defenses:
            raise c.fail((*rpath, "defense") if "id" in row or "attack" in row else rpath, defense,
                         "a defense id of this protocol: " + ", ".join(defenses))
        attack = row.get("attack")
        if attack is not None and attack not in attacks:
            raise c.fail((*rpath, "attack"), attack, "an attack id of this protocol: " + ", ".join(attacks))
        if attack is None and default_attack is None:
            raise c.fail((*rpath, "attack"), "(missing)", "an attack id (the table sets no attack)")
        label = str(row.get("label", defenses[defense].label))
        out.append(RowSpec(str(row.get("id", defense)), defense, attack, label))
    ids = [r.id for r in out]
    if len(set(ids)) != len(ids):
        raise c.fail(path, ids, "distinct row ids (give repeated defenses an id)")
    return out


def _reference(c: Checker, value: Any, path: tuple[str, ...], datasets: list[str], row_ids: list[str],
               width: int) -> dict[str, dict[str, list[float | None]]]:
    data = c.mapping(value, path, "per dataset, per row id, a list of values in column order")
    out: dict[str, dict[str, list[float | None]]] = {}
    for ds, rows in data.items():
        if ds not in datasets:
            raise c.fail((*path, str(ds)), ds, "a dataset of this table: " + ", ".join(datasets))
        rows = c.mapping(rows, (*path, str(ds)), "per row id, a list of values in column order")
        out[ds] = {}
        for rid, values in rows.items():
            vpath = (*path, str(ds), str(rid))
            if rid not in row_ids:
                raise c.fail(vpath, rid, "a row id of this table: " + ", ".join(row_ids))
            if not isinstance(values, list) or len(values) != width:
                raise c.fail(vpath, values, f"a list of {width} values (numbers or null), one per column")
            out[ds][str(rid)] = [None if v is None else c.number(v, (*vpath, str(k))) for k, v in enumerate(values)]
    return out


def _datasets(c: Checker, value: Any, path: tuple[str, ...], variants: dict[str, Any]) -> list[str]:
    ds = c.typed(value if value is not None else list(variants), list[str], path)
    for j, d in enumerate(ds):
        if d not in variants:
            raise c.fail((*path, str(j)), d, "a dataset id of this protocol: " + ", ".join(variants))
    return ds


def tables(c: Checker, value: Any, variants: dict[str, Any]) -> list[TableSpec]:
    """Validate ``tables:`` (default: one table per attack at its first eps, all defenses as rows)."""
    first = next(iter(variants.values()))
    if value is None:
        value = [{"id": a, "title": f"{e.label}, eps {e.eps[0] * 255:.3g}/255", "attack": a} for a, e in first.attacks.items()]
    if not isinstance(value, list):
        raise c.fail(("tables",), value, "a list of tables")
    out = []
    allowed = ("id", "title", "kind", "attack", "eps", "rows", "columns", "baseline", "datasets", "reference", "notes",
               "defense", "row_header", "bold")
    for i, t in enumerate(value):
        path = ("tables", str(i))
        t = c.mapping(t, path)
        c.keys(t, path, allowed)
        tid = str(t.get("id", f"table{i + 1}"))
        kind = t.get("kind", "accuracy")
        datasets = _datasets(c, t.get("datasets"), (*path, "datasets"), variants)
        notes = c.typed(t.get("notes", []), list[str], (*path, "notes"))
        row_header = str(t.get("row_header", "" if kind == "amr_weights" else "Defense"))
        if kind == "amr_weights":
            defense = t.get("defense")
            if defense not in first.defenses or first.defenses[defense].defense.type != "amr":
                raise c.fail((*path, "defense"), defense, "the id of an amr defense of this protocol: " +
                             ", ".join(d for d, e in first.defenses.items() if e.defense.type == "amr"))
            ref = c.mapping(t.get("reference"), (*path, "reference"), "per dataset {rgb: [...], skeleton: [...]}")
            reference = {}
            for ds, mods in ref.items():
                if ds not in datasets:
                    raise c.fail((*path, "reference", str(ds)), ds, "a dataset of this table: " + ", ".join(datasets))
                mods = c.mapping(mods, (*path, "reference", str(ds)), "{rgb: [...], skeleton: [...]}")
                c.keys(mods, (*path, "reference", str(ds)), ("rgb", "skeleton"))
                reference[ds] = {m: c.typed(v, list[float], (*path, "reference", str(ds), m)) for m, v in mods.items()}
            out.append(TableSpec(tid, str(t.get("title", tid)), kind, None, None, [], [], None, datasets, reference,
                                 notes, defense, row_header))
            continue
        if kind != "accuracy":
            raise c.fail((*path, "kind"), kind, "accuracy or amr_weights")
        attack = t.get("attack")
        if attack is not None and attack not in first.attacks:
            raise c.fail((*path, "attack"), attack, "an attack id of this protocol: " + ", ".join(first.attacks))
        rows = _rows(c, t.get("rows", list(first.defenses)), (*path, "rows"), first.defenses, first.attacks, attack)
        columns = _columns(c, t.get("columns", list(STANDARD_COLUMNS)), (*path, "columns"), first.defenses)
        row_attacks = {r.attack or attack for r in rows}
        eps = c.number(t["eps"], (*path, "eps")) if "eps" in t else first.attacks[next(iter(row_attacks))].eps[0]
        for v in variants.values():
            for a in row_attacks:
                if not any(abs(eps - e) < 1e-12 for e in v.attacks[a].eps):
                    raise c.fail((*path, "eps"), t.get("eps", eps), f"one of the eps values attack '{a}' runs at on "
                                 f"dataset '{v.id}': {v.attacks[a].eps}")
        row_ids = [r.id for r in rows]
        default_base = next((r.id for r in rows if first.defenses[r.defense].defense.type == "none"), None)
        baseline = t.get("baseline", default_base)
        if baseline is not None and baseline not in row_ids:
            raise c.fail((*path, "baseline"), baseline, "a row id of this table (the RI reference row) or null: " +
                         ", ".join(row_ids))
        if any(col.kind == "ri" for col in columns) and baseline is None:
            raise c.fail((*path, "baseline"), None, "a row id: column RI needs a reference row")
        reference = _reference(c, t.get("reference"), (*path, "reference"), datasets, row_ids, len(columns))
        bold = c.typed(t.get("bold", True), bool, (*path, "bold"))
        out.append(TableSpec(tid, str(t.get("title", tid)), kind, attack, eps, rows, columns, baseline, datasets,
                             reference, notes, row_header=row_header, bold=bold))
    ids = [t.id for t in out]
    if len(set(ids)) != len(ids):
        raise c.fail(("tables",), ids, "distinct table ids")
    return out


def figures(c: Checker, value: Any, variants: dict[str, Any]) -> list[FigureSpec]:
    """Validate ``figures:``."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise c.fail(("figures",), value, "a list of figures")
    first = next(iter(variants.values()))
    out = []
    for i, f in enumerate(value):
        path = ("figures", str(i))
        f = c.mapping(f, path)
        c.keys(f, path, ("id", "title", "kind", "defense", "datasets", "attacks", "scenarios", "eps_unit"))
        fid = str(f.get("id", f"figure{i + 1}"))
        kind = f.get("kind")
        defense = f.get("defense")
        if defense not in first.defenses:
            raise c.fail((*path, "defense"), defense, "a defense id of this protocol: " + ", ".join(first.defenses))
        datasets = _datasets(c, f.get("datasets"), (*path, "datasets"), variants)
        if kind == "amr_weights":
            if first.defenses[defense].defense.type != "amr":
                raise c.fail((*path, "defense"), defense, "the id of an amr defense")
            out.append(FigureSpec(fid, str(f.get("title", fid)), kind, defense, datasets))
            continue
        if kind != "eps_curves":
            raise c.fail((*path, "kind"), kind, "eps_curves or amr_weights")
        attacks = c.typed(f.get("attacks", list(first.attacks)), list[str], (*path, "attacks"))
        for j, a in enumerate(attacks):
            if a not in first.attacks:
                raise c.fail((*path, "attacks", str(j)), a, "an attack id of this protocol: " + ", ".join(first.attacks))
        scenarios = c.typed(f.get("scenarios", ["R", "S", "RS"]), list[str], (*path, "scenarios"))
        for j, s in enumerate(scenarios):
            if s not in ("R", "S", "RS") or s not in first.scenarios:
                raise c.fail((*path, "scenarios", str(j)), s, "attacked scenarios the protocol runs: " +
                             ", ".join(x for x in first.scenarios if x != "clean"))
        unit = c.number(f.get("eps_unit", 2 / 255), (*path, "eps_unit"), minimum=1e-12)
        out.append(FigureSpec(fid, str(f.get("title", fid)), kind, defense, datasets, attacks, scenarios, unit))
    return out


def claims(c: Checker, value: Any, table_specs: list[TableSpec]) -> list[ClaimSpec]:
    """Validate ``claims:`` (each names a claim of :data:`CLAIMS` and the table it rests on)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise c.fail(("claims",), value, "a list of {id, table}")
    table_ids = [t.id for t in table_specs]
    out = []
    for i, cl in enumerate(value):
        path = ("claims", str(i))
        cl = c.mapping(cl, path, "{id, table}")
        c.keys(cl, path, ("id", "table"))
        if cl.get("id") not in CLAIMS:
            raise c.fail((*path, "id"), cl.get("id"), "a claim robench checks: " + ", ".join(CLAIMS))
        if cl.get("table") not in table_ids:
            raise c.fail((*path, "table"), cl.get("table"), "a table id of this protocol: " + ", ".join(table_ids))
        out.append(ClaimSpec(cl["id"], cl["table"], CLAIMS[cl["id"]]))
    return out
