"""The built-in synthetic dataset ``synthetic``: NTU-like RGB + skeleton clips in which only motion
carries the class.

Every clip is an action (:data:`ACTIONS`: wave, clap, punch, kick, squat, jump, bow, handshake, hug, ...)
performed by a synthetic performer: joint-angle trajectories drive the forward kinematics of an NTU
25-joint body (:mod:`.skeleton`), placed in a scene and seen by a pinhole camera. The skeleton is the
joints in Kinect camera space (metres) with Kinect-like noise; the RGB video is rendered from the same 3D
motion (capsule limbs, clothing colours, textured backgrounds, changing light, sensor noise). Body
shape, clothing, camera, background, lighting, speed and amplitude are drawn independently of the label
(:mod:`.generate`), so a classifier can only succeed by recognising motion.

Example::

    from pathlib import Path
    from robench.data.synthetic import SyntheticDataset, save_preview
    data = SyntheticDataset(classes=10, cache_dir=Path("~/.cache/robench").expanduser())
    train, test = data.split("train"), data.split("test")
    save_preview(train, "preview.png")
"""

import time
import warnings
from pathlib import Path
from typing import Any

import torch

from robench.data.base import DatasetProvider, TensorClipDataset
from robench.data.synthetic.actions import ACTION_NAMES, ACTIONS
from robench.data.synthetic.generate import (
    CONFIG_FIELDS,
    GENERATOR_VERSION,
    SPLITS,
    SyntheticConfig,
    content_hash,
    generate_split,
)
from robench.data.synthetic.preview import save_preview
from robench.errors import DataError, RobenchError
from robench.files import atomic_file
from robench.registry import register_dataset

__all__ = [
    "ACTIONS", "ACTION_NAMES", "GENERATOR_VERSION", "SyntheticConfig", "SyntheticDataset", "generate_split",
    "save_preview",
]


