"""Assembling the paper's tables from the results store.

A table has one block per dataset; rows are defenses, columns the scenarios (clean, XR, XS, XRS),
Avg and RI, all in percent. Values come from the cells the protocol's run recorded in the store's
``runs.layout``; with several seeds a value is the mean accuracy over the seeds found. Avg and RI
are computed from unrounded accuracies (paper Eq. 13-14); RI is relative to the table's baseline
row in the same block.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from robench.report.metrics import avg, relative_improvement, wilson_interval
from robench.store import ResultsStore

COLUMN_LABELS = {"clean": "Clean", "R": "XR", "S": "XS", "RS": "XRS", "Avg": "Avg", "RI": "RI"}
SCENARIO_COLUMNS = ("clean", "R", "S", "RS")


@dataclass
class Value:
    """One table entry (percent) with what it rests on."""

    value: float | None
    n: int = 0
    correct: int = 0
    seeds: int = 0
    ci: tuple[float, float] | None = None  # 95% Wilson interval, percent (accuracy columns only)

    @property
    def missing(self) -> bool:
        return self.value is None


@dataclass
class Row:
    defense: str
    label: str
    values: dict[str, Value]
    baseline: bool = False


@dataclass
class Block:
    dataset: str
    label: str
    rows: list[Row]
    best: dict[str, set[int]] = field(default_factory=dict)  # column -> indices of best rows


@dataclass
class Table:
    protocol: str
    id: str
    title: str
    attack: str
    eps: float
    columns: list[str]
    blocks: list[Block]

    @property
    def column_labels(self) -> list[str]:
        return [COLUMN_LABELS[c] for c in self.columns]

    @property
    def complete(self) -> bool:
        return all(not v.missing for b in self.blocks for r in b.rows for v in r.values.values())


def _scenario_value(cells: dict[str, dict[str, Any]], ids: list[str]) -> Value:
    found = [cells[i] for i in ids if i in cells]
    if not found:
        return Value(None)
    n = sum(c["n"] for c in found)
    correct = sum(c["correct"] for c in found)
    mean = 100.0 * sum(c["accuracy"] for c in found) / len(found)
    lo, hi = wilson_interval(correct, n)
    return Value(mean, n, correct, len(found), (100 * lo, 100 * hi))


def build_table(layout: dict[str, Any], spec: dict[str, Any], cells: dict[str, dict[str, Any]]) -> Table:
    """One table of a protocol run, from its layout and the stored cells."""
    index: dict[tuple[Any, ...], str] = {tuple(k[:6]): k[6] for k in layout["cells"]}
    blocks = []
    for vid in spec["datasets"]:
        v = layout["variants"][vid]
        rows = []
        for did in spec["rows"]:
            values: dict[str, Value] = {}
            for col in SCENARIO_COLUMNS:
                attack, eps = (None, 0.0) if col == "clean" else (spec["attack"], round(spec["eps"], 12))
                ids = [index[k] for seed in layout["seeds"]
                       if (k := (vid, did, seed, attack, col, eps)) in index]
                values[col] = _scenario_value(cells, ids)
            rs = [values[c].value for c in ("R", "S", "RS")]
            values["Avg"] = Value(avg(*rs) if all(x is not None for x in rs) else None)  # type: ignore[arg-type]
            rows.append(Row(did, v["defenses"][did], values, baseline=(did == spec.get("baseline"))))
        base = next((r for r in rows if r.baseline), None)
        for r in rows:
            ok = base is not None and all(x.value is not None for x in (r.values["clean"], r.values["Avg"],
                                                                         base.values["clean"], base.values["Avg"]))
            r.values["RI"] = Value(relative_improvement(r.values["clean"].value, r.values["Avg"].value,  # type: ignore[arg-type]
                                                        base.values["clean"].value, base.values["Avg"].value)  # type: ignore[union-attr]
                                   if ok else None)
        block = Block(vid, v["label"], rows)
        for col in spec["columns"]:
            shown = [(i, round(r.values[col].value, 2)) for i, r in enumerate(rows) if r.values[col].value is not None]
            if shown:
                top = max(x for _, x in shown)
                block.best[col] = {i for i, x in shown if x == top}
        blocks.append(block)
    return Table(layout["name"], spec["id"], spec["title"], spec["attack"], spec["eps"], list(spec["columns"]), blocks)


def build_tables(store: ResultsStore, protocols: list[str] | None = None) -> list[Table]:
    """Tables of the latest run of each protocol in the store (or of the ``protocols`` named)."""
    runs = store.latest_runs()
    names = list(runs) if not protocols else protocols
    missing = [n for n in names if n not in runs]
    if missing:
        from robench.errors import RobenchError

        raise RobenchError(f"no run of protocol(s) {', '.join(missing)} in {store.path}; "
                           f"protocols in the store: {', '.join(runs) or '(none)'}")
    tables = []
    for name in names:
        layout = runs[name]["layout"]
        ids = {k[6] for k in layout["cells"]}
        cells = store.cells(ids)
        tables.extend(build_table(layout, spec, cells) for spec in layout["tables"])
    return tables
