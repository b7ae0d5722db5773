"""Raw NTU RGB+D files: ``.skeleton`` text files and ``_rgb.avi`` videos (docs/real-data.md).

A ``.skeleton`` file: the frame count; per frame a body count (may be 0); per body one line of 10
fields (the first is a 64-bit body id), the joint count (25), then 25 lines of 12 values
``x y z depthX depthY colorX colorY orientW orientX orientY orientZ trackingState``. x, y, z are
metres in camera space; colorX, colorY are pixels of the 1920x1080 RGB frame. LF and CRLF both occur.

A clip keeps at most two bodies, the two most active (largest summed per-joint variance of their
positions over the frames they appear in, the usual NTU preprocessing), in that order, as
``[3, T, 25, 2]`` with zeros where a body is absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robench.data.ntu import parse_name

JOINTS = 25


@dataclass
class SkeletonFile:
    """A parsed ``.skeleton`` file.

    Attributes:
        frames: frame count from the header.
        xyz: ``{body id: float32 [T, 25, 3]}`` metres, zeros in frames without that body.
        color: ``{body id: float32 [T, 25, 2]}`` pixel coordinates in the RGB frame.
        present: ``{body id: bool [T]}`` frames in which the body appears.
    """

    frames: int
    xyz: dict[str, np.ndarray]
    color: dict[str, np.ndarray]
    present: dict[str, np.ndarray]

    def activity(self, body: str) -> float:
        """Summed per-joint variance of the body's positions over the frames it appears in."""
        pts = self.xyz[body][self.present[body]]
        return float(pts.var(axis=0).sum()) if len(pts) > 1 else 0.0

    def most_active(self, count: int = 2) -> list[str]:
        return sorted(self.xyz, key=self.activity, reverse=True)[:count]

    def to_array(self, persons: int = 2) -> np.ndarray:
        """``float32 [3, T, 25, persons]`` of the most active bodies, zero-padded."""
        out = np.zeros((3, self.frames, JOINTS, persons), dtype=np.float32)
        for m, body in enumerate(self.most_active(persons)):
            out[:, :, :, m] = self.xyz[body].transpose(2, 0, 1)
        return out

    def color_box(self, persons: int = 2) -> tuple[float, float, float, float] | None:
        """``(x0, y0, x1, y1)`` in RGB pixels around every joint of the kept bodies, or None."""
        pts = [self.color[b][self.present[b]].reshape(-1, 2) for b in self.most_active(persons)]
        pts = [p for p in pts if len(p)]
        if not pts:
            return None
        allp = np.concatenate(pts)
        allp = allp[np.isfinite(allp).all(1)]
        if not len(allp):
            return None
        return float(allp[:, 0].min()), float(allp[:, 1].min()), float(allp[:, 0].max()), float(allp[:, 1].max())


def read_skeleton(path: str | Path) -> SkeletonFile:
    """Parse an NTU ``.skeleton`` file; raises ValueError naming the line where it is malformed."""
    path = Path(path)
    lines = path.read_text(encoding="ascii", errors="replace").splitlines()  # handles LF and CRLF
    pos = 0

    def take() -> list[str]:
        nonlocal pos
        while pos < len(lines) and not lines[pos].strip():
            pos += 1
        if pos >= len(lines):
            raise ValueError(f"{path.name}: file ends at line {pos} (truncated)")
        pos += 1
        return lines[pos - 1].split()

    try:
        frames = int(take()[0])
        xyz: dict[str, np.ndarray] = {}
        color: dict[str, np.ndarray] = {}
        present: dict[str, np.ndarray] = {}
        for t in range(frames):
            for _ in range(int(take()[0])):
                body = take()[0]
                if body not in xyz:
                    xyz[body] = np.zeros((frames, JOINTS, 3), dtype=np.float32)
                    color[body] = np.zeros((frames, JOINTS, 2), dtype=np.float32)
                    present[body] = np.zeros(frames, dtype=bool)
                joints = int(take()[0])
                if joints != JOINTS:
                    raise ValueError(f"{path.name}: line {pos}: {joints} joints, expected {JOINTS}")
                present[body][t] = True
                for j in range(joints):
                    values = take()
                    if len(values) < 7:
                        raise ValueError(f"{path.name}: line {pos}: {len(values)} values, expected 12")
                    xyz[body][t, j] = [float(v) for v in values[:3]]
                    color[body][t, j] = [float(values[5]), float(values[6])]
    except (IndexError, ValueError) as exc:
        if isinstance(exc, ValueError) and str(exc).startswith(path.name):
            raise
        raise ValueError(f"{path.name}: malformed at line {pos}: {exc}") from None
    return SkeletonFile(frames, xyz, color, present)


def missing_skeletons(path: str | Path) -> set[str]:
    """Sample ids of the official 'samples with missing skeletons' list (header lines skipped)."""
    out = set()
    for line in Path(path).read_text().splitlines():
        word = line.strip()
        if len(word) == 20 and word.startswith("S"):
            try:
                parse_name(word)
            except ValueError:
                continue
            out.add(word)
    return out
