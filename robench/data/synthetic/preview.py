"""Contact sheet of a split: RGB frames with the projected skeleton overlaid, for checking by eye."""

from __future__ import annotations

from pathlib import Path

import torch

from robench.data.base import TensorClipDataset
from robench.data.synthetic.render import project
from robench.data.synthetic.skeleton import BONES
from robench.files import atomic_file


def _pick(labels: torch.Tensor, clips: int) -> list[int]:
    """Up to ``clips`` indices, one per class first, then in order."""
    chosen: list[int] = []
    for c in labels.unique().tolist():
        if len(chosen) < clips:
            chosen.append(int((labels == c).nonzero()[0]))
    for i in range(len(labels)):
        if len(chosen) >= clips:
            break
        if i not in chosen:
            chosen.append(i)
    return chosen


def save_preview(dataset_split: TensorClipDataset, path: str | Path, clips: int = 8, frames: int = 4,
                 overlay: bool = True) -> Path:
    """Save a PNG contact sheet: one row per clip (label and performer in the row title), ``frames`` RGB
    frames spread over the clip with the skeleton of the nearest skeleton frame projected on top (green:
    body 1, cyan: body 2), and a last panel with the projected skeleton of every skeleton frame
    (light to dark = start to end). Projection uses ``meta["camera"]`` (fx, fy, cx, cy in pixels).

    Returns the path written.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path = Path(path)
    idx = _pick(dataset_split.label, clips)
    rgb, skel = dataset_split.rgb, dataset_split.skeleton
    t_rgb, t_skel = rgb.shape[2], skel.shape[2]
    h, w = rgb.shape[-2:]
    cams = dataset_split.meta.get("camera")
    cols = frames + 1
    fig, axes = plt.subplots(len(idx), cols, figsize=(1.6 * cols * w / h, 1.7 * len(idx)), squeeze=False)
    ks = torch.linspace(0, t_rgb - 1, frames).round().long().tolist()
    for row, i in enumerate(idx):
        uv = None
        if cams is not None:
            pts = skel[i].permute(3, 1, 2, 0)  # [M, T, V, 3]
            uv = project(pts.reshape(1, -1, 3), cams[i:i + 1]).reshape(*pts.shape[:3], 2)
            present = pts.abs().flatten(1).sum(1) > 0
        for col, k in enumerate(ks):
            ax = axes[row, col]
            ax.imshow(rgb[i, :, k].permute(1, 2, 0).numpy(), interpolation="nearest")
            if overlay and uv is not None:
                s = min(int((k + 0.5) / t_rgb * t_skel), t_skel - 1)
                for m, colour in zip(range(uv.shape[0]), ("lime", "cyan")):
                    if present[m]:
                        p = uv[m, s] - 0.5
                        for a, b in BONES:
                            ax.plot(p[[a, b], 0], p[[a, b], 1], color=colour, lw=0.7, alpha=0.8)
            ax.set_xlim(-0.5, w - 0.5)
            ax.set_ylim(h - 0.5, -0.5)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"frame {k}", fontsize=7)
        ax = axes[row, -1]
        ax.set_facecolor("white")
        if uv is not None:
            for s in range(t_skel):
                shade = 0.85 - 0.75 * s / max(1, t_skel - 1)
                for m in range(uv.shape[0]):
                    if present[m]:
                        p = uv[m, s] - 0.5
                        for a, b in BONES:
                            ax.plot(p[[a, b], 0], p[[a, b], 1], color=(shade, shade, 1.0 if m else shade), lw=0.6)
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        if row == 0:
            ax.set_title("skeleton, all frames", fontsize=7)
        name = dataset_split.class_names[int(dataset_split.label[i])]
        subject = int(dataset_split.meta["subject"][i]) if "subject" in dataset_split.meta else -1
        axes[row, 0].set_ylabel(f"{name}\nperformer {subject}", fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=110)
    plt.close(fig)
    return path
