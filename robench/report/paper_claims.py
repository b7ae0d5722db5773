"""The paper's qualitative claims, checked on measured tables.

These checks are the paper's (Liu et al., IJCB 2024), not robench's: each compares the rows the
protocol names for the claim's roles (``claims: - {id, table, rows: {ROLE: row ids}}``, roles in
:data:`robench.protocol.layout.CLAIM_ROLES`), so that no check knows any defense by name.

Each check takes a built :class:`~robench.report.tables.Table`, the run's layout and the claim's
spec and returns the outcomes of its comparisons (True, False, or None where a value is missing),
one line per comparison group saying what was compared, and the entries the verdict rests on; a
:class:`ClaimResult` carries the verdict ("reproduced", "partly", "not reproduced" or "no data").
Accuracies are in percent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise

from robench.protocol.layout import CLAIMS, ClaimSpec
from robench.report.tables import Block, Row, Table
from robench.run_layout import RunLayout

#: what a check returns: outcomes (None = a value is missing), details, evidence
Outcome = tuple[list[bool | None], list[str], list[str]]


@dataclass
class ClaimResult:
    """The verdict on one claim of one protocol run, with what it rests on."""

    id: str
    text: str
    protocol: str
    table: str
    verdict: str
    details: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)  # "dataset / row / column = value"


def _v(row: Row, col: str) -> float | None:
    value = row.values.get(col)
    return None if value is None else value.value


def _evidence(block: Block, row: Row, col: str) -> str:
    value = _v(row, col)
    return f"{block.label} / {row.label} / {col} = {'–' if value is None else f'{value:.2f}'}"


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def _verdict(outcomes: list[bool | None]) -> str:
    known = [o for o in outcomes if o is not None]
    if not known:
        return "no data"
    if all(known):
        return "reproduced" if len(known) == len(outcomes) else "partly"
    return "not reproduced" if not any(known) else "partly"


def _rows(block: Block, claim: ClaimSpec, role: str) -> list[int]:
    """Indices (in table order) of the block's rows the claim names for ``role``."""
    ids = set(claim.rows.get(role, []))
    return [i for i, r in enumerate(block.rows) if r.id in ids]


def skeleton_more_robust(table: Table, layout: RunLayout, claim: ClaimSpec) -> Outcome:
    """Undefended rows (role ``undefended``): XS > XR (attacking the skeleton costs less than attacking RGB)."""
    outcomes: list[bool | None] = []
    details: list[str] = []
    evidence: list[str] = []
    for b in table.blocks:
        for i in _rows(b, claim, "undefended"):
            row = b.rows[i]
            r, s = _v(row, "R"), _v(row, "S")
            outcomes.append(None if r is None or s is None else s > r)
            details.append(f"{b.label}, {row.label}: XS {_fmt(s)} vs XR {_fmt(r)}")
            evidence += [_evidence(b, row, "R"), _evidence(b, row, "S")]
    return outcomes, details, evidence


def fusion_not_more_robust(table: Table, layout: RunLayout, claim: ClaimSpec) -> Outcome:
    """With one modality attacked, the fused model is below the clean unimodal model of the other one.

    The unimodal models are the table's custom columns whose model has a single branch.
    """
    outcomes: list[bool | None] = []
    details: list[str] = []
    evidence: list[str] = []
    spec = layout.table(table.id)
    for b in table.blocks:
        defenses = layout.variants[b.dataset].defenses
        uni = {tuple(defenses[c.defense].modalities): c.id for c in spec.columns if c.defense}
        uni_r, uni_s = uni.get(("rgb",)), uni.get(("skeleton",))
        for row in b.rows:
            for attacked, other in (("R", uni_s), ("S", uni_r)):
                if other is None:
                    continue
                fused, alone = _v(row, attacked), _v(row, other)
                outcomes.append(None if fused is None or alone is None else fused < alone)
                details.append(f"{b.label}, {row.label}: X{attacked} {_fmt(fused)} vs unimodal clean {_fmt(alone)}")
                evidence += [_evidence(b, row, attacked), _evidence(b, row, other)]
    return outcomes, details, evidence


