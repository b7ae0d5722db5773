"""Corruption tables: accuracy under each corruption, the mean over corruptions, and mCE.

For each dataset of a run with a corruption suite (:mod:`robench.protocol.corruptions`), two tables,
one row per defense:

* **by corruption**: the accuracy (percent) under each corruption, averaged over its severities;
* **summary**: clean accuracy, the mean accuracy per family of corruptions, the mean over every
  corruption (mean corruption accuracy), the mCE and the relative mCE.

The corruption error follows Hendrycks & Dietterich (2019, ImageNet-C): with E the error rate (100 minus
the accuracy) of a model f at severity s of corruption c, ``CE_c = sum_s E_f(s, c) / sum_s E_base(s, c)``
and the relative ``rCE_c = sum_s (E_f(s, c) - E_f(clean)) / sum_s (E_base(s, c) - E_base(clean))``, both
against the suite's baseline row; mCE and relative mCE are their means over corruptions, in percent (the
baseline scores 100). A corruption that costs the baseline nothing (a zero denominator) is left out of
the relative mean, and the table's note says which. A corruption with a single level (a missing input)
is evaluated once and counts at every severity. With several seeds every accuracy is the mean over
the seeds' models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from robench.report.tables import Block, Row, Table, Value
from robench.run_layout import RunLayout, SuiteLayout


@dataclass(frozen=True)
class _Accuracies:
    """Mean accuracies (percent, over seeds) of one dataset's rows: clean, and per (corruption, severity)."""

    clean: dict[str, float | None]
    corrupted: dict[tuple[str, str, int], float | None]  # (defense, corruption id, severity)


def _mean_accuracy(ids: list[str], cells: dict[str, dict[str, Any]]) -> float | None:
    found = [cells[i] for i in ids if i in cells and cells[i]["n"]]
    return 100.0 * float(np.mean([c["correct"] / c["n"] for c in found])) if found else None


def _accuracies(layout: RunLayout, vid: str, cells: dict[str, dict[str, Any]]) -> _Accuracies:
    clean: dict[str, list[str]] = {}
    for c in layout.cells:
        if c.variant == vid and c.attack is None and c.scenario == "clean":
            clean.setdefault(c.defense, []).append(c.cell_id)
    corrupted: dict[tuple[str, str, int], list[str]] = {}
    suite = layout.variants[vid].corruptions
    for r in layout.corruption_cells:
        if r.variant == vid:
            info = suite.corruptions.get(r.corruption) if suite is not None else None
            # a corruption with one level was evaluated once: that cell stands for every severity
            severities = suite.severities if suite is not None and info is not None and not info.graded \
                else [r.severity]
            for s in severities:
                corrupted.setdefault((r.defense, r.corruption, s), []).append(r.cell_id)
    return _Accuracies({d: _mean_accuracy(ids, cells) for d, ids in clean.items()},
                       {k: _mean_accuracy(ids, cells) for k, ids in corrupted.items()})


def _mean(values: list[float | None]) -> float | None:
    return float(np.mean(values)) if values and all(v is not None for v in values) else None  # type: ignore[arg-type]


def corruption_tables(layout: RunLayout, cells: dict[str, dict[str, Any]]) -> list[Table]:
    """The corruption tables of a run (none if it has no corruption suite)."""
    tables = []
    for vid, v in layout.variants.items():
        suite = v.corruptions
        if suite is None:
            continue
        acc = _accuracies(layout, vid, cells)
        rows = [d for d in v.defenses if any(k[0] == d for k in acc.corrupted)]
        if not rows:
            continue
        by_corruption = {(d, cid): _mean([acc.corrupted.get((d, cid, s)) for s in suite.severities])
                         for d in rows for cid in suite.corruptions}
        tables.append(_by_corruption_table(layout, vid, suite, rows, by_corruption))
        tables.append(_summary_table(layout, vid, suite, rows, acc, by_corruption))
    return tables


def _by_corruption_table(layout: RunLayout, vid: str, suite: SuiteLayout, rows: list[str],
                         by_corruption: dict[tuple[str, str], float | None]) -> Table:
    v = layout.variants[vid]
    columns = [(cid, info.label) for cid, info in suite.corruptions.items() if any(
        (d, cid) in by_corruption for d in rows)]
    block = Block(vid, v.label, [
        Row(d, v.defenses[d].label, d, v.defenses[d].type,
            {cid: Value(by_corruption.get((d, cid))) for cid, _ in columns}, baseline=d == suite.baseline)
        for d in rows])
    severities = ", ".join(map(str, suite.severities))
    return Table(layout.name, f"corruptions-{vid}", f"Accuracy (%) under each corruption, mean over severities "
                 f"{severities} ({v.label})", "corruptions", columns, [block], [])


def _summary_table(layout: RunLayout, vid: str, suite: SuiteLayout, rows: list[str], acc: _Accuracies,
                   by_corruption: dict[tuple[str, str], float | None]) -> Table:
    v = layout.variants[vid]
    families = list(dict.fromkeys(info.family for info in suite.corruptions.values()))
    present = [cid for cid in suite.corruptions if all((d, cid) in by_corruption for d in rows)]
    base = suite.baseline
    skipped: list[str] = []

    def errors(d: str, cid: str) -> list[float] | None:
        values = [acc.corrupted.get((d, cid, s)) for s in suite.severities]
        return None if any(x is None for x in values) else [100.0 - x for x in values if x is not None]

    def ce(d: str, relative: bool) -> float | None:
        ratios = []
        for cid in present:
            e_f, e_b = errors(d, cid), errors(base, cid)
            clean_f, clean_b = acc.clean.get(d), acc.clean.get(base)
            if e_f is None or e_b is None:
                return None
            if relative:
                if clean_f is None or clean_b is None:
                    return None
                num = sum(e - (100.0 - clean_f) for e in e_f)
                den = sum(e - (100.0 - clean_b) for e in e_b)
            else:
                num, den = sum(e_f), sum(e_b)
            if den <= 0:
                if relative and cid not in skipped:
                    skipped.append(cid)
                continue
            ratios.append(100.0 * num / den)
        return float(np.mean(ratios)) if ratios else None

    columns = [("clean", "Clean"), *[(f"family:{f}", f.capitalize()) for f in families],
               ("mean", "Mean"), ("mce", "mCE"), ("rmce", "Rel. mCE")]
    out_rows = []
    for d in rows:
        values = {"clean": Value(acc.clean.get(d))}
        for f in families:
            values[f"family:{f}"] = Value(_mean([by_corruption.get((d, cid)) for cid, info in
                                                 suite.corruptions.items() if info.family == f]))
        values["mean"] = Value(_mean([by_corruption.get((d, cid)) for cid in suite.corruptions]))
        values["mce"] = Value(ce(d, relative=False))
        values["rmce"] = Value(ce(d, relative=True))
        out_rows.append(Row(d, v.defenses[d].label, d, v.defenses[d].type, values, baseline=d == base))
    notes = [f"mCE and relative mCE in percent of the baseline row ({v.defenses[base].label}, = 100); lower is "
             "better. Family columns and Mean: accuracy (%), averaged over each corruption's severities."]
    if skipped:
        labels = ", ".join(suite.corruptions[c].label for c in skipped)
        notes.append(f"Left out of the relative mCE: {labels} (they cost the baseline no accuracy over its clean "
                     "accuracy, so the ratio has no denominator).")
    return Table(layout.name, f"corruption-summary-{vid}", f"Robustness to corruptions: clean, per family, mean, "
                 f"mCE ({v.label})", "corruptions", columns, [Block(vid, v.label, out_rows)], notes)
