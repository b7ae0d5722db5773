"""The report side of a protocol: its tables, figures and claims.

Tables (``tables:``)
    ``kind: accuracy`` (default) is the paper's layout: one block per dataset, rows and columns
    of accuracies. A row is a defense id (its model under the table's attack) or a mapping
    ``{id, defense, attack, label}`` (Table 1's rows are attacks on one model). A column is one of
    ``clean, R, S, RS`` (an accuracy), ``Avg`` (Eq. 13), ``RI`` (Eq. 14, relative to the
    ``baseline`` row, by default the table's first row), or a mapping ``{id, label, defense,
    scenario}``: the same cell of another model (Table 1's unimodal columns). ``reference``
    carries the paper's printed values: per dataset, per row id, a list in column order (``null``
    where the paper prints nothing).
    Any other ``kind`` is contributed by a defense: ``{kind: KIND, defense: ID}`` where the type of
    defense ``ID`` lists ``KIND`` in its ``report_tables`` (AMR: ``amr_weights``, the paper's
    Table 3), built by that type's ``summary_table`` from the stored ``summary()`` of the row's
    trained models; ``reference`` then names the row ids that ``summary_table`` returns.

Figures (``figures:``)
    ``kind: eps_curves`` (Figure 2): accuracy of ``defense`` against eps for each attack and
    scenario, plus the clean line, one panel per dataset, x in units of ``eps_unit``.
    Any other ``kind`` is contributed by the type of ``defense`` (its ``report_figures``; AMR:
    ``amr_weights``, the paper's Figure 4), drawn by its ``summary_figure``.

Claims (``claims:``)
    qualitative statements of the paper, each checked on one accuracy table (see :data:`CLAIMS`),
    on the rows the protocol names for each of the claim's roles (:data:`CLAIM_ROLES`), e.g.
    ``{id: amr_best, table: table2, rows: {proposed: amr}}``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from robench.params import full_params
from robench.protocol.check import Checker
from robench.registry import DEFENSES
from robench.scenarios import ATTACKED_SCENARIOS, SCENARIOS

SCENARIO_COLUMNS = tuple(SCENARIOS)
STANDARD_COLUMNS = (*SCENARIO_COLUMNS, "Avg", "RI")
COLUMN_LABELS = {"clean": "Clean", "R": "XR", "S": "XS", "RS": "XRS", "Avg": "Avg", "RI": "RI"}

#: the paper's qualitative claims robench checks (implemented in robench.report.paper_claims)
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


@dataclass(frozen=True)
class ClaimRole:
    """A set of rows of the claim's table that its check compares (``claims: - {rows: {ROLE: ...}}``).

    Attributes:
        doc: what the rows are (shown in validation messages).
        ranked: the protocol gives a mapping number -> row id (``{0: at_rs, 1: amr1}``) instead of
            a row id or a list of them; the check reads the rows in increasing order of the numbers.
        default_baseline: when the protocol leaves the role out, it is the table's baseline row
            (otherwise the role is required).
    """

    doc: str
    ranked: bool = False
    default_baseline: bool = False


#: the rows each claim's check compares, by role (what ``rows:`` of a claim may name)
CLAIM_ROLES: dict[str, dict[str, ClaimRole]] = {
    "skeleton_more_robust": {
        "undefended": ClaimRole("rows of the undefended model (default: the table's baseline row)",
                                default_baseline=True)},
    "fusion_not_more_robust": {},
    "amr_best": {"proposed": ClaimRole("rows of the proposed defense (AMR)")},
    "more_amrs_help_larger": {
        "by_count": ClaimRole("number of AMRs -> row id (0: adversarial training without AMR)", ranked=True)},
    "minsim_exfmem_weak_rgb": {
        "weak": ClaimRole("rows of MinSim, ExFMem and MinSim+ExFMem"),
        "strong": ClaimRole("rows of adversarial training on both modalities and of AMR")},
}
assert set(CLAIM_ROLES) == set(CLAIMS), "every claim needs its roles"


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
    defense: str | None = None  # a contributed kind: the row (defense id) whose type contributes it
    row_header: str = "Defense"
    bold: bool = True  # mark the best value of each column

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable mapping (stored with each run); :meth:`from_json` reads it back equal."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TableSpec:
        """The spec :meth:`to_json` wrote."""
        return cls(**{**data, "rows": [RowSpec(**r) for r in data["rows"]],
                      "columns": [ColumnSpec(**c) for c in data["columns"]]})


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

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable mapping (stored with each run); :meth:`from_json` reads it back equal."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FigureSpec:
        """The spec :meth:`to_json` wrote."""
        return cls(**data)


@dataclass
class ClaimSpec:
    """A qualitative claim of the paper, checked on one table.

    Attributes:
        id: the claim (a key of :data:`CLAIMS`).
        table: id of the accuracy table it is checked on.
        text: the claim as the report prints it.
        rows: role (:data:`CLAIM_ROLES`) -> row ids of the table; for a ranked role in increasing
            order of :attr:`ranks`.
        ranks: ranked role -> the numbers of its rows (e.g. AMR counts), increasing.
    """

    id: str
    table: str
    text: str
    rows: dict[str, list[str]] = field(default_factory=dict)
    ranks: dict[str, list[float]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable mapping (stored with each run); :meth:`from_json` reads it back equal."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClaimSpec:
        """The spec :meth:`to_json` wrote."""
        return cls(**data)


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
                raise c.fail(cpath, col, "columns from " + ", ".join(STANDARD_COLUMNS)
                             + " or {id, label, defense, scenario}")
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


#: the table attack that means "the worst case over every attack the run evaluated" (per clip)
WORST = "worst"
def _table_attacks(attacks: dict[str, Any]) -> str:
    return (f"an attack id of this protocol: {', '.join(attacks)}; or '{WORST}' (the worst case over them); or "
            "'<attack id>@<stage>' (an ensemble's accuracy after one stage, e.g. aa@apgd-t)")


def _table_attack(name: Any, attacks: dict[str, Any]) -> bool:
    """Whether a table or row may name ``name`` as its attack."""
    if not isinstance(name, str):
        return False
    return name == WORST or name in attacks or ("@" in name and name.split("@", 1)[0] in attacks)


def _eps_of(name: str, attacks: dict[str, Any]) -> list[float]:
    """The radii a table attack is available at: its attack's, or for the worst case any attack's."""
    if name == WORST:
        return sorted({e for a in attacks.values() for e in a.eps})
    return list(attacks[name.split("@", 1)[0]].eps)


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
        if attack is not None and not _table_attack(attack, attacks):
            raise c.fail((*rpath, "attack"), attack, _table_attacks(attacks))
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


def _contributed(first: Any, attr: str) -> dict[str, list[str]]:
    """Kind -> ids of the protocol's defenses whose type contributes it (``attr``: report_tables/report_figures)."""
    out: dict[str, list[str]] = {}
    for d, e in first.defenses.items():
        for kind in getattr(DEFENSES.get(e.defense.type), attr):
            out.setdefault(kind, []).append(d)
    return out