def amr_best(table: Table, layout: RunLayout, claim: ClaimSpec) -> Outcome:
    """A row of role ``proposed`` is best (ties included) on XRS, Avg and RI in every block."""
    outcomes: list[bool | None] = []
    details: list[str] = []
    evidence: list[str] = []
    for b in table.blocks:
        proposed = _rows(b, claim, "proposed")
        for col in ("RS", "Avg", "RI"):
            if col not in table.column_ids or not proposed:
                continue
            best = b.best.get(col, set())
            outcomes.append(None if not best else any(i in best for i in proposed))
            winners = ", ".join(b.rows[i].label for i in sorted(best)) or "–"
            details.append(f"{b.label}, {'XRS' if col == 'RS' else col}: best {winners}")
            evidence += [_evidence(b, b.rows[i], col) for i in sorted(set(proposed) | best)]
    return outcomes, details, evidence


def more_amrs_help_larger(table: Table, layout: RunLayout, claim: ClaimSpec) -> Outcome:
    """On the dataset with the most training clips, RI does not fall as AMRs are added.

    Rows of the ranked role ``by_count``: number of AMRs -> row (0 AMR = adversarial training).
    """
    if not table.blocks:
        return [], [], []
    larger = max(table.blocks, key=lambda b: layout.variants[b.dataset].train_clips())
    by_id = {r.id: r for r in larger.rows}
    steps = [(n, by_id[rid]) for n, rid in zip(claim.ranks.get("by_count", []), claim.rows.get("by_count", []))
             if rid in by_id]
    ris = [_v(r, "RI") for _, r in steps]
    outcomes: list[bool | None] = [None if a is None or b is None else b >= a for a, b in pairwise(ris)]
    details = [f"{larger.label} ({layout.variants[larger.dataset].train_clips()} training clips): RI by AMR count "
               + ", ".join(f"{n:g}: {_fmt(v)}" for (n, _), v in zip(steps, ris))]
    return outcomes, details, [_evidence(larger, r, "RI") for _, r in steps]


def minsim_exfmem_weak_rgb(table: Table, layout: RunLayout, claim: ClaimSpec) -> Outcome:
    """Rows of role ``weak`` (MinSim, ExFMem, MinSim+ExFMem) are below those of role ``strong`` (AT with XRS,
    AMR) on XR and XRS."""
    outcomes: list[bool | None] = []
    details: list[str] = []
    evidence: list[str] = []
    for b in table.blocks:
        strong = [b.rows[i] for i in _rows(b, claim, "strong")]
        weak = [b.rows[i] for i in _rows(b, claim, "weak")]
        for col in ("R", "RS"):
            for w in weak:
                for s in strong:
                    a, c = _v(w, col), _v(s, col)
                    outcomes.append(None if a is None or c is None else a < c)
                    details.append(f"{b.label}, X{col}: {w.label} {_fmt(a)} vs {s.label} {_fmt(c)}")
                    evidence += [_evidence(b, w, col), _evidence(b, s, col)]
    return outcomes, details, evidence


CHECKS: dict[str, Callable[[Table, RunLayout, ClaimSpec], Outcome]] = {
    "skeleton_more_robust": skeleton_more_robust,
    "fusion_not_more_robust": fusion_not_more_robust,
    "amr_best": amr_best,
    "more_amrs_help_larger": more_amrs_help_larger,
    "minsim_exfmem_weak_rgb": minsim_exfmem_weak_rgb,
}
assert set(CHECKS) == set(CLAIMS), "every claim a protocol may name needs a check"


def check_claims(layout: RunLayout, tables: list[Table]) -> list[ClaimResult]:
    """Check every claim the protocol run lists, on its own tables."""
    by_id = {t.id: t for t in tables if t.protocol == layout.name}
    out = []
    for claim in layout.claims:
        table = by_id.get(claim.table)
        if table is None:
            out.append(ClaimResult(claim.id, claim.text, layout.name, claim.table, "no data"))
            continue
        outcomes, details, evidence = CHECKS[claim.id](table, layout, claim)
        out.append(ClaimResult(claim.id, claim.text, layout.name, claim.table, _verdict(outcomes), details, evidence))
    return out
