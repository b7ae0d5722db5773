"""Assembling the paper's tables from the results store.

An accuracy table has one block per dataset; each row is a model under an attack, each column a
scenario accuracy, Avg or RI (in percent), or a scenario of another fixed model (Table 1's
unimodal columns). Values come from the cells the protocol's run recorded in the store's
``runs.layout``; with several seeds a value is the mean accuracy over the seeds found. Avg and RI
are computed from unrounded accuracies (paper Eq. 13-14); RI is relative to the table's baseline
row in the same block. Where the protocol carries the paper's printed values, every entry has the
paper's value and the difference.

An ``amr_weights`` table (the paper's Table 3) lists the mean AMR weight per modality per AMR of
one trained model, read from the model's stored summary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from robench.errors import RobenchError
from robench.report.metrics import avg, relative_improvement, wilson_interval
from robench.store import ResultsStore

SCENARIOS = ("clean", "R", "S", "RS")


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

    @property
    def column_ids(self) -> list[str]:
        return [c for c, _ in self.columns]

    @property
    def column_labels(self) -> list[str]:
        return [label for _, label in self.columns]

    @property
    def complete(self) -> bool:
        return all(not v.missing for b in self.blocks for r in b.rows for v in r.values.values())

    @property
    def has_reference(self) -> bool:
        return any(b.has_reference for b in self.blocks)


class CellIndex:
    """Looks up stored cells by (dataset, defense, attack, scenario, eps) over a run's seeds."""

    def __init__(self, layout: dict[str, Any], cells: dict[str, dict[str, Any]]) -> None:
        self.seeds = layout["seeds"]
        self.index: dict[tuple[Any, ...], str] = {tuple(k[:6]): k[6] for k in layout["cells"]}
        self.cells = cells

    def value(self, dataset: str, defense: str, attack: str | None, scenario: str, eps: float | None) -> Value:
        key_attack, key_eps = (None, 0.0) if scenario == "clean" else (attack, round(float(eps or 0.0), 12))
        ids = [self.index[k] for seed in self.seeds
               if (k := (dataset, defense, seed, key_attack, scenario, key_eps)) in self.index]
        found = [self.cells[i] for i in ids if i in self.cells]
        if not found:
            return Value(None, cells=ids)
        n = sum(c["n"] for c in found)
        correct = sum(c["correct"] for c in found)
        lo, hi = wilson_interval(correct, n)
        mean = 100.0 * sum(c["accuracy"] for c in found) / len(found)
        return Value(mean, n, correct, len(found), (100 * lo, 100 * hi), cells=[c["cell_id"] for c in found])


def _accuracy_block(layout: dict[str, Any], spec: dict[str, Any], vid: str, idx: CellIndex) -> Block:
    v = layout["variants"][vid]
    reference = spec.get("reference", {}).get(vid, {})
    rows = []
    for r in spec["rows"]:
        attack = r["attack"] or spec["attack"]
        own = {s: idx.value(vid, r["defense"], attack, s, spec["eps"]) for s in SCENARIOS}
        values: dict[str, Value] = {}
        for col in spec["columns"]:
            if col["kind"] == "scenario":
                values[col["id"]] = own[col["scenario"]] if col["defense"] is None else idx.value(
                    vid, col["defense"], attack, col["scenario"], spec["eps"])
        rs = [own[s].value for s in ("R", "S", "RS")]
        row_avg = avg(*rs) if all(x is not None for x in rs) else None  # type: ignore[arg-type]
        values["Avg"] = Value(row_avg, cells=[c for s in ("R", "S", "RS") for c in own[s].cells])
        values["__clean"] = own["clean"]
        rows.append(Row(r["id"], r["label"], r["defense"], v["defense_types"][r["defense"]], values,
                        baseline=(r["id"] == spec.get("baseline"))))
    base = next((row for row in rows if row.baseline), None)
    for row in rows:
        parts = (row.values["__clean"].value, row.values["Avg"].value,
                 base.values["__clean"].value if base else None, base.values["Avg"].value if base else None)
        ri = relative_improvement(*parts) if all(x is not None for x in parts) else None  # type: ignore[arg-type]
        row.values["RI"] = Value(ri, cells=row.values["Avg"].cells + (base.values["Avg"].cells if base else []))
    col_ids = [c["id"] for c in spec["columns"]]
    for row in rows:
        del row.values["__clean"]
        row.values = {c: row.values[c] for c in col_ids}
        for j, c in enumerate(col_ids):
            printed = reference.get(row.id)
            if printed is not None:
                row.values[c].paper = printed[j]
    block = Block(vid, v["label"], rows, has_reference=bool(reference))
    for c in col_ids if spec.get("bold", True) else ():
        shown = [(i, round(row.values[c].value, 2)) for i, row in enumerate(rows) if row.values[c].value is not None]
        if shown:
            top = max(x for _, x in shown)
            block.best[c] = {i for i, x in shown if x == top}
    return block


