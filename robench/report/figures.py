"""The paper's figures from the results store, drawn with matplotlib (PNG and SVG).

* ``eps_curves`` (the paper's Figure 2): accuracy of one model against the attack radius for each
  attack (FGSM, PGD, CW) attacking RGB (-R), skeleton (-S) or both (-M, "multiple modalities"),
  plus the clean accuracy as a horizontal line; one panel per dataset; x in units of 2/255.
* any other kind is contributed by a defense (``report_figures`` of the type of the figure's
  ``defense``, e.g. AMR's ``amr_weights``, the paper's Figure 4), drawn by the type's
  ``summary_figure`` from the stored ``summary()`` of the row's trained model on each dataset.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

from robench.errors import RobenchError
from robench.files import atomic_file
from robench.protocol.layout import FigureSpec
from robench.report.tables import CellIndex, defense_class
from robench.run_layout import RunLayout

SCENARIO_SUFFIX = {"R": "R", "S": "S", "RS": "M"}  # the paper's legend: M = both modalities
SCENARIO_STYLE = {"R": "-", "S": "--", "RS": ":"}
MARKERS = ("o", "s", "^", "D", "v", "P")


@dataclass
class Figure:
    """A rendered figure: where its files are, and the data behind it."""

    protocol: str
    id: str
    title: str
    kind: str
    png: Path
    svg: Path
    data: dict[str, Any] = field(default_factory=dict)

    def png_base64(self) -> str:
        return base64.b64encode(self.png.read_bytes()).decode()

    @property
    def complete(self) -> bool:
        return bool(self.data.get("complete", True))


def save_figure(fig: plt.Figure, out_dir: Path, stem: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    png, svg = out_dir / f"{stem}.png", out_dir / f"{stem}.svg"
    with atomic_file(png) as tmp:  # a kill or a full disk never leaves half a figure
        fig.savefig(tmp, format="png", dpi=130, bbox_inches="tight")
    with atomic_file(svg) as tmp:
        fig.savefig(tmp, format="svg", bbox_inches="tight", metadata={"Date": None})  # no timestamp: reproducible
    plt.close(fig)
    return png, svg


def figure_stem(protocol: str, fid: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in f"{protocol}-{fid}")


def eps_curves(layout: RunLayout, spec: FigureSpec, cells: dict[str, dict[str, Any]], out_dir: Path) -> Figure:
    """Figure 2: accuracy vs eps per attack and scenario, with the clean line, one panel per dataset."""
    idx = CellIndex(layout, cells)
    unit = spec.eps_unit
    fig, axes = plt.subplots(1, len(spec.datasets), figsize=(5.2 * len(spec.datasets), 4.0), squeeze=False)
    data: dict[str, Any] = {"complete": True, "series": {}}
    for ax, vid in zip(axes[0], spec.datasets):
        v = layout.variants[vid]
        clean = idx.value(vid, spec.defense, None, "clean", 0.0).value
        for a_i, attack in enumerate(spec.attacks):
            eps_values = sorted(v.attacks[attack].eps)
            for scenario in spec.scenarios:
                points = [(e / unit, idx.value(vid, spec.defense, attack, scenario, e).value) for e in eps_values]
                if any(y is None for _, y in points):
                    data["complete"] = False
                shown = [(x, y) for x, y in points if y is not None]
                name = f"{v.attacks[attack].type.upper()}-{SCENARIO_SUFFIX[scenario]}"
                data["series"][f"{vid}/{name}"] = shown
                if shown:
                    ax.plot([x for x, _ in shown], [y for _, y in shown], SCENARIO_STYLE[scenario],
                            marker=MARKERS[a_i % len(MARKERS)], markersize=4, color=f"C{a_i}", label=name)
        if clean is not None:
            ax.axhline(clean, color="black", linewidth=1.2, label="Clean acc")
        ax.set_title(v.label)
        ax.set_xlabel(f"attack strength ε (× {unit * 255:.3g}/255)")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, ncol=1, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(spec.title, fontsize=10)
    png, svg = save_figure(fig, out_dir, figure_stem(layout.name, spec.id))
    return Figure(layout.name, spec.id, spec.title, "eps_curves", png, svg, data)


def contributed_figure(layout: RunLayout, spec: FigureSpec, models: dict[str, dict[str, Any]], out_dir: Path
                       ) -> Figure:
    """A figure a defense contributes: its ``summary_figure`` on one stored summary per dataset (the first seed's)."""
    ref = layout.variants[spec.datasets[0]].defenses[spec.defense] if spec.datasets else None
    panels: list[tuple[str, dict[str, Any]]] = []
    found = []
    for vid in spec.datasets:
        summary = next((models[m]["summary"] for m in layout.model_ids(vid, spec.defense) if m in models), None)
        found.append(summary is not None)
        panels.append((layout.variants[vid].label, summary or {}))
    if ref is None:
        raise RobenchError(f"protocol '{layout.name}': figure '{spec.id}' has no dataset")
    fig = defense_class(layout, ref.type).summary_figure(spec.kind, panels, spec.title)
    png, svg = save_figure(fig, out_dir, figure_stem(layout.name, spec.id))
    return Figure(layout.name, spec.id, spec.title, spec.kind, png, svg, {"complete": all(found)})


def build_figures(layout: RunLayout, cells: dict[str, dict[str, Any]], models: dict[str, dict[str, Any]],
                  out_dir: Path) -> list[Figure]:
    """All figures of one protocol run, written under ``out_dir``."""
    return [eps_curves(layout, spec, cells, out_dir) if spec.kind == "eps_curves"
            else contributed_figure(layout, spec, models, out_dir) for spec in layout.figures]