def _contributor(c: Checker, spec: dict[str, Any], path: tuple[str, ...], variants: dict[str, Any], builtin: str,
                 attr: str, what: str) -> str:
    """The defense id of a table or figure of a contributed kind (checks the defense's type declares the kind)."""
    first = next(iter(variants.values()))
    kind, defense = spec.get("kind"), spec.get("defense")
    offered = _contributed(first, attr)
    menu = "; ".join(f"{k} (defense {' or '.join(ds)})" for k, ds in offered.items())
    allowed = f"{builtin}, or a {what} kind contributed by the type of the {what}'s defense: " + (
        menu or f"none here (no defense of this protocol contributes {what}s)")
    if not isinstance(kind, str) or kind not in offered:
        raise c.fail((*path, "kind"), kind, allowed)
    if defense not in offered[kind]:
        raise c.fail((*path, "defense"), defense if defense is not None else "(missing)",
                     f"the id of a defense whose type contributes {what}s of kind '{kind}': "
                     + ", ".join(offered[kind]))
    return str(defense)


def _summary_reference(c: Checker, value: Any, path: tuple[str, ...], datasets: list[str], variants: dict[str, Any],
                       defense: str, kind: str) -> dict[str, dict[str, list[float | None]]]:
    """``reference:`` of a contributed table: per dataset, per row id of the defense's table, values in column order.

    The row ids (and the number of columns, where the defense's table has them without data) are those
    of ``summary_table(kind, params, [])``, the table as it is before any model is trained.
    """
    data = c.mapping(value, path, "per dataset, per row id, a list of values in column order")
    out: dict[str, dict[str, list[float | None]]] = {}
    for ds, rows in data.items():
        if ds not in datasets:
            raise c.fail((*path, str(ds)), ds, "a dataset of this table: " + ", ".join(datasets))
        entry = variants[ds].defenses[defense]
        cls = DEFENSES.get(entry.defense.type)
        empty = cls.summary_table(kind, full_params(cls, entry.defense.params), [])
        row_ids = [r.id for r in empty.rows]
        rows = c.mapping(rows, (*path, str(ds)), "per row id, a list of values in column order")
        out[ds] = {}
        for rid, values in rows.items():
            vpath = (*path, str(ds), str(rid))
            if rid not in row_ids:
                raise c.fail(vpath, rid, "a row id of this table: " + (", ".join(row_ids) or "(none)"))
            width = len(empty.columns)
            if not isinstance(values, list) or (width and len(values) != width):
                raise c.fail(vpath, values, f"a list of {width or 'any number of'} values (numbers or null), one per "
                             "column")
            out[ds][str(rid)] = [None if v is None else c.number(v, (*vpath, str(k))) for k, v in enumerate(values)]
    return out