def _amr_block(layout: dict[str, Any], spec: dict[str, Any], vid: str, models: dict[str, dict[str, Any]]) -> Block:
    v = layout["variants"][vid]
    model_ids = [k[3] for k in layout["models"] if k[0] == vid and k[1] == spec["defense"]]
    summaries = [models[m]["summary"].get("amr", []) for m in model_ids if m in models]
    count = int(v["defense_params"][spec["defense"]].get("count", 3))
    reference = spec.get("reference", {}).get(vid, {})
    rows = []
    for modality, label in (("rgb", "Mean value of W_R"), ("skeleton", "Mean value of W_S")):
        values = {}
        for i in range(count):
            found = [s[i][f"mean_{modality}"] for s in summaries if len(s) > i]
            paper = reference.get(modality, [None] * count)
            values[f"AMR {i + 1}"] = Value(sum(found) / len(found) if found else None, seeds=len(found),
                                           paper=paper[i] if i < len(paper) else None)
        rows.append(Row(modality, label, spec["defense"], "amr", values))
    return Block(vid, v["label"], rows, has_reference=bool(reference))


def build_table(layout: dict[str, Any], spec: dict[str, Any], cells: dict[str, dict[str, Any]],
                models: dict[str, dict[str, Any]] | None = None) -> Table:
    """One table of a protocol run, from its layout, the stored cells and (AMR tables) model records."""
    if spec.get("kind", "accuracy") == "amr_weights":
        blocks = [_amr_block(layout, spec, vid, models or {}) for vid in spec["datasets"]]
        count = max((len(b.rows[0].values) for b in blocks), default=0)
        columns = [(f"AMR {i + 1}", f"AMR {i + 1}") for i in range(count)]
        for b in blocks:  # datasets may use different counts: pad
            for r in b.rows:
                r.values = {c: r.values.get(c, Value(None)) for c, _ in columns}
        return Table(layout["name"], spec["id"], spec["title"], "amr_weights", columns, blocks, spec.get("notes", []), 4,
                     spec.get("row_header", ""))
    idx = CellIndex(layout, cells)
    blocks = [_accuracy_block(layout, spec, vid, idx) for vid in spec["datasets"]]
    columns = [(c["id"], c["label"]) for c in spec["columns"]]
    return Table(layout["name"], spec["id"], spec["title"], "accuracy", columns, blocks, spec.get("notes", []),
                 row_header=spec.get("row_header", "Defense"))


def select_runs(store: ResultsStore, protocols: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """The latest run of each protocol in the store (or of the ``protocols`` named)."""
    runs = store.latest_runs()
    names = list(runs) if not protocols else protocols
    missing = [n for n in names if n not in runs]
    if missing:
        raise RobenchError(f"no run of protocol(s) {', '.join(missing)} in {store.path}; "
                           f"protocols in the store: {', '.join(runs) or '(none)'}")
    from robench.runner import LAYOUT_FORMAT

    old = [n for n in names if runs[n]["layout"].get("format", 1) != LAYOUT_FORMAT]
    if old:
        raise RobenchError(f"the run(s) of {', '.join(old)} in {store.path} were recorded by another robench version "
                           f"(report layout {runs[old[0]]['layout'].get('format', 1)}, this version reads "
                           f"{LAYOUT_FORMAT}); run the same protocol again to re-record it: stored cells are reused")
    return {n: runs[n] for n in names}


def build_tables(store: ResultsStore, protocols: list[str] | None = None) -> list[Table]:
    """Tables of the latest run of each protocol in the store (or of the ``protocols`` named)."""
    runs = select_runs(store, protocols)
    models = store.models()
    tables = []
    for run in runs.values():
        layout = run["layout"]
        cells = store.cells({k[6] for k in layout["cells"]})
        tables.extend(build_table(layout, spec, cells, models) for spec in layout["tables"])
    return tables