@register_dataset("synthetic")
class SyntheticDataset(DatasetProvider):
    """NTU-like synthetic RGB+skeleton clips in which only motion carries the class (built-in default).

    Clips: RGB uint8 ``[N, 3, frames_rgb, resolution, width]``, skeleton float32
    ``[N, 3, frames_skeleton, 25, 2]`` (x, y, z in metres, Kinect camera space; second body zeros in
    one-person clips), labels int64. Both modalities sample the same continuous motion over the whole
    clip. ``meta`` holds ``subject`` (performer id; train and test performers are disjoint, like NTU
    X-Sub), ``subject2`` (-1 if one person), ``persons``, ``camera`` (fx, fy, cx, cy in pixels) and
    ``view_yaw`` (degrees).

    Args:
        classes: number of actions, the first ``classes`` of the 16 in :data:`ACTION_NAMES` (the first
            12 are one-person actions, the last 4 two-person interactions).
        train_clips_per_class: clips per class in the train split.
        test_clips_per_class: clips per class in the test split.
        frames_rgb: RGB frames per clip (time points spread evenly over the clip).
        frames_skeleton: skeleton frames per clip (time points spread evenly over the same clip).
        resolution: RGB frame height in pixels (and width, unless ``width`` is set).
        width: RGB frame width in pixels; 0 = same as ``resolution`` (square frames).
        seed: random seed; the data is bit-identical for the same parameters on CPU.
        train_performers: number of synthetic performers (body shape, clothing) in the train split.
        test_performers: number of other performers in the test split.
        joint_noise: standard deviation of the Gaussian noise added to every joint coordinate, metres.
        drop_rate: fraction of joint-frames tracked badly (0-1): such a joint keeps its last tracked
            (stale) position, as Kinect does when tracking is lost; runs of drops hold longer.
        max_yaw: camera viewpoint range about the vertical axis, degrees (uniform in +-max_yaw).
        max_pitch: camera tilt, degrees (uniform in -max_pitch/4 .. max_pitch, positive = looking down).
        min_distance: smallest camera distance to the scene centre, metres.
        max_distance: largest camera distance to the scene centre, metres.
        min_speed: slowest speed, as a multiple of each action's repetitions per clip (dimensionless).
        max_speed: fastest speed, same unit.
        amplitude_jitter: relative range of the movement amplitude (0.2 = 0.8x-1.2x), dimensionless.
        style_noise: per-clip posture offsets and slow sway of the main joints, degrees (std).
        lighting: largest relative brightness change over a clip (gain drift and moving light
            gradient), dimensionless, 0-0.5.
        pixel_noise: mean standard deviation of the sensor noise, in 0-255 intensity levels.
        scenes: number of rooms (background textures and floors) shared by all clips of both splits, each
            clip drawn in one of them at random, like NTU RGB+D's 17 camera setups in one lab; 0 = a new
            random background for every clip, which lets a video model tell clips apart by their
            background alone.
        cache_dir: directory for ``synthetic-<hash>.pt`` (both splits); None = generate in memory.
    """

    #: 2: ``scenes`` (at 0, the data of version 1)
    version = 2

    def __init__(self, classes: int = 10, train_clips_per_class: int = 48, test_clips_per_class: int = 16,
                 frames_rgb: int = 16, frames_skeleton: int = 32, resolution: int = 32, width: int = 0,
                 seed: int = 0, train_performers: int = 10, test_performers: int = 6,
                 joint_noise: float = 0.01, drop_rate: float = 0.02, max_yaw: float = 45.0,
                 max_pitch: float = 10.0, min_distance: float = 2.5, max_distance: float = 4.0,
                 min_speed: float = 0.75, max_speed: float = 1.35, amplitude_jitter: float = 0.2,
                 style_noise: float = 4.0, lighting: float = 0.25, pixel_noise: float = 3.0,
                 scenes: int = 0, cache_dir: Path | None = None) -> None:
        super().__init__(cache_dir)
        params = {k: v for k, v in locals().items() if k in CONFIG_FIELDS}
        self.config = SyntheticConfig(**params)
        self.config.validate()
        self._splits: dict[str, TensorClipDataset] | None = None
        #: "memory", "cache" (loaded from cache_dir) or "generated" once the splits exist
        self.source = "none"
        #: seconds spent generating or loading
        self.seconds = 0.0

    @property
    def num_classes(self) -> int:
        return self.config.classes

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """``{"rgb": (3, frames_rgb, H, W), "skeleton": (3, frames_skeleton, 25, 2)}`` without generating."""
        cfg = self.config
        return {"rgb": (3, cfg.frames_rgb, cfg.height_px, cfg.width_px),
                "skeleton": (3, cfg.frames_skeleton, 25, 2)}

    @property
    def cache_path(self) -> Path | None:
        """``cache_dir / synthetic-<hash>.pt``, the hash covering every parameter and the generator version."""
        if self.cache_dir is None:
            return None
        return self.cache_dir / f"synthetic-{content_hash(self.config)}.pt"

    def split(self, name: str) -> TensorClipDataset:
        """The split ``"train"`` or ``"test"`` (both are generated, or loaded, on the first call)."""
        if name not in SPLITS:
            raise RobenchError(f"synthetic dataset: unknown split {name!r}; valid: {', '.join(SPLITS)}")
        if self._splits is None:
            self._splits = self._load_or_generate()
        return self._splits[name]

    def describe(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "classes": cfg.classes,
            "class_names": list(ACTION_NAMES[:cfg.classes]),
            "clips": {"train": cfg.classes * cfg.train_clips_per_class, "test": cfg.classes * cfg.test_clips_per_class},
            "rgb": f"3x{cfg.frames_rgb}x{cfg.height_px}x{cfg.width_px} uint8",
            "skeleton": f"3x{cfg.frames_skeleton}x25x2 float32 (metres)",
            "performers": {"train": cfg.train_performers, "test": cfg.test_performers},
            "generator_version": GENERATOR_VERSION,
        }

    # -- generation and cache ------------------------------------------------------------------
    def _generate(self) -> dict[str, TensorClipDataset]:
        return {s: generate_split(self.config, s) for s in SPLITS}

    def _load_or_generate(self) -> dict[str, TensorClipDataset]:
        start = time.perf_counter()
        path = self.cache_path
        splits = None
        if path is not None and path.is_file():
            try:
                splits = self._load(path)
                self.source = "cache"
            except DataError as exc:
                warnings.warn(f"{exc}; regenerating it", stacklevel=3)
        if splits is None:
            splits = self._generate()
            self.source = "generated" if path is not None else "memory"
            if path is not None:
                try:
                    self._save(path, splits)
                except RobenchError as exc:  # a read-only or full cache: the data are in memory all the same
                    warnings.warn(f"{exc}; the generated data are used without caching them", stacklevel=3)
        self.seconds = time.perf_counter() - start
        return splits

    def _save(self, path: Path, splits: dict[str, TensorClipDataset]) -> None:
        payload = {
            "generator_version": GENERATOR_VERSION,
            "config": self.config.to_dict(),
            "splits": {name: {"rgb": s.rgb, "skeleton": s.skeleton, "label": s.label,
                              "class_names": list(s.class_names), "meta": dict(s.meta)}
                       for name, s in splits.items()},
        }
        with atomic_file(path) as tmp:  # readers see the old state or the whole file
            torch.save(payload, tmp)

    def _load(self, path: Path) -> dict[str, TensorClipDataset]:
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            if payload.get("config") != self.config.to_dict() or payload.get("generator_version") != GENERATOR_VERSION:
                raise ValueError("parameters do not match the file name's hash")
            return {name: TensorClipDataset(s["rgb"], s["skeleton"], s["label"], list(s["class_names"]),
                                            dict(s["meta"]))
                    for name, s in payload["splits"].items()}
        except Exception as exc:  # a corrupt or foreign file: say what to do
            raise DataError(f"synthetic dataset cache {path} is unreadable ({type(exc).__name__}: {exc})") from exc
