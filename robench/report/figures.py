"""The paper's figures from the results store, drawn with matplotlib (PNG and SVG).

* ``eps_curves`` (the paper's Figure 2): accuracy of one model against the attack radius for each
  attack (FGSM, PGD, CW) attacking RGB (-R), skeleton (-S) or both (-M, "multiple modalities"),
  plus the clean accuracy as a horizontal line; one panel per dataset; x in units of 2/255.
* ``amr_weights`` (the paper's Figure 4): the mean weight of every channel of every AMR, RGB and
  skeleton side by side; one row of panels per dataset, one panel per AMR.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from robench.report.tables import CellIndex  # noqa: E402

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


def _save(fig: plt.Figure, out_dir: Path, stem: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    png, svg = out_dir / f"{stem}.png", out_dir / f"{stem}.svg"
    fig.savefig(png, dpi=130, bbox_inches="tight")
    fig.savefig(svg, bbox_inches="tight", metadata={"Date": None})  # no timestamp: reproducible files
    plt.close(fig)
    return png, svg


def _stem(protocol: str, fid: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in f"{protocol}-{fid}")


def eps_curves(layout: dict[str, Any], spec: dict[str, Any], cells: dict[str, dict[str, Any]], out_dir: Path) -> Figure:
    """Figure 2: accuracy vs eps per attack and scenario, with the clean line, one panel per dataset."""
    idx = CellIndex(layout, cells)
    unit = spec["eps_unit"]
    fig, axes = plt.subplots(1, len(spec["datasets"]), figsize=(5.2 * len(spec["datasets"]), 4.0), squeeze=False)
    data: dict[str, Any] = {"complete": True, "series": {}}
    for ax, vid in zip(axes[0], spec["datasets"]):
        v = layout["variants"][vid]
        clean = idx.value(vid, spec["defense"], None, "clean", 0.0).value
        for a_i, attack in enumerate(spec["attacks"]):
            eps_values = sorted(v["attack_eps"][attack])
            for scenario in spec["scenarios"]:
                points = [(e / unit, idx.value(vid, spec["defense"], attack, scenario, e).value) for e in eps_values]
                if any(y is None for _, y in points):
                    data["complete"] = False
                points = [(x, y) for x, y in points if y is not None]
                name = f"{v['attack_types'][attack].upper()}-{SCENARIO_SUFFIX[scenario]}"
                data["series"][f"{vid}/{name}"] = points
                if points:
                    ax.plot([x for x, _ in points], [y for _, y in points], SCENARIO_STYLE[scenario],
                            marker=MARKERS[a_i % len(MARKERS)], markersize=4, color=f"C{a_i}", label=name)
        if clean is not None:
            ax.axhline(clean, color="black", linewidth=1.2, label="Clean acc")
        ax.set_title(v["label"])
        ax.set_xlabel(f"attack strength ε (× {unit * 255:.3g}/255)")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, ncol=1, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(spec["title"], fontsize=10)
    png, svg = _save(fig, out_dir, _stem(layout["name"], spec["id"]))
    return Figure(layout["name"], spec["id"], spec["title"], "eps_curves", png, svg, data)


def amr_weights(layout: dict[str, Any], spec: dict[str, Any], models: dict[str, dict[str, Any]], out_dir: Path) -> Figure:
    """Figure 4: per-channel mean AMR weights, RGB vs skeleton, one panel per AMR, one row per dataset."""
    rows = []
    for vid in spec["datasets"]:
        mids = [k[3] for k in layout["models"] if k[0] == vid and k[1] == spec["defense"]]
        amrs = next((models[m]["summary"].get("amr") for m in mids if m in models), None) or []
        rows.append((vid, amrs))
    ncols = max([len(a) for _, a in rows] + [1])
    fig, axes = plt.subplots(len(rows), ncols, figsize=(4.2 * ncols, 3.0 * len(rows)), squeeze=False)
    data: dict[str, Any] = {"complete": all(a for _, a in rows), "amr": {}}
    for r, (vid, amrs) in enumerate(rows):
        label = layout["variants"][vid]["label"]
        for c in range(ncols):
            ax = axes[r][c]
            if c >= len(amrs):
                ax.axis("off")
                continue
            a = amrs[c]
            for modality, color, name in (("rgb", "C0", "RGB (W_R)"), ("skeleton", "C3", "skeleton (W_S)")):
                means = a[f"channel_means_{modality}"]
                ax.plot(range(len(means)), means, ".", markersize=3, color=color, label=name)
            ax.set_title(f"{label}: AMR {a['index']}", fontsize=9)
            ax.set_xlabel("channel")
            ax.set_ylabel("mean weight")
            ax.grid(alpha=0.3)
            data["amr"][f"{vid}/{a['index']}"] = {"mean_rgb": a["mean_rgb"], "mean_skeleton": a["mean_skeleton"]}
    axes[0][0].legend(fontsize=7)
    fig.suptitle(spec["title"], fontsize=10)
    fig.tight_layout()
    png, svg = _save(fig, out_dir, _stem(layout["name"], spec["id"]))
    return Figure(layout["name"], spec["id"], spec["title"], "amr_weights", png, svg, data)


def build_figures(layout: dict[str, Any], cells: dict[str, dict[str, Any]], models: dict[str, dict[str, Any]],
                  out_dir: Path) -> list[Figure]:
    """All figures of one protocol run, written under ``out_dir``."""
    out = []
    for spec in layout.get("figures", []):
        if spec["kind"] == "eps_curves":
            out.append(eps_curves(layout, spec, cells, out_dir))
        elif spec["kind"] == "amr_weights":
            out.append(amr_weights(layout, spec, models, out_dir))
    return out
