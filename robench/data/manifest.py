"""Any RGB+skeleton dataset prepared from a CSV manifest or a PYSKL pickle (``robench prepare manifest|pyskl``).

Splits come from the manifest's ``split`` column (``train`` / ``test``, or other names), or from a
PYSKL pickle's split lists (``splits`` column, e.g. ``xsub_train``): ``train_split`` and
``test_split`` name the ones the runner uses as training and test sets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robench.data.prepared import PreparedDataset
from robench.errors import DataError
from robench.registry import register_dataset


@register_dataset("manifest")
class ManifestDataset(PreparedDataset):
    """A dataset prepared from a CSV manifest or a PYSKL pickle; splits from the manifest.

    Args:
        root: the prepared folder (default ``$ROBENCH_DATA/manifest`` or ``data/manifest``).
        classes: number of classes.
        train_split: the split name used for training (``split`` column value or PYSKL split name).
        test_split: the split name used for evaluation.
        frames_rgb: RGB frames per clip the folder was prepared with.
        resolution: RGB frame height = width, pixels.
        frames_skeleton: skeleton frames per clip.
    """

    dataset = "manifest"

    def __init__(self, root: str | None = None, classes: int = 2, train_split: str = "train", test_split: str = "test",
                 frames_rgb: int = 16, resolution: int = 224, frames_skeleton: int = 32,
                 cache_dir: Path | None = None) -> None:
        super().__init__(root, frames_rgb, resolution, frames_skeleton, cache_dir)
        if classes < 1:
            raise ValueError(f"classes must be >= 1, got {classes}")
        self.class_names = [str(i) for i in range(classes)]
        self.splits = {"train": train_split, "test": test_split}

    def split_indices(self, name: str) -> np.ndarray:
        wanted = self.splits[name]
        clips = self.clips
        if clips and "split" in clips[0]:
            return np.array([i for i, c in enumerate(clips) if c["split"] == wanted], dtype=np.int64)
        if clips and "splits" in clips[0]:
            return np.array([i for i, c in enumerate(clips) if wanted in c["splits"].split()], dtype=np.int64)
        raise DataError(f"{self.folder}: clips.csv has no split or splits column to find '{wanted}' in")
