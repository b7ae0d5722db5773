"""Corruptions of the skeleton: the failure modes of a pose estimator (a depth camera's body tracker or an
RGB pose model) and of the timing and person bookkeeping around it.

ImageNet-C (Hendrycks & Dietterich 2019) and the video corruption benchmark of Yi et al. (2021) corrupt
pixels; a skeleton stream fails differently. The corruptions here model what a pose estimator typically gets
wrong: noisy joint positions (jitter), joints it loses (missing joints, a body cut off by the frame's edge),
left and right limbs confused, frames without a detection, a clip played at another speed, and the two
persons of a clip swapped or one of them lost.

A skeleton clip is ``[3, T, 25, M]`` in metres (x, y, z in the Kinect camera's frame, y up), with NTU RGB+D's
25 joints (Kinect v2) and M bodies. A joint or body the estimator did not report is all zeros, as in NTU's
files: every corruption here leaves an absent body, and (except where it moves joints in time or between
slots) every absent joint, exactly zero, so no noise appears on a body that is not there.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from robench.corruptions.base import Corruption
from robench.registry import register_corruption

#: NTU RGB+D / Kinect v2 joint indices of the left side and their right-side counterparts: arms (shoulder,
#: elbow, wrist, hand), legs (hip, knee, ankle, foot), hand tip and thumb
LEFT_JOINTS: tuple[int, ...] = (4, 5, 6, 7, 12, 13, 14, 15, 21, 22)
RIGHT_JOINTS: tuple[int, ...] = (8, 9, 10, 11, 16, 17, 18, 19, 23, 24)
#: the joint order with left and right exchanged (its own inverse)
LEFT_RIGHT_PERMUTATION: tuple[int, ...] = tuple(
    RIGHT_JOINTS[LEFT_JOINTS.index(j)] if j in LEFT_JOINTS else
    LEFT_JOINTS[RIGHT_JOINTS.index(j)] if j in RIGHT_JOINTS else j
    for j in range(25))


def _check_skeleton(x: Tensor) -> None:
    if x.dim() != 4 or x.shape[0] != 3:
        raise ValueError(f"expected a skeleton clip [3, T, joints, M], got shape {tuple(x.shape)}")


def present_joints(x: Tensor) -> Tensor:
    """``[T, J, M]`` bool: the joints with any non-zero coordinate (reported by the estimator)."""
    return (x != 0).any(dim=0)


def present_bodies(x: Tensor) -> Tensor:
    """``[M]`` bool: the bodies with any non-zero value in the clip."""
    return (x != 0).flatten(0, 2).any(dim=0)


def swap_left_right(x: Tensor) -> Tensor:
    """``x`` (``[3, T, 25, M]`` or any tensor with the joints on axis 2) with left and right joints exchanged."""
    return x[:, :, list(LEFT_RIGHT_PERMUTATION)]


def _count(share: float, n: int) -> int:
    """How many of ``n`` items a ``share`` is, rounded to the nearest whole item."""
    return min(n, max(0, math.floor(share * n + 0.5)))


def _some_frames(share: float, t: int, generator: torch.Generator) -> Tensor:
    """``round(share * t)`` distinct frame indices, drawn at random."""
    return torch.randperm(t, generator=generator)[: _count(share, t)]


@register_corruption("joint-jitter")
class JointJitter(Corruption):
    """Pose-estimator jitter: Gaussian noise in centimetres on every reported joint coordinate.

    Jitter of the estimated joint positions: independent Gaussian noise on every coordinate of every
    reported joint in every frame (absent joints and bodies stay zero).

    Unit: the noise's standard deviation in centimetres, per coordinate. Body trackers are typically off by
    a few centimetres on joints they see well and by much more on occluded ones; the levels run from
    sub-centimetre noise to a jitter that blurs a hand's motion.
    """

    version = 1
    modality = "skeleton"
    family = "pose"
    levels = (0.5, 1.0, 2.0, 4.0, 8.0)
    unit = "cm (noise std per coordinate)"

    def corrupt(self, x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
        _check_skeleton(x)
        sigma = self.level(severity) / 100.0  # metres
        noise = torch.randn(x.shape, generator=generator, dtype=torch.float32).to(device=x.device, dtype=x.dtype)
        return x + sigma * noise * present_joints(x).unsqueeze(0)


@register_corruption("missing-joints")
class MissingJoints(Corruption):
    """Lost joints: each reported joint zeroed per frame with a probability.

    Lost joints: each reported joint of each body, in each frame, independently set to zero (not
    reported) with a given probability, as when the estimator loses track of it.

    Unit: the probability that a joint is lost in a frame.
    """

    version = 1
    modality = "skeleton"
    family = "pose"
    levels = (0.05, 0.1, 0.2, 0.3, 0.4)
    unit = "probability per joint and frame"

    def corrupt(self, x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
        _check_skeleton(x)
        lost = torch.rand(x.shape[1:], generator=generator) < self.level(severity)  # [T, J, M]
        return x.masked_fill(lost.to(x.device).unsqueeze(0), 0.0)


@register_corruption("missing-frames")
class MissingFrames(Corruption):
    """Frames without a detection: a random share of frames with no body at all (all zeros).

    Frames without a detection: a share of the frames, chosen at random per clip, with no body at all
    (all zeros), as when the tracker fails for a moment.

    Unit: the share of frames emptied (``round(level * T)`` frames).
    """

    version = 1
    modality = "skeleton"
    family = "timing"
    levels = (0.1, 0.2, 0.3, 0.4, 0.5)
    unit = "share of frames emptied"

    def corrupt(self, x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
        _check_skeleton(x)
        out = x.clone()
        out[:, _some_frames(self.level(severity), x.shape[1], generator).to(x.device)] = 0
        return out


@register_corruption("truncated-body")
class TruncatedBody(Corruption):
    """A body cut off by the bottom of the frame: joints below a share of its height zeroed.

    A body cut off by the bottom of the frame: every joint lower than a threshold height is lost (zero).

    Unit: the share of the body's height removed, from the bottom. Per body, the height range is the
    clip's lowest and highest y (y is up) over its reported joints; joints with ``y < lowest + level *
    (highest - lowest)`` are zeroed in the frames where they are that low. The cut is in the camera's
    coordinates, so it is a horizontal line as the bottom edge of an upright camera's view would be.
    """

    version = 1
    modality = "skeleton"
    family = "pose"
    levels = (0.1, 0.2, 0.35, 0.5, 0.65)
    unit = "share of the body height removed"

    def corrupt(self, x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
        _check_skeleton(x)
        share = self.level(severity)
        present = present_joints(x)  # [T, J, M]
        y = x[1]
        inf = torch.tensor(math.inf, dtype=x.dtype, device=x.device)
        low = torch.where(present, y, inf).amin(dim=(0, 1))  # [M]
        high = torch.where(present, y, -inf).amax(dim=(0, 1))
        has = present.any(dim=(0, 1))
        threshold = torch.where(has, low + share * (high - low), -inf)
        cut = present & (y < threshold)
        return x.masked_fill(cut.unsqueeze(0), 0.0)


@register_corruption("left-right-swap")
class LeftRightSwap(Corruption):
    """Left and right confused: left and right limbs exchanged in a random share of frames.

    Left and right confused: in a share of the frames, chosen at random per clip, every body's left and
    right arm, leg, hand tip and thumb are exchanged (:data:`LEFT_RIGHT_PERMUTATION`), a common mistake of
    pose estimators when a person turns or is seen from behind.

    Unit: the share of frames swapped (``round(level * T)`` frames).
    """

    version = 1
    modality = "skeleton"
    family = "pose"
    levels = (0.1, 0.2, 0.3, 0.4, 0.5)
    unit = "share of frames swapped"

    def corrupt(self, x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
        _check_skeleton(x)
        if x.shape[2] != len(LEFT_RIGHT_PERMUTATION):
            raise ValueError(f"left-right-swap needs NTU's 25 joints, got {x.shape[2]}")
        frames = _some_frames(self.level(severity), x.shape[1], generator).to(x.device)
        out = x.clone()
        out[:, frames] = swap_left_right(x[:, frames])
        return out


def resample(x: Tensor, speed: float) -> Tensor:
    """``x`` ``[3, T, J, M]`` played ``speed`` times as fast: output frame t is the clip at time ``t * speed``
    (in frames), linearly interpolated between the two frames around it, and the last frame once the clip
    has ended. A joint missing in either of the two frames takes the nearer frame's value instead (so no joint
    is interpolated towards zero)."""
    t = x.shape[1]
    pos = (torch.arange(t, dtype=torch.float64) * speed).clamp(max=t - 1)
    i0 = pos.floor().long()
    i1 = (i0 + 1).clamp(max=t - 1)
    a = (pos - i0.double()).to(x.dtype).to(x.device).view(1, t, 1, 1)
    i0, i1 = i0.to(x.device), i1.to(x.device)
    x0, x1 = x[:, i0], x[:, i1]
    mixed = (1 - a) * x0 + a * x1
    nearest = torch.where(a < 0.5, x0, x1)
    both = (present_joints(x0) & present_joints(x1)).unsqueeze(0)
    return torch.where(both, mixed, nearest)


@register_corruption("temporal-resample")
class TemporalResample(Corruption):
    """A different playing speed: the clip resampled in time, faster or slower by a factor.

    A different playing speed: the clip played faster or slower than recorded (a different frame rate, or
    a person acting faster or slower), then cut or held to its length.

    Unit: the speed factor away from 1; the direction is drawn per clip: the clip plays ``level`` times as
    fast (its last frame is held once it has ended) or ``level`` times as slow (its end is cut), each with
    probability one half. Higher severities are further from normal speed either way, so 1.25 stands for a
    speed of 1.25 or 0.8. Frames are interpolated linearly (:func:`resample`).
    """

    version = 1
    modality = "skeleton"
    family = "timing"
    levels = (1.25, 1.5, 1.75, 2.0, 2.5)
    unit = "speed factor (faster or slower, drawn per clip)"

    def corrupt(self, x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
        _check_skeleton(x)
        factor = self.level(severity)
        faster = bool(torch.rand((), generator=generator) < 0.5)
        return resample(x, factor if faster else 1.0 / factor)


@register_corruption("second-person-swap")
class SecondPersonSwap(Corruption):
    """The two persons' slots exchanged (bodies 0 and 1); a one-person clip is unchanged.

    The two persons' slots exchanged (body 0 becomes body 1 and the other way round), as when a tracker
    numbers the persons of an interaction differently. A clip whose second body is absent is unchanged.

    Unit: none; one level (the five severities are the same).
    """

    version = 1
    modality = "skeleton"
    family = "persons"
    levels = (1.0, 1.0, 1.0, 1.0, 1.0)
    unit = "one level"

    def corrupt(self, x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
        _check_skeleton(x)
        if x.shape[3] < 2 or not bool(present_bodies(x)[1]):
            return x.clone()
        order = list(range(x.shape[3]))
        order[0], order[1] = 1, 0
        return x[..., order]


@register_corruption("second-person-missing")
class SecondPersonMissing(Corruption):
    """The second person lost: body 1 all zeros.

    The second person lost: body 1 all zeros, as when the tracker misses one of two interacting people.

    Unit: none; one level (the five severities are the same).
    """

    version = 1
    modality = "skeleton"
    family = "persons"
    levels = (1.0, 1.0, 1.0, 1.0, 1.0)
    unit = "one level"

    def corrupt(self, x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
        _check_skeleton(x)
        out = x.clone()
        if x.shape[3] >= 2:
            out[..., 1] = 0
        return out
