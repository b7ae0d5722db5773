"""Assembling the paper's tables from the results store.

An accuracy table has one block per dataset; each row is a model under an attack, each column a
scenario accuracy, Avg or RI (in percent), or a scenario of another fixed model (Table 1's
unimodal columns). Values come from the cells the protocol's run recorded in the store's
``runs.layout``; with several seeds a value is the mean accuracy over the seeds found. Avg and RI
are computed from unrounded accuracies (paper Eq. 13-14); RI is relative to the table's baseline
row in the same block. Where the protocol carries the paper's printed values, every entry has the
paper's value and the difference.

A table of any other kind is contributed by a defense (``report_tables`` of the type of the
table's ``defense``, e.g. AMR's ``amr_weights``, the paper's Table 3): one block per dataset, built
by the type's ``summary_table`` from the stored ``summary()`` of the row's trained models (one per
seed), with the protocol's reference values matched by row id and column order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robench.errors import RobenchError, UnknownNameError
from robench.identity import file_digest
from robench.params import full_params
from robench.protocol.layout import WORST, TableSpec
from robench.registry import DEFENSES, load_plugin_file
from robench.report.flags import run_flags
from robench.report.metrics import avg, relative_improvement, wilson_interval
from robench.run_layout import LAYOUT_FORMAT, LayoutFormatError, RunLayout
from robench.sanity import Flag
from robench.scenarios import ATTACKED_SCENARIOS, SCENARIOS
from robench.store import ResultsStore, unpack_bits
from robench.store.details import CellDetails


@dataclass
class Value:
    """One table entry with what it rests on.

    Attributes:
        value: the measured value (percent for accuracy tables), None if not in the store.
        n, correct, seeds: evaluated clips, correct ones and seeds (accuracy entries).
        ci: 95% Wilson interval in percent (accuracy entries).
        paper: the paper's printed value, if the protocol carries it.
        cells: ids of the stored cells this value rests on.
    """

    value: float | None
    n: int = 0
    correct: int = 0
    seeds: int = 0
    ci: tuple[float, float] | None = None
    paper: float | None = None
    cells: list[str] = field(default_factory=list)
    flags: list[Flag] = field(default_factory=list)

    @property
    def unreliable(self) -> bool:
        """A sanity flag fired on a cell this value rests on (``docs/flags.md``)."""
        return bool(self.flags)

    @property
    def missing(self) -> bool:
        return self.value is None

    @property
    def diff(self) -> float | None:
        return None if self.value is None or self.paper is None else self.value - self.paper


@dataclass
class Row:
    id: str
    label: str
    defense: str
    defense_type: str
    values: dict[str, Value]
    baseline: bool = False


@dataclass
class Block:
    dataset: str
    label: str
    rows: list[Row]
    best: dict[str, set[int]] = field(default_factory=dict)  # column -> indices of best rows
    has_reference: bool = False


@dataclass
class Table:
    protocol: str
    id: str
    title: str
    kind: str
    columns: list[tuple[str, str]]  # (id, label)
    blocks: list[Block]
    notes: list[str] = field(default_factory=list)
    digits: int = 2
    row_header: str = "Defense"
    #: what an empty entry (a dash) means in this table
    missing: str = "not in the store yet"

    @property
    def column_ids(self) -> list[str]:
        return [c for c, _ in self.columns]

    @property
    def column_labels(self) -> list[str]:
        return [label for _, label in self.columns]

    @property
    def complete(self) -> bool:
        """No entry is empty (shown as a dash)."""
        return all(not v.missing for b in self.blocks for r in b.rows for v in r.values.values())

    @property
    def has_reference(self) -> bool:
        return any(b.has_reference for b in self.blocks)


class CellIndex:
    """Looks up stored cells by (dataset, defense, attack, scenario, eps) over a run's seeds.

    Besides a protocol's attack ids, ``attack`` may be :data:`~robench.protocol.layout.WORST` (the
    worst case over every attack the run evaluated on that model, scenario and eps: a clip counts as
    robust only if no attack fooled it, from the stored per-sample results) or ``"<attack id>@<stage>"``
    (an ensemble's accuracy after one of its stages, e.g. ``aa@apgd-t``).
    """

    def __init__(self, layout: RunLayout, cells: dict[str, dict[str, Any]],
                 flags: dict[str, list[Flag]] | None = None) -> None:
        self.seeds = layout.seeds
        self.index: dict[tuple[Any, ...], str] = {
            (c.variant, c.defense, c.seed, c.attack, c.scenario, c.eps): c.cell_id for c in layout.cells}
        self.attacked: dict[tuple[Any, ...], list[str]] = {}
        for c in layout.cells:
            if c.attack is not None:
                self.attacked.setdefault((c.variant, c.defense, c.seed, c.scenario, c.eps), []).append(c.cell_id)
        self.cells = cells
        self.flags = flags or {}

    def value(self, dataset: str, defense: str, attack: str | None, scenario: str, eps: float | None) -> Value:
        """Mean accuracy (percent) over the seeds found; interval and counts pooled over them."""
        key_attack, key_eps = (None, 0.0) if scenario == "clean" else (attack, round(float(eps or 0.0), 12))
        if key_attack == WORST or (key_attack is not None and "@" in key_attack):
            return self._combined(dataset, defense, key_attack, scenario, key_eps)
        ids = [self.index[k] for seed in self.seeds
               if (k := (dataset, defense, seed, key_attack, scenario, key_eps)) in self.index]
        found = [self.cells[i] for i in ids if i in self.cells]
        if not found:
            return Value(None, cells=ids)
        return self._value([(c["correct"], c["n"]) for c in found], [c["cell_id"] for c in found])

    def _value(self, counts: list[tuple[int, int]], cell_ids: list[str]) -> Value:
        n = sum(k for _, k in counts)
        correct = sum(c for c, _ in counts)
        lo, hi = wilson_interval(correct, n)
        mean = 100.0 * sum(c / k if k else float("nan") for c, k in counts) / len(counts)
        flags = [f for cid in dict.fromkeys(cell_ids) for f in self.flags.get(cid, [])]
        return Value(mean, n, correct, len(counts), (100 * lo, 100 * hi), cells=cell_ids, flags=flags)

    def robust(self, dataset: str, defense: str, seed: int, attack: str | None, scenario: str,
               eps: float | None) -> tuple[np.ndarray | None, list[str]]:
        """Per-clip correctness (bool ``[n]``) of one seed's model, and the cells it comes from.

        ``attack`` as in :meth:`value`: an attack id, :data:`~robench.protocol.layout.WORST` (a clip is
        robust only if no attack of the run fooled it) or ``"<attack id>@<stage>"``; None for clean.
        ``(None, ids)`` if nothing is stored yet.
        """
        key_eps = 0.0 if scenario == "clean" else round(float(eps or 0.0), 12)
        if scenario == "clean" or (attack != WORST and (attack is None or "@" not in attack)):
            cid = self.index.get((dataset, defense, seed, None if scenario == "clean" else attack, scenario, key_eps))
            if cid is None or cid not in self.cells:
                return None, [cid] if cid else []
            return unpack_bits(self.cells[cid]["per_sample"], self.cells[cid]["n"]), [cid]
        if attack == WORST:
            ids = [i for i in self.attacked.get((dataset, defense, seed, scenario, key_eps), []) if i in self.cells]
            arrays = [unpack_bits(self.cells[i]["per_sample"], self.cells[i]["n"]) for i in ids]
        else:
            base, stage = attack.split("@", 1)
            cid = self.index.get((dataset, defense, seed, base, scenario, key_eps))
            if cid is None or cid not in self.cells:
                return None, []
            raw = self.cells[cid].get("details")
            if raw is None or stage not in (details := CellDetails.from_json(json.loads(raw))).stages:
                return None, []
            ids, arrays = [cid], [details.correct_after(stage)]
        present = [a for a in arrays if a is not None]
        if not present:
            return None, ids
        if len({a.shape for a in present}) != 1:
            raise RobenchError(f"worst case of {defense} on {dataset}, {scenario}: the attacks evaluated different "
                               "numbers of clips, so their per-clip results cannot be combined")
        return np.logical_and.reduce(present), ids

    def _combined(self, dataset: str, defense: str, attack: str, scenario: str, eps: float) -> Value:
        """The worst case over the run's attacks, or an ensemble's accuracy after one stage."""
        counts: list[tuple[int, int]] = []
        used: list[str] = []
        for seed in self.seeds:
            robust, ids = self.robust(dataset, defense, seed, attack, scenario, eps)
            if robust is None:
                continue
            counts.append((int(robust.sum()), int(robust.size)))
            used += ids
        if not counts:
            return Value(None, cells=used)
        return self._value(counts, used)


def _accuracy_block(layout: RunLayout, spec: TableSpec, vid: str, idx: CellIndex) -> Block:
    v = layout.variants[vid]
    reference = spec.reference.get(vid, {})
    rows = []
    for r in spec.rows:
        attack = r.attack or spec.attack
        own = {s: idx.value(vid, r.defense, attack, s, spec.eps) for s in SCENARIOS}
        values: dict[str, Value] = {}
        for col in spec.columns:
            if col.kind == "scenario":
                assert col.scenario is not None
                values[col.id] = own[col.scenario] if col.defense is None else idx.value(
                    vid, col.defense, attack, col.scenario, spec.eps)
        rs = [own[s].value for s in ATTACKED_SCENARIOS]
        row_avg = avg(*rs) if all(x is not None for x in rs) else None  # type: ignore[arg-type]
        values["Avg"] = Value(row_avg, cells=[c for s in ATTACKED_SCENARIOS for c in own[s].cells],
                              flags=[f for s in ATTACKED_SCENARIOS for f in own[s].flags])
        values["__clean"] = own["clean"]
        rows.append(Row(r.id, r.label, r.defense, v.defenses[r.defense].type, values,
                        baseline=(r.id == spec.baseline)))
    base = next((row for row in rows if row.baseline), None)
    for row in rows:
        parts = (row.values["__clean"].value, row.values["Avg"].value,
                 base.values["__clean"].value if base else None, base.values["Avg"].value if base else None)
        ri = relative_improvement(*parts) if all(x is not None for x in parts) else None  # type: ignore[arg-type]
        row.values["RI"] = Value(ri, cells=row.values["Avg"].cells + (base.values["Avg"].cells if base else []))
    col_ids = [c.id for c in spec.columns]
    for row in rows:
        del row.values["__clean"]
        row.values = {c: row.values[c] for c in col_ids}
        for j, c in enumerate(col_ids):
            printed = reference.get(row.id)
            if printed is not None:
                row.values[c].paper = printed[j]
    block = Block(vid, v.label, rows, has_reference=bool(reference))
    for c in col_ids if spec.bold else ():
        shown = [(i, round(val, 2)) for i, row in enumerate(rows) if (val := row.values[c].value) is not None]
        if shown:
            top = max(x for _, x in shown)
            block.best[c] = {i for i, x in shown if x == top}
    return block


def defense_class(layout: RunLayout, defense_type: str) -> Any:
    """The registered class of ``defense_type``, importing the run's plugin files if it is not registered.

    A plugin file is imported only while its content is the one the run recorded (SHA-256): the
    store names code, it never makes robench run code that its run did not run.
    """
    try:
        return DEFENSES.get(defense_type)
    except UnknownNameError:
        for path, digest in layout.plugins.items():
            current = file_digest(path) if Path(path).is_file() else "(missing)"
            if current != digest:
                raise RobenchError(
                    f"protocol '{layout.name}': defense '{defense_type}' comes from the plugin file {path}, which "
                    f"{'is missing' if current == '(missing)' else 'has changed since the run'}; robench imports a "
                    "plugin file for a report only with the content the run recorded: run the protocol again "
                    "(stored cells are reused where nothing changed)") from None
            try:
                load_plugin_file(path)
            except RobenchError as exc:
                raise RobenchError(f"protocol '{layout.name}': defense '{defense_type}' is not registered and the "
                                   f"run's plugin file cannot be imported: {exc}") from None
        try:
            return DEFENSES.get(defense_type)
        except UnknownNameError as exc:
            raise RobenchError(f"protocol '{layout.name}': cannot render what defense '{defense_type}' contributes: "
                               f"{exc} (plugin files of the run: {', '.join(layout.plugins) or 'none'})") from None


def _summary_block(layout: RunLayout, spec: TableSpec, vid: str, models: dict[str, dict[str, Any]]
                   ) -> tuple[Block, list[str], int]:
    """One dataset's block of a contributed table, its column ids and its decimals."""
    v = layout.variants[vid]
    assert spec.defense is not None
    ref = v.defenses[spec.defense]
    cls = defense_class(layout, ref.type)
    summaries = [models[m]["summary"] for m in layout.model_ids(vid, spec.defense) if m in models]
    table = cls.summary_table(spec.kind, full_params(cls, ref.params), summaries)
    reference = spec.reference.get(vid, {})
    rows = []
    for r in table.rows:
        paper = reference.get(r.id, [])
        values = {}
        for j, c in enumerate(table.columns):
            x = r.values.get(c)
            values[c] = Value(x, seeds=len(summaries) if x is not None else 0,
                              paper=paper[j] if j < len(paper) else None)
        rows.append(Row(r.id, r.label, spec.defense, ref.type, values))
    return Block(vid, v.label, rows, has_reference=bool(reference)), list(table.columns), table.digits


def build_table(layout: RunLayout, spec: TableSpec, cells: dict[str, dict[str, Any]],
                models: dict[str, dict[str, Any]] | None = None, flags: dict[str, list[Flag]] | None = None) -> Table:
    """One table of a protocol run, from its layout, the stored cells and (contributed tables) model records.

    ``flags`` are the run's sanity flags (:func:`~robench.report.flags.run_flags`), computed here if not given;
    pass them when building several tables of one run.
    """
    if spec.kind != "accuracy":
        built = [_summary_block(layout, spec, vid, models or {}) for vid in spec.datasets]
        col_ids: list[str] = []
        for _, cols, _ in built:  # datasets may have different columns (AMR counts): their union, padded
            col_ids += [c for c in cols if c not in col_ids]
        blocks = [b for b, _, _ in built]
        for b in blocks:
            for r in b.rows:
                r.values = {c: r.values.get(c, Value(None)) for c in col_ids}
        digits = max((d for _, _, d in built), default=2)
        return Table(layout.name, spec.id, spec.title, spec.kind, [(c, c) for c in col_ids], blocks, list(spec.notes),
                     digits, spec.row_header)
    idx = CellIndex(layout, cells, run_flags(layout, cells) if flags is None else flags)
    blocks = [_accuracy_block(layout, spec, vid, idx) for vid in spec.datasets]
    columns = [(c.id, c.label) for c in spec.columns]
    notes = list(spec.notes) + [n for b in blocks if (n := threat_note(b, spec.eps, cells))]
    notes += flag_notes(blocks, dict(columns))
    return Table(layout.name, spec.id, spec.title, "accuracy", columns, blocks, notes, row_header=spec.row_header)


def flag_notes(blocks: list[Block], labels: dict[str, str]) -> list[str]:
    """One note per flagged row and flag: which columns it marks unreliable, what was seen, where to read more."""
    notes = []
    for b in blocks:
        for r in b.rows:
            seen: dict[str, tuple[Flag, list[str]]] = {}
            for c, v in r.values.items():
                for f in v.flags:
                    entry = seen.setdefault(f.code, (f, []))
                    if labels.get(c, c) not in entry[1]:
                        entry[1].append(labels.get(c, c))
            for code, (f, cols) in seen.items():
                notes.append(f"⚠ unreliable: {r.label} ({b.label}), {', '.join(cols)}: {f.title} ({f.message}); "
                             f"see docs/flags.md#{code}")
    return notes


def threat_note(block: Block, eps: float | None, cells: dict[str, dict[str, Any]]) -> str:
    """What the table's eps is in each modality's own units, read from the attacks its stored cells ran:
    RGB in grey levels of 255 (pixels on [0, 1]), the skeleton in its coordinates' unit (metres for NTU
    RGB+D and the synthetic data), after the protocol's ``threat.<modality>.scale``. Empty if no attacked
    cell of the block is stored."""
    stored = {cid for row in block.rows for value in row.values.values() for cid in value.cells if cid in cells}
    radii: dict[str, set[float]] = {}
    for cid in stored:  # each cell once: Avg and RI rest on the scenario columns' cells again
        attack = json.loads(cells[cid]["spec"]).get("attack") or {}
        for m, r in dict(attack.get("params", {}).get("eps", {})).items():
            radii.setdefault(str(m), set()).add(round(float(r), 10))
    if not radii or eps is None:
        return ""
    parts = []
    if "rgb" in radii:
        parts.append("RGB " + " / ".join(f"{255 * r:.3g} grey levels of 255" for r in sorted(radii["rgb"])))
    if "skeleton" in radii:
        parts.append("skeleton " + " / ".join(f"{r:.4g} ({100 * r:.3g} cm if metres)"
                                              for r in sorted(radii["skeleton"])))
    return f"Threat model ({block.label}): eps {255 * eps:.3g}/255 is " + "; ".join(parts) + \
        " in the units the data stores (skeleton coordinates in metres for NTU RGB+D and the synthetic data)."


def select_runs(store: ResultsStore, protocols: list[str] | None = None) -> dict[str, RunLayout]:
    """The layout of the latest run of each protocol in the store (or of the ``protocols`` named)."""
    runs = store.latest_runs()
    names = list(runs) if not protocols else protocols
    missing = [n for n in names if n not in runs]
    if missing:
        raise RobenchError(f"no run of protocol(s) {', '.join(missing)} in {store.location}; "
                           f"protocols in the store: {', '.join(runs) or '(none)'}")
    out: dict[str, RunLayout] = {}
    old: list[LayoutFormatError] = []
    for n in names:
        try:
            out[n] = RunLayout.from_json(runs[n]["layout"])
        except LayoutFormatError as exc:
            old.append(exc)
    if old:
        raise RobenchError(f"the run(s) of {', '.join(e.name for e in old)} in {store.location} were recorded by "
                           f"another robench version (run layout format {old[0].found}, this version reads "
                           f"{LAYOUT_FORMAT}); run the same protocol(s) again to "
                           "re-record them: stored cells are reused")
    return out


def build_tables(store: ResultsStore, protocols: list[str] | None = None) -> list[Table]:
    """Tables of the latest run of each protocol in the store (or of the ``protocols`` named)."""
    models = store.models()
    tables: list[Table] = []
    for layout in select_runs(store, protocols).values():
        cells = store.cells(layout.cell_ids())
        flags = run_flags(layout, cells)
        tables.extend(build_table(layout, spec, cells, models, flags) for spec in layout.tables)
    return tables