def tables(c: Checker, value: Any, variants: dict[str, Any]) -> list[TableSpec]:
    """Validate ``tables:`` (default: one table per attack at its first eps, all defenses as rows)."""
    first = next(iter(variants.values()))
    if value is None:
        value = [{"id": a, "title": f"{e.label}, eps {e.eps[0] * 255:.3g}/255", "attack": a}
                 for a, e in first.attacks.items()]
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
        row_header = str(t.get("row_header", "Defense" if kind == "accuracy" else ""))
        if kind != "accuracy":
            defense = _contributor(c, t, path, variants, "accuracy", "report_tables", "table")
            reference = _summary_reference(c, t.get("reference"), (*path, "reference"), datasets, variants, defense,
                                           kind)
            out.append(TableSpec(tid, str(t.get("title", tid)), kind, None, None, [], [], None, datasets, reference,
                                 notes, defense, row_header))
            continue
        attack = t.get("attack")
        if attack is not None and not _table_attack(attack, first.attacks):
            raise c.fail((*path, "attack"), attack, _table_attacks(first.attacks))
        if WORST in first.attacks:
            raise c.fail(("attacks", WORST), WORST, f"another attack id: '{WORST}' names the worst case in tables")
        rows = _rows(c, t.get("rows", list(first.defenses)), (*path, "rows"), first.defenses, first.attacks, attack)
        columns = _columns(c, t.get("columns", list(STANDARD_COLUMNS)), (*path, "columns"), first.defenses)
        row_attacks = {a for r in rows if (a := r.attack or attack) is not None}
        eps = c.number(t["eps"], (*path, "eps")) if "eps" in t else _eps_of(next(iter(row_attacks)), first.attacks)[0]
        for v in variants.values():
            for a in row_attacks:
                runs_at = _eps_of(a, v.attacks)
                if not any(abs(eps - e) < 1e-12 for e in runs_at):
                    raise c.fail((*path, "eps"), t.get("eps", eps), f"one of the eps values attack '{a}' runs at on "
                                 f"dataset '{v.id}': {runs_at}")
        row_ids = [r.id for r in rows]
        baseline = t.get("baseline", row_ids[0])  # default: the first row (put the undefended model first)
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
        if kind != "eps_curves":
            contributor = _contributor(c, f, path, variants, "eps_curves", "report_figures", "figure")
            out.append(FigureSpec(fid, str(f.get("title", fid)), str(kind), contributor, datasets))
            continue
        attacks = c.typed(f.get("attacks", list(first.attacks)), list[str], (*path, "attacks"))
        for j, a in enumerate(attacks):
            if a not in first.attacks:
                raise c.fail((*path, "attacks", str(j)), a,
                             "an attack id of this protocol: " + ", ".join(first.attacks))
        scenarios = c.typed(f.get("scenarios", ["R", "S", "RS"]), list[str], (*path, "scenarios"))
        for j, s in enumerate(scenarios):
            if s not in ATTACKED_SCENARIOS or s not in first.scenarios:
                raise c.fail((*path, "scenarios", str(j)), s, "attacked scenarios the protocol runs: " +
                             ", ".join(x for x in first.scenarios if x != "clean"))
        unit = c.number(f.get("eps_unit", 2 / 255), (*path, "eps_unit"), minimum=1e-12)
        out.append(FigureSpec(fid, str(f.get("title", fid)), kind, str(defense), datasets, attacks, scenarios,
                              unit))
    return out


