"""Budget grids: accuracy over independent RGB and skeleton radii, and the frontier that halves it.

For every budget grid of a run (:mod:`robench.protocol.budgets`) and dataset:

* a table with one row per defense and one column per (eps_R, eps_S) point, accuracy in percent;
* an **exchange** table: for each RGB radius r of the grid, the skeleton radius that does the same
  damage alone, i.e. where the XS accuracy along the grid's skeleton edge falls to the XR accuracy at
  r (linear interpolation between grid points; "> max" when it never does on the grid);
* a figure: one heatmap per defense (accuracy over the grid) with its **frontier**, the smallest
  skeleton radius that, added to each RGB radius, brings accuracy down to half the defense's clean
  accuracy (interpolated along the skeleton axis), and one panel overlaying every defense's frontier.

Radii are the protocol's nominal values (units of 1/255 of the threat model's units, scaled per modality
by ``threat.<m>.scale``). With several seeds every accuracy is the mean over the seeds' models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import pyplot as plt

from robench.protocol.budgets import BudgetGrid
from robench.report.figures import Figure, figure_stem, save_figure
from robench.report.tables import Block, Row, Table, Value
from robench.run_layout import RunLayout


@dataclass(frozen=True)
class Surface:
    """One defense's accuracy over one grid on one dataset.

    Attributes:
        defense, label: row id and display label.
        accuracy: percent, ``[len(grid.skeleton), len(grid.rgb)]`` (NaN where not stored).
        clean: clean accuracy (percent), the (0, 0) point if the grid has it, else NaN.
    """

    defense: str
    label: str
    accuracy: np.ndarray
    clean: float

    def frontier(self, grid: BudgetGrid) -> list[float]:
        """Per RGB radius, the smallest skeleton radius at which accuracy reaches half the clean accuracy
        (interpolated; NaN if not on the grid)."""
        target = self.clean / 2
        return [_crossing(list(grid.skeleton), list(self.accuracy[:, j]), target) for j in range(len(grid.rgb))]


def _crossing(radii: list[float], acc: list[float], target: float) -> float:
    """The first radius where ``acc`` (along ``radii``) falls to ``target``, linearly interpolated; NaN if never."""
    if not math.isfinite(target):
        return math.nan
    for i, a in enumerate(acc):
        if not math.isfinite(a):
            return math.nan
        if a <= target:
            if i == 0:
                return radii[0]
            a0, r0 = acc[i - 1], radii[i - 1]
            return r0 + (radii[i] - r0) * (a0 - target) / (a0 - a) if a0 != a else radii[i]
    return math.nan


def surfaces(layout: RunLayout, vid: str, gid: str, cells: dict[str, dict[str, Any]]) -> list[Surface]:
    """Every swept defense's surface on one grid and dataset, in the protocol's row order."""
    v = layout.variants[vid]
    grid = v.budgets[gid]
    ids: dict[tuple[str, float, float], list[str]] = {}
    for g in layout.grid_cells:
        if g.variant == vid and g.grid == gid:
            ids.setdefault((g.defense, g.eps_rgb, g.eps_skeleton), []).append(g.cell_id)
    out = []
    for d, ref in v.defenses.items():
        if not any(k[0] == d for k in ids):
            continue
        acc = np.full((len(grid.skeleton), len(grid.rgb)), np.nan)
        for i, s in enumerate(grid.skeleton):
            for j, r in enumerate(grid.rgb):
                found = [cells[c] for c in ids.get((d, round(r, 12), round(s, 12)), []) if c in cells]
                if found and all(c["n"] for c in found):
                    acc[i, j] = 100.0 * float(np.mean([c["correct"] / c["n"] for c in found]))
        clean = float(acc[0, 0]) if grid.rgb[0] == 0 and grid.skeleton[0] == 0 else math.nan
        out.append(Surface(d, ref.label, acc, clean))
    return out


def _radius(x: float) -> str:
    return "–" if not math.isfinite(x) else f"{255 * x:.3g}"


def budget_tables(layout: RunLayout, cells: dict[str, dict[str, Any]]) -> list[Table]:
    """The grid and exchange tables of every budget grid of a run."""
    tables = []
    for vid, v in layout.variants.items():
        for gid, grid in v.budgets.items():
            found = surfaces(layout, vid, gid, cells)
            if not found:
                continue
            columns = [(f"{r}/{s}", f"{_radius(r)} / {_radius(s)}") for r in grid.rgb for s in grid.skeleton]
            rows = [Row(sf.defense, sf.label, sf.defense, v.defenses[sf.defense].type,
                        {f"{r}/{s}": Value(_finite(sf.accuracy[i, j]))
                         for j, r in enumerate(grid.rgb) for i, s in enumerate(grid.skeleton)}) for sf in found]
            tables.append(Table(layout.name, f"{gid}-{vid}", f"{grid.label}: accuracy (%) at eps_R / eps_S "
                                f"(× 1/255) ({v.label})", "budgets", columns, [Block(vid, v.label, rows)], []))
            tables.append(_exchange_table(layout, vid, grid, found))
    return tables


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _exchange_table(layout: RunLayout, vid: str, grid: BudgetGrid, found: list[Surface]) -> Table:
    v = layout.variants[vid]
    rgb = [(j, r) for j, r in enumerate(grid.rgb) if r > 0]
    rows = []
    edge = grid.rgb[0] == 0 and grid.skeleton[0] == 0
    for sf in found:
        values = {}
        for j, r in rgb:
            target = float(sf.accuracy[0, j]) if edge else math.nan
            s = _crossing(list(grid.skeleton), list(sf.accuracy[:, 0]), target) if edge else math.nan
            values[f"{r}"] = Value(255 * s if math.isfinite(s) else None)
        rows.append(Row(sf.defense, sf.label, sf.defense, v.defenses[sf.defense].type, values))
    notes = ["Each entry: the skeleton radius (× 1/255) whose XS accuracy equals the XR accuracy at that RGB radius, "
             "interpolated along the grid's skeleton edge. Read with the threat model's scale per modality."]
    return Table(layout.name, f"{grid.id}-exchange-{vid}", f"{grid.label}: the skeleton radius that does the damage "
                 f"of each RGB radius ({v.label})", "budgets",
                 [(f"{r}", f"eps_R {_radius(r)}") for _, r in rgb], [Block(vid, v.label, rows)], notes, digits=1,
                 missing=f"the skeleton edge (up to {_radius(grid.skeleton[-1])}/255) never does that much damage, "
                 "or a cell is not in the store yet")


def budget_figures(layout: RunLayout, cells: dict[str, dict[str, Any]], out_dir: Path) -> list[Figure]:
    """One figure per grid and dataset: a heatmap per defense with its frontier, and all frontiers together."""
    figures = []
    for vid, v in layout.variants.items():
        for gid, grid in v.budgets.items():
            found = surfaces(layout, vid, gid, cells)
            if found:
                figures.append(_grid_figure(layout, vid, grid, found, out_dir))
    return figures


def _grid_figure(layout: RunLayout, vid: str, grid: BudgetGrid, found: list[Surface], out_dir: Path) -> Figure:
    v = layout.variants[vid]
    n = len(found) + 1
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.0 * cols, 3.4 * rows), squeeze=False, layout="constrained")
    xs, ys = np.arange(len(grid.rgb)), np.arange(len(grid.skeleton))
    xlabels, ylabels = [_radius(r) for r in grid.rgb], [_radius(s) for s in grid.skeleton]
    data: dict[str, Any] = {"complete": True, "frontiers": {}}
    image = None
    for k, sf in enumerate(found):
        ax = axes[k // cols][k % cols]
        image = ax.imshow(sf.accuracy, origin="lower", vmin=0, vmax=100, cmap="viridis", aspect="auto")
        for i in ys:
            for j in xs:
                a = sf.accuracy[i, j]
                ax.text(j, i, "–" if not math.isfinite(a) else f"{a:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if math.isfinite(a) and a < 60 else "black")
        front = sf.frontier(grid)
        data["frontiers"][sf.defense] = [255 * f if math.isfinite(f) else None for f in front]
        data["complete"] = data["complete"] and bool(np.isfinite(sf.accuracy).all())
        pts = [(j, _index(list(grid.skeleton), f)) for j, f in enumerate(front) if math.isfinite(f)]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "w--", linewidth=1.5)
        ax.set_title(sf.label, fontsize=9)
        ax.set_xticks(xs, xlabels, fontsize=7)
        ax.set_yticks(ys, ylabels, fontsize=7)
        ax.set_xlabel("eps_R (× 1/255)", fontsize=8)
        ax.set_ylabel("eps_S (× 1/255)", fontsize=8)
    ax = axes[(n - 1) // cols][(n - 1) % cols]
    for k, sf in enumerate(found):
        front = data["frontiers"][sf.defense]
        curve = [(255 * r, f) for r, f in zip(grid.rgb, front) if f is not None]
        if curve:
            ax.plot([p[0] for p in curve], [p[1] for p in curve], marker="o", markersize=3, color=f"C{k % 10}",
                    label=sf.label)
    ax.set_xlabel("eps_R (× 1/255)", fontsize=8)
    ax.set_ylabel("eps_S halving clean acc. (× 1/255)", fontsize=8)
    ax.set_ylim(0, 255 * grid.skeleton[-1] * 1.05)
    ax.set_title("Frontiers: budgets that halve clean accuracy", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    for k in range(n, rows * cols):
        axes[k // cols][k % cols].axis("off")
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.6, label="accuracy (%)")
    title = f"{grid.label} ({v.label}); dashed: frontier where accuracy halves"
    fig.suptitle(title, fontsize=10)
    png, svg = save_figure(fig, out_dir, figure_stem(layout.name, f"{grid.id}-{vid}"))
    return Figure(layout.name, f"{grid.id}-{vid}", title, "budget_surface", png, svg, data)


def _index(radii: list[float], value: float) -> float:
    """``value``'s fractional position on the grid's (possibly uneven) axis ``radii``, for plotting on it."""
    return float(np.interp(value, radii, np.arange(len(radii))))
