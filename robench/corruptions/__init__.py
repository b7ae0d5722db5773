"""Built-in corruptions of the RGB video and the skeleton, with five severities each (``robench.corruptions``).

See :mod:`robench.corruptions.base` for the contract and ``docs/corruptions.md`` for every corruption's
severities in physical units. Add your own by subclassing :class:`~robench.corruptions.base.Corruption`
and decorating it with ``@robench.registry.register_corruption("name")``.

Built-ins, one module per group: :mod:`~robench.corruptions.rgb` (noise, blur, brightness, contrast,
occlusion), :mod:`~robench.corruptions.video` (H.264, dropped frames, a lower frame rate),
:mod:`~robench.corruptions.skeleton` (pose-estimator failures, timing, persons) and
:mod:`~robench.corruptions.modality` (a whole input missing).
"""

from robench.corruptions.base import SEVERITIES, Corruption
from robench.corruptions.modality import RGBBlank, RGBMissing, SkeletonMissing
from robench.corruptions.rgb import (
    Brightness,
    Contrast,
    DefocusBlur,
    GaussianNoise,
    MotionBlur,
    Occlusion,
    ShotNoise,
)
from robench.corruptions.skeleton import (
    JointJitter,
    LeftRightSwap,
    MissingFrames,
    MissingJoints,
    SecondPersonMissing,
    SecondPersonSwap,
    TemporalResample,
    TruncatedBody,
)
from robench.corruptions.video import H264, FrameDrop, FrameRate

__all__ = [
    "H264",
    "SEVERITIES",
    "Brightness",
    "Contrast",
    "Corruption",
    "DefocusBlur",
    "FrameDrop",
    "FrameRate",
    "GaussianNoise",
    "JointJitter",
    "LeftRightSwap",
    "MissingFrames",
    "MissingJoints",
    "MotionBlur",
    "Occlusion",
    "RGBBlank",
    "RGBMissing",
    "SecondPersonMissing",
    "SecondPersonSwap",
    "ShotNoise",
    "SkeletonMissing",
    "TemporalResample",
    "TruncatedBody",
]