def _claim_rows(c: Checker, value: Any, path: tuple[str, ...], claim: str, table: TableSpec
                ) -> tuple[dict[str, list[str]], dict[str, list[float]]]:
    """Validate a claim's ``rows:`` (role -> row ids of ``table``) against the claim's roles."""
    roles = CLAIM_ROLES[claim]
    data = c.mapping(value, path, "a mapping role -> row id(s): " + (", ".join(roles) or "(this claim takes none)"))
    row_ids = [r.id for r in table.rows]
    known = f"a row id of table '{table.id}': " + ", ".join(row_ids)

    def row_id(rid: Any, rpath: tuple[str, ...]) -> str:
        if not isinstance(rid, str) or rid not in row_ids:
            raise c.fail(rpath, rid, known)
        return rid

    for role in data:
        if role not in roles:
            raise c.fail((*path, str(role)), role, f"roles of claim '{claim}': " + (", ".join(
                f"{r} ({d.doc})" for r, d in roles.items()) or "(this claim takes none)"))
    rows: dict[str, list[str]] = {}
    ranks: dict[str, list[float]] = {}
    for role, spec in roles.items():
        rpath = (*path, role)
        if role not in data:
            if spec.default_baseline and table.baseline is not None:
                rows[role] = [table.baseline]
                continue
            raise c.fail(rpath, "(missing)", f"{'a mapping number -> row id' if spec.ranked else 'row id(s)'} of "
                         f"table '{table.id}': {spec.doc}" + (" (the table has no baseline row)"
                                                               if spec.default_baseline else ""))
        given = data[role]
        if spec.ranked:
            ranked = c.mapping(given, rpath, f"a mapping number -> row id ({spec.doc})")
            if not ranked:
                raise c.fail(rpath, given, f"a non-empty mapping number -> row id ({spec.doc})")
            pairs = sorted((c.number(k, (*rpath, str(k))), row_id(v, (*rpath, str(k)))) for k, v in ranked.items())
            if len({k for k, _ in pairs}) != len(pairs):
                raise c.fail(rpath, given, f"a mapping with distinct numbers ({spec.doc})")
            ranks[role], rows[role] = [float(k) for k, _ in pairs], [v for _, v in pairs]
        else:
            given = [given] if isinstance(given, str) else given
            if not isinstance(given, list) or not given:
                raise c.fail(rpath, data[role], f"a row id or a non-empty list of row ids ({spec.doc})")
            rows[role] = [row_id(rid, (*rpath, str(j)) if isinstance(data[role], list) else rpath)
                          for j, rid in enumerate(given)]
    return rows, ranks


def claims(c: Checker, value: Any, table_specs: list[TableSpec]) -> list[ClaimSpec]:
    """Validate ``claims:`` (each names a claim of :data:`CLAIMS`, the table it rests on and its rows by role)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise c.fail(("claims",), value, "a list of {id, table, rows}")
    tables_by_id = {t.id: t for t in table_specs if t.kind == "accuracy"}
    out = []
    for i, cl in enumerate(value):
        path = ("claims", str(i))
        cl = c.mapping(cl, path, "{id, table, rows}")
        c.keys(cl, path, ("id", "table", "rows"))
        if cl.get("id") not in CLAIMS:
            raise c.fail((*path, "id"), cl.get("id"), "a claim robench checks: " + ", ".join(CLAIMS))
        if cl.get("table") not in tables_by_id:
            raise c.fail((*path, "table"), cl.get("table"), "an accuracy table id of this protocol: " +
                         (", ".join(tables_by_id) or "(none)"))
        rows, ranks = _claim_rows(c, cl.get("rows"), (*path, "rows"), cl["id"], tables_by_id[cl["table"]])
        out.append(ClaimSpec(cl["id"], cl["table"], CLAIMS[cl["id"]], rows, ranks))
    return out
