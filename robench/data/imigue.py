"""iMiGUE (Liu et al., CVPR 2021): micro-gestures of 72 tennis players at press conferences, from a prepared folder.

32 classes; cross-subject split (docs/real-data.md): the 37 training subjects below (13,936
clips), the other 35 test (4,563 clips). Skeletons are 2D OpenPose keypoints (x, y in pixels, plus
a confidence); preparation maps the body joints onto the NTU 25-joint layout (see
:mod:`robench.data.prepare`). Prepare a folder with ``robench prepare imigue --root RAW --out DIR``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robench.data.prepared import PreparedDataset, column_indices
from robench.registry import register_dataset

IMIGUE_CLASSES: tuple[str, ...] = (
    'turtle neck', 'deep breath', 'touch hat', 'touch face', 'touch forehead', 'cover face', 'rub eyes',
    'touch other face part', 'touch ears', 'bite nails', 'touch chin', 'touch neck', 'play hair', 'adjust tie',
    'touch chest', 'scratch back', 'fold arm', 'tidy sleeve', 'put arm back', 'move torso', 'sit straight',
    'scratch arm', 'rub hand', 'cross finger', 'minaret hand', 'play things', 'withdraw arms', 'head up',
    'bit lip', 'arm akimbo', 'shake shoulder', 'illustrative',
)
IMIGUE_TRAIN_SUBJECTS = frozenset({
    2, 4, 5, 6, 9, 10, 12, 13, 14, 15, 17, 18, 20, 21, 22, 23, 25, 28, 29, 30, 31, 35, 36, 38, 39, 41, 42, 43, 44, 46,
    47, 48, 52, 53, 59, 61, 62})
IMIGUE_CLIPS = {"train": 13_936, "test": 4_563}


@register_dataset("imigue")
class IMiGUE(PreparedDataset):
    """iMiGUE micro-gestures from a prepared folder, cross-subject split, 32 classes.

    Args:
        root: the prepared folder (default ``$ROBENCH_DATA/imigue`` or ``data/imigue``).
        frames_rgb: RGB frames per clip the folder was prepared with.
        resolution: RGB frame height = width, pixels.
        frames_skeleton: skeleton frames per clip.
    """

    dataset = "imigue"
    class_names = IMIGUE_CLASSES
    expected_clips = IMIGUE_CLIPS

    def __init__(self, root: str | None = None, frames_rgb: int = 16, resolution: int = 224, frames_skeleton: int = 32,
                 cache_dir: Path | None = None) -> None:
        super().__init__(root, frames_rgb, resolution, frames_skeleton, cache_dir)

    def split_indices(self, name: str) -> np.ndarray:
        train = {str(s) for s in IMIGUE_TRAIN_SUBJECTS}
        members = column_indices(self.clips, "subject", train)
        if name == "train":
            return members
        return np.setdiff1d(np.arange(len(self.clips)), members)
