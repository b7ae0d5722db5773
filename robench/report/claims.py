"""The paper's qualitative claims, checked on measured tables.

Each claim function takes a built :class:`~robench.report.tables.Table` (and the run's layout) and
returns a :class:`ClaimResult`: a verdict ("reproduced", "partly", "not reproduced" or "no data"),
one line per dataset block saying what was compared, and the entries the verdict rests on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from robench.protocol.layout import CLAIMS
from robench.report.tables import Block, Row, Table


@dataclass
class ClaimResult:
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


def _verdict(outcomes: list[bool | None]) -> str:
    known = [o for o in outcomes if o is not None]
    if not known:
        return "no data"
    if all(known):
        return "reproduced" if len(known) == len(outcomes) else "partly"
    return "not reproduced" if not any(known) else "partly"


def skeleton_more_robust(table: Table, layout: dict[str, Any]) -> tuple[list[bool | None], list[str], list[str]]:
    """Undefended rows: XS > XR (attacking the skeleton costs less than attacking RGB)."""
    outcomes, details, evidence = [], [], []
    for b in table.blocks:
        for row in b.rows:
            if row.defense_type != "none":
                continue
            r, s = _v(row, "R"), _v(row, "S")
            ok = None if r is None or s is None else s > r
            outcomes.append(ok)
            details.append(f"{b.label}, {row.label}: XS {_fmt(s)} vs XR {_fmt(r)}")
            evidence += [_evidence(b, row, "R"), _evidence(b, row, "S")]
    return outcomes, details, evidence


def fusion_not_more_robust(table: Table, layout: dict[str, Any]) -> tuple[list[bool | None], list[str], list[str]]:
    """With one modality attacked, the fused model is below the clean unimodal model of the other one."""
    outcomes, details, evidence = [], [], []
    specs = {t["id"]: t for t in layout["tables"]}[table.id]
    for b in table.blocks:
        mods = layout["variants"][b.dataset]["modalities"]
        uni = {tuple(mods[c["defense"]]): c["id"] for c in specs["columns"] if c.get("defense")}
        uni_r, uni_s = uni.get(("rgb",)), uni.get(("skeleton",))
        for row in b.rows:
            for attacked, other in (("R", uni_s), ("S", uni_r)):
                if other is None:
                    continue
                fused, alone = _v(row, attacked), _v(row, other)
                ok = None if fused is None or alone is None else fused < alone
                outcomes.append(ok)
                details.append(f"{b.label}, {row.label}: X{attacked} {_fmt(fused)} vs unimodal clean {_fmt(alone)}")
                evidence += [_evidence(b, row, attacked), _evidence(b, row, other)]
    return outcomes, details, evidence


def amr_best(table: Table, layout: dict[str, Any]) -> tuple[list[bool | None], list[str], list[str]]:
    """The AMR row is best (ties included) on XRS, Avg and RI in every block."""
    outcomes, details, evidence = [], [], []
    for b in table.blocks:
        amr_rows = [i for i, r in enumerate(b.rows) if r.defense_type == "amr"]
        for col in ("RS", "Avg", "RI"):
            if col not in table.column_ids or not amr_rows:
                continue
            best = b.best.get(col, set())
            ok = None if not best else any(i in best for i in amr_rows)
            outcomes.append(ok)
            winners = ", ".join(b.rows[i].label for i in sorted(best)) or "–"
            details.append(f"{b.label}, {'XRS' if col == 'RS' else col}: best {winners}")
            evidence += [_evidence(b, b.rows[i], col) for i in sorted(set(amr_rows) | best)]
    return outcomes, details, evidence


def more_amrs_help_larger(table: Table, layout: dict[str, Any]) -> tuple[list[bool | None], list[str], list[str]]:
    """On the dataset with the most training clips, RI does not fall as AMRs are added (0 AMR = AT with XRS)."""
    def train_clips(vid: str) -> int:
        clips = layout["variants"][vid].get("info", {}).get("clips", {})
        return int(clips.get("train", 0)) if isinstance(clips, dict) else 0

    larger = max(table.blocks, key=lambda b: train_clips(b.dataset)) if table.blocks else None
    if larger is None:
        return [], [], []
    params = layout["variants"][larger.dataset]["defense_params"]
    steps = []
    for row in larger.rows:
        if row.defense_type == "at":
            steps.append((0, row))
        elif row.defense_type == "amr":
            steps.append((int(params[row.defense].get("count", 3)), row))
    steps.sort(key=lambda x: x[0])
    ris = [_v(r, "RI") for _, r in steps]
    outcomes: list[bool | None] = [None if a is None or b is None else b >= a for a, b in zip(ris, ris[1:])]
    details = [f"{larger.label} ({train_clips(larger.dataset)} training clips): RI by AMR count "
               + ", ".join(f"{n}: {_fmt(v)}" for (n, _), v in zip(steps, ris))]
    return outcomes, details, [_evidence(larger, r, "RI") for _, r in steps]


def minsim_exfmem_weak_rgb(table: Table, layout: dict[str, Any]) -> tuple[list[bool | None], list[str], list[str]]:
    """MinSim / ExFMem / MinSim+ExFMem rows are below AT with XRS and AMR on XR and XRS."""
    outcomes, details, evidence = [], [], []
    for b in table.blocks:
        params = layout["variants"][b.dataset]["defense_params"]
        strong = [r for r in b.rows if r.defense_type == "amr" or
                  (r.defense_type == "at" and sorted(params[r.defense].get("modalities", [])) == ["rgb", "skeleton"])]
        weak = [r for r in b.rows if r.defense_type in ("minsim", "exfmem", "minsim_exfmem")]
        for col in ("R", "RS"):
            for w in weak:
                for s in strong:
                    a, c = _v(w, col), _v(s, col)
                    outcomes.append(None if a is None or c is None else a < c)
                    details.append(f"{b.label}, X{col}: {w.label} {_fmt(a)} vs {s.label} {_fmt(c)}")
                    evidence += [_evidence(b, w, col), _evidence(b, s, col)]
    return outcomes, details, evidence


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


CHECKS: dict[str, Callable[[Table, dict[str, Any]], tuple[list[bool | None], list[str], list[str]]]] = {
    "skeleton_more_robust": skeleton_more_robust,
    "fusion_not_more_robust": fusion_not_more_robust,
    "amr_best": amr_best,
    "more_amrs_help_larger": more_amrs_help_larger,
    "minsim_exfmem_weak_rgb": minsim_exfmem_weak_rgb,
}
assert set(CHECKS) == set(CLAIMS), "every claim a protocol may name needs a check"


def check_claims(layout: dict[str, Any], tables: list[Table]) -> list[ClaimResult]:
    """Check every claim the protocol run lists, on its own tables."""
    by_id = {t.id: t for t in tables if t.protocol == layout["name"]}
    out = []
    for claim in layout.get("claims", []):
        table = by_id.get(claim["table"])
        if table is None:
            out.append(ClaimResult(claim["id"], claim["text"], layout["name"], claim["table"], "no data"))
            continue
        outcomes, details, evidence = CHECKS[claim["id"]](table, layout)
        out.append(ClaimResult(claim["id"], claim["text"], layout["name"], claim["table"], _verdict(outcomes),
                               details, evidence))
    return out
