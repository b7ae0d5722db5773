"""NTU RGB+D 60 and 120 (Shahroudy et al., CVPR 2016; Liu et al., TPAMI 2019), read from prepared folders.

Splits (docs/real-data.md): NTU-60 cross-subject (``xsub``: 20 training subjects) and
cross-view (``xview``: cameras 2 and 3 train, camera 1 tests); NTU-120 cross-subject (``xsub``: 53
training subjects) and cross-setup (``xset``: even setups train, odd setups test). Clip names
``SsssCcccPpppRrrrAaaa`` give setup, camera, performer (subject), replication and action (1-based).
Samples whose skeletons are missing are left out at preparation time. Prepare a folder with
``robench prepare ntu60|ntu120 --root RAW --out DIR``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from robench.data.prepared import PreparedDataset
from robench.errors import DataError
from robench.registry import register_dataset

#: class names, index = action - 1 (A001 "drink water" ... A120); the first 60 are NTU-60's
NTU_CLASSES: tuple[str, ...] = (
    'drink water', 'eat meal/snack', 'brushing teeth', 'brushing hair', 'drop', 'pickup', 'throw', 'sitting down',
    'standing up (from sitting position)', 'clapping', 'reading', 'writing', 'tear up paper', 'wear jacket',
    'take off jacket', 'wear a shoe', 'take off a shoe', 'wear on glasses', 'take off glasses', 'put on a hat/cap',
    'take off a hat/cap', 'cheer up', 'hand waving', 'kicking something', 'reach into pocket',
    'hopping (one foot jumping)', 'jump up', 'make a phone call/answer phone', 'playing with phone/tablet',
    'typing on a keyboard', 'pointing to something with finger', 'taking a selfie', 'check time (from watch)',
    'rub two hands together', 'nod head/bow', 'shake head', 'wipe face', 'salute', 'put the palms together',
    'cross hands in front (say stop)', 'sneeze/cough', 'staggering', 'falling', 'touch head (headache)',
    'touch chest (stomachache/heart pain)', 'touch back (backache)', 'touch neck (neckache)',
    'nausea or vomiting condition', 'use a fan (with hand or paper)/feeling warm',
    'punching/slapping other person', 'kicking other person', 'pushing other person',
    'pat on back of other person', 'point finger at the other person', 'hugging other person',
    'giving something to other person', "touch other person's pocket", 'handshaking', 'walking towards each other',
    'walking apart from each other', 'put on headphone', 'take off headphone', 'shoot at the basket',
    'bounce ball', 'tennis bat swing', 'juggling table tennis balls', 'hush (quite)', 'flick hair', 'thumb up',
    'thumb down', 'make ok sign', 'make victory sign', 'staple book', 'counting money', 'cutting nails',
    'cutting paper (using scissors)', 'snapping fingers', 'open bottle', 'sniff (smell)', 'squat down',
    'toss a coin', 'fold paper', 'ball up paper', 'play magic cube', 'apply cream on face',
    'apply cream on hand back', 'put on bag', 'take off bag', 'put something into a bag',
    'take something out of a bag', 'open a box', 'move heavy objects', 'shake fist', 'throw up cap/hat',
    'hands up (both hands)', 'cross arms', 'arm circles', 'arm swings', 'running on the spot',
    'butt kicks (kick backward)', 'cross toe touch', 'side kick', 'yawn', 'stretch oneself', 'blow nose',
    'hit other person with something', 'wield knife towards other person',
    'knock over other person (hit with body)', 'grab other person’s stuff', 'shoot at other person with a gun',
    'step on foot', 'high-five', 'cheers and drink', 'carry something with other person',
    'take a photo of other person', 'follow other person', 'whisper in other person’s ear',
    'exchange things with other person', 'support somebody with hand',
    'finger-guessing game (playing rock-paper-scissors)',
)
#: training subjects of the cross-subject benchmarks
NTU60_XSUB_TRAIN = frozenset({1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38})
NTU120_XSUB_TRAIN = NTU60_XSUB_TRAIN | frozenset({
    45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86, 89, 91, 92, 93, 94, 95,
    97, 98, 100, 103})
#: clips per release (before samples with missing skeletons are left out)
NTU60_CLIPS, NTU120_CLIPS = 56_880, 114_480

NAME = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})")


def parse_name(name: str) -> dict[str, int]:
    """``S001C002P003R001A010`` -> setup, camera, subject, replication, action (all 1-based)."""
    m = NAME.search(Path(name).name)
    if not m:
        raise ValueError(f"not an NTU clip name (SsssCcccPpppRrrrAaaa): {name!r}")
    setup, camera, subject, replication, action = (int(g) for g in m.groups())
    return {"setup": setup, "camera": camera, "subject": subject, "replication": replication, "action": action}


def split_of(meta: dict[str, int], benchmark: str) -> str:
    """``"train"`` or ``"test"`` for one clip under an NTU benchmark."""
    if benchmark == "xsub":  # NTU-120's list only adds subjects above 40, which NTU-60 does not have
        return "train" if meta["subject"] in NTU120_XSUB_TRAIN else "test"
    if benchmark == "xview":
        return "train" if meta["camera"] in (2, 3) else "test"
    if benchmark == "xset":
        return "train" if meta["setup"] % 2 == 0 else "test"
    raise ValueError(f"unknown NTU benchmark {benchmark!r}")


class _NTU(PreparedDataset):
    benchmarks: tuple[str, ...] = ()
    def __init__(self, root: str | None, benchmark: str, frames_rgb: int, resolution: int, frames_skeleton: int,
                 cache_dir: Path | None = None) -> None:
        if benchmark not in self.benchmarks:
            raise ValueError(f"{self.dataset} benchmarks are {', '.join(self.benchmarks)}, not {benchmark!r}")
        super().__init__(root, frames_rgb, resolution, frames_skeleton, cache_dir)
        self.benchmark = benchmark

    def split_indices(self, name: str) -> np.ndarray:
        clips = self.clips
        if not clips or "subject" not in clips[0]:
            raise DataError(f"{self.folder}: clips.csv lacks the subject/camera/setup columns NTU splits need")
        wanted = []
        for i, c in enumerate(clips):
            meta = {k: int(c[k]) for k in ("setup", "camera", "subject", "replication")}
            if split_of(meta, self.benchmark) == name:
                wanted.append(i)
        return np.array(wanted, dtype=np.int64)


@register_dataset("ntu60")
class NTU60(_NTU):
    """NTU RGB+D 60 from a prepared folder (X-Sub or X-View split), 60 classes.

    Args:
        root: the prepared folder (default ``$ROBENCH_DATA/ntu60`` or ``data/ntu60``).
        benchmark: "xsub" (cross-subject, the paper's) or "xview" (cross-view).
        frames_rgb: RGB frames per clip the folder was prepared with.
        resolution: RGB frame height = width, pixels.
        frames_skeleton: skeleton frames per clip (HCN: 32).
    """

    dataset = "ntu60"
    class_names = NTU_CLASSES[:60]
    benchmarks = ("xsub", "xview")
    expected_clips: ClassVar[dict[str, int]] = {"total": NTU60_CLIPS}

    def __init__(self, root: str | None = None, benchmark: Literal["xsub", "xview"] = "xsub", frames_rgb: int = 16,
                 resolution: int = 224, frames_skeleton: int = 32, cache_dir: Path | None = None) -> None:
        super().__init__(root, benchmark, frames_rgb, resolution, frames_skeleton, cache_dir)


@register_dataset("ntu120")
class NTU120(_NTU):
    """NTU RGB+D 120 from a prepared folder (X-Sub or X-Set split), 120 classes.

    Args:
        root: the prepared folder (default ``$ROBENCH_DATA/ntu120`` or ``data/ntu120``).
        benchmark: "xsub" (cross-subject) or "xset" (cross-setup).
        frames_rgb: RGB frames per clip the folder was prepared with.
        resolution: RGB frame height = width, pixels.
        frames_skeleton: skeleton frames per clip.
    """

    dataset = "ntu120"
    class_names = NTU_CLASSES
    benchmarks = ("xsub", "xset")
    expected_clips: ClassVar[dict[str, int]] = {"total": NTU120_CLIPS}

    def __init__(self, root: str | None = None, benchmark: Literal["xsub", "xset"] = "xsub", frames_rgb: int = 16,
                 resolution: int = 224, frames_skeleton: int = 32, cache_dir: Path | None = None) -> None:
        super().__init__(root, benchmark, frames_rgb, resolution, frames_skeleton, cache_dir)
