"""Plausible skeletons: a threat model that keeps an adversarial skeleton a human body, and how plausible
any adversarial skeleton is.

The paper's skeleton threat model is an L-inf ball of ``eps`` metres around every joint coordinate. A
point of that ball can stretch a forearm by 6 cm, bend an elbow backwards or make a wrist jitter from
frame to frame, which no pose estimator would report. Skeleton-attack work bounds exactly these
(Zheng et al.'s ADMM attack: relative tolerances of 0.01 on bone lengths, 0.1 on joint angles and 0.1
on velocities). :class:`SkeletonLimits` states such bounds, relative to the clean clip:

* **bone lengths**: ``| |b'| - |b| | <= bone * |b|`` for every bone of every frame;
* **joint angles**: the angle at a joint between its parent bone and each child bone,
  ``|theta' - theta| <= angle * theta`` (radians);
* **velocity**: ``||v'_tj - v_tj|| <= velocity * mean speed`` for every joint and frame pair, where
  ``v_tj = x_{t+1,j} - x_tj`` and the mean speed is the clean clip's mean of ``||v_tj||`` (one person);
* **acceleration**: the same with ``a_tj = v_{t+1,j} - v_tj`` and the clean clip's mean ``||a_tj||``;

on top of the L-inf ball and the valid range, which stay.

**How it is enforced: exact, cheap, and composing with every attack.** :func:`project_plausible` is a feasibility
map, not a Euclidean projection: it scales the perturbation towards the clean clip, ``x + s * (x' - x)``,
first with one factor per frame and person for the frame-local constraints (bones, angles), then with one
factor per clip and person for the temporal ones (velocity, acceleration), each the largest factor a
bisection finds feasible. Scaling towards the clean clip never leaves the L-inf ball or the valid range
(both are convex and contain the clean clip), and the factor 0 (the clean clip) satisfies every
constraint, so every output satisfies every constraint exactly (checked, up to float rounding, by
:func:`violations`). An attack applies it inside its own projection (after every step, as PGD clips to
the ball), so gradient attacks and Square search the constrained set rather than being cut back once
at the end. The alternatives considered: attacking in the kinematic tree's coordinates (root plus bone
directions of fixed length) is exact for bone lengths only, and its L-inf ball is no longer the paper's;
an exact Euclidean projection onto the intersection needs an iterative solver per step (ADMM).

Units: positions in the data's units (metres for NTU RGB+D and the synthetic data); displacements are
reported in centimetres on that reading. Joints follow NTU RGB+D's 25-joint layout (every robench
dataset uses it); an absent person (all coordinates zero) has bones of length 0 and so may not move.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from robench.data.synthetic.skeleton import BONES

#: joints of the layout (NTU RGB+D's 25)
JOINTS = 25
#: (child, parent) bones of the 25-joint layout, as index tensors
_CHILD = torch.tensor([c for c, _ in BONES])
_PARENT = torch.tensor([p for _, p in BONES])
#: joint angles: (bone into the joint, bone out of it), as indices into BONES
_ANGLES = torch.tensor([(i, k) for i, (c, _) in enumerate(BONES) for k, (_, p2) in enumerate(BONES) if p2 == c])
_BISECTIONS = 10  # factor resolution 2^-10
_SLACK = 1e-3  # the projection aims this fraction inside each tolerance, so float rounding never crosses it


@dataclass(frozen=True)
class SkeletonLimits:
    """Relative tolerances of a plausible skeleton, against the clean clip (see the module docstring).

    Args:
        bone: bone length change, a fraction of the clean length (0.01 = 1%).
        angle: joint angle change, a fraction of the clean angle.
        velocity: change of a joint's frame-to-frame displacement, a fraction of the clip's mean speed.
        acceleration: change of a joint's second difference, a fraction of the clip's mean.
    """

    bone: float = 0.01
    angle: float = 0.1
    velocity: float = 0.1
    acceleration: float = 0.1

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not 0 <= value < math.inf:
                raise ValueError(f"plausible skeleton limit {name} must be a finite number >= 0, got {value}")

    @classmethod
    def of(cls, value: SkeletonLimits | Mapping[str, float] | None) -> SkeletonLimits | None:
        if value is None or isinstance(value, SkeletonLimits):
            return value
        unknown = sorted(set(value) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"plausible skeleton limits: unknown key(s) {unknown}; allowed: "
                             f"{', '.join(cls.__dataclass_fields__)}")
        return cls(**{k: float(v) for k, v in value.items()})

    def as_params(self) -> dict[str, float]:
        return asdict(self)


#: the tolerances every skeleton cell's plausibility is measured against (Zheng et al.'s)
REFERENCE_LIMITS = SkeletonLimits()


def _joints(x: Tensor) -> Tensor:
    """``[B, C, T, V, M]`` -> ``[C, B, M, T, V]``: the coordinate axis first, so that norms and cross
    products are elementwise arithmetic on three contiguous slabs (much faster than reducing a last axis
    of size 3)."""
    return x.permute(1, 0, 4, 2, 3).contiguous()


def _bones(p: Tensor) -> Tensor:
    return p[..., _CHILD.to(p.device)] - p[..., _PARENT.to(p.device)]


def _pairs(b: Tensor) -> tuple[Tensor, Tensor]:
    """The two bones of each joint angle: the bone into the joint (reversed) and the bone out of it."""
    idx = _ANGLES.to(b.device)
    return -b[..., idx[:, 0]], b[..., idx[:, 1]]


def _norm(v: Tensor) -> Tensor:
    """Euclidean norm over the (first) coordinate axis."""
    return (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt()


def _angle(u: Tensor, v: Tensor) -> Tensor:
    """The angle (radians) between vectors ``u`` and ``v`` (coordinates first)."""
    cross = torch.stack([u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0]])
    return torch.atan2(_norm(cross), u[0] * v[0] + u[1] * v[1] + u[2] * v[2])


def _bone_change(b: Tensor, b0: Tensor) -> tuple[Tensor, Tensor]:
    """Per bone: the absolute change of its length and its clean length."""
    len0 = _norm(b0)
    return (_norm(b) - len0).abs(), len0


def _angle_change(uv: tuple[Tensor, Tensor], uv0: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """Per joint angle: the absolute change (0 where a clean bone has no length, so the angle is undefined)
    and the clean angle, in radians."""
    ang0 = _angle(*uv0)
    defined = (_norm(uv0[0]) > 1e-9) & (_norm(uv0[1]) > 1e-9)
    return torch.where(defined, (_angle(*uv) - ang0).abs(), torch.zeros_like(ang0)), ang0


def _frame_excess(b: Tensor, b0: Tensor, uv: tuple[Tensor, Tensor], uv0: tuple[Tensor, Tensor],
                  bone: float | None, angle: float | None, slack: float) -> Tensor:
    """Per (B, M, T): the worst ratio of a frame-local change to its tolerance (<= 1: feasible), from bone
    vectors ``b`` (``[3, B, M, T, bones]``), the bone pairs of the joint angles ``uv`` and their clean
    values; a tolerance of None is not checked."""
    worst = torch.zeros(b.shape[1:4], dtype=b.dtype, device=b.device)
    if bone is not None:
        change, len0 = _bone_change(b, b0)
        worst = torch.maximum(worst, _ratio(change, bone * len0, slack).amax(-1))
    if angle is not None:
        change, ang0 = _angle_change(uv, uv0)
        worst = torch.maximum(worst, _ratio(change, angle * ang0, slack).amax(-1))
    return worst


def _differences(p: Tensor) -> tuple[Tensor, Tensor]:
    """Velocities and accelerations of joint positions ``[3, B, M, T, V]`` along T."""
    v = p[:, :, :, 1:] - p[:, :, :, :-1]
    return v, v[:, :, :, 1:] - v[:, :, :, :-1]


def _motion_change(now: Tensor, was: Tensor) -> tuple[Tensor, Tensor]:
    """Per (B, M, frame, joint): the change of a velocity (or acceleration) vector, and per (B, M) the clean
    clip's mean of its length (the scale its tolerance is a fraction of)."""
    return _norm(now - was), _norm(was).mean(dim=(2, 3))


def _clip_excess(d: tuple[Tensor, Tensor], d0: tuple[Tensor, Tensor], velocity: float | None,
                 acceleration: float | None, slack: float) -> Tensor:
    """Per (B, M), from velocities and accelerations ``d`` and their clean values ``d0``: the worst ratio
    of a temporal change to its tolerance."""
    worst = torch.zeros(d[0].shape[1:3], dtype=d[0].dtype, device=d[0].device)
    for tol, now, was in ((velocity, d[0], d0[0]), (acceleration, d[1], d0[1])):
        if tol is None or now.shape[3] == 0:
            continue
        change, scale = _motion_change(now, was)
        worst = torch.maximum(worst, _ratio(change.amax(dim=(2, 3)), tol * scale, slack))
    return worst


def _ratio(change: Tensor, allowed: Tensor, slack: float) -> Tensor:
    """``change / (allowed * (1 - slack))``, with 0/0 = 0 and x/0 = inf."""
    allowed = allowed * (1 - slack)
    out = change / allowed.clamp(min=1e-30)
    return torch.where(change <= 1e-12, torch.zeros_like(out), torch.where(allowed > 0, out, torch.full_like(out,
                                                                                                          math.inf)))


class _FrameCheck:
    """The frame-local limits as bands on squared bone lengths and on the cosines of joint angles,
    precomputed from the clean clip: each feasibility test is then a few multiply-adds per bone (no
    square roots of every bone, no arc tangents), for the bisection's many tests."""

    def __init__(self, b0: Tensor, uv0: tuple[Tensor, Tensor], limits: SkeletonLimits) -> None:
        tight = 1 - _SLACK
        len0 = _norm(b0)
        self.len_lo = (len0 * (1 - limits.bone * tight)).clamp(min=0) ** 2
        self.len_hi = (len0 * (1 + limits.bone * tight)) ** 2
        ang0 = _angle(*uv0)
        self.defined = (_norm(uv0[0]) > 1e-9) & (_norm(uv0[1]) > 1e-9)
        # cos falls on [0, pi]: theta within [theta0 (1 - a), theta0 (1 + a)] <=> cos theta within these
        self.cos_lo = torch.cos((ang0 * (1 + limits.angle * tight)).clamp(max=math.pi))
        self.cos_hi = torch.cos((ang0 * (1 - limits.angle * tight)).clamp(min=0))

    def __call__(self, b: Tensor, uv: tuple[Tensor, Tensor]) -> Tensor:
        """Per (B, M, T): every bone and joint angle of the frame within its band (bool)."""
        sq = b[0] * b[0] + b[1] * b[1] + b[2] * b[2]
        ok = ((sq >= self.len_lo) & (sq <= self.len_hi)).all(-1)
        u, v = uv
        dot = u[0] * v[0] + u[1] * v[1] + u[2] * v[2]
        size = ((u[0] * u[0] + u[1] * u[1] + u[2] * u[2]) * (v[0] * v[0] + v[1] * v[1] + v[2] * v[2])).sqrt()
        inside = (dot >= self.cos_lo * size) & (dot <= self.cos_hi * size)
        return ok & (inside | ~self.defined).all(-1)


def _largest_factor(feasible: Any, shape: torch.Size, device: torch.device, dtype: torch.dtype) -> Tensor:
    """The largest s in [0, 1] (to 2^-10) with ``feasible(s)``, elementwise over ``shape``;
    0 is assumed feasible and the result is always a tested feasible point (or 0)."""
    lo = torch.zeros(shape, dtype=dtype, device=device)
    one = torch.ones(shape, dtype=dtype, device=device)
    ok = feasible(one)
    hi = one.clone()
    lo = torch.where(ok, one, lo)
    for _ in range(_BISECTIONS):
        mid = (lo + hi) / 2
        good = feasible(mid) & ~ok
        lo = torch.where(good, mid, lo)
        hi = torch.where(good | ok, hi, mid)
    return lo


def project_plausible(x_adv: Tensor, x: Tensor, limits: SkeletonLimits) -> Tensor:
    """``x_adv`` (a skeleton ``[B, C, T, V, M]`` inside its L-inf ball) moved towards the clean ``x`` until
    every constraint of ``limits`` holds (see the module docstring)."""
    if x.shape[3] != JOINTS:
        raise ValueError(f"plausible skeletons need the 25-joint layout, got {x.shape[3]} joints")
    with torch.no_grad():
        work = torch.float64
        clean, delta = _joints(x).to(work), _joints(x_adv - x).to(work)
        if not bool((delta != 0).any()):
            return x_adv

        # every quantity below is linear in the factor: its clean value and its change are computed once
        b0, db = _bones(clean), _bones(delta)
        uv0, duv = _pairs(b0), _pairs(db)
        frame_ok = _FrameCheck(b0, uv0, limits)

        def frame(k: Tensor) -> Tensor:
            return frame_ok(b0 + k * db, (uv0[0] + k * duv[0], uv0[1] + k * duv[1]))

        alpha = _largest_factor(lambda s: frame(s[None, ..., None]), delta.shape[1:4], delta.device, work)
        scale = alpha[None, ..., None]
        delta, db, duv = scale * delta, scale * db, (scale * duv[0], scale * duv[1])
        d0, dd = _differences(clean), _differences(delta)

        def clip_ok(s: Tensor) -> Tensor:
            k = s[None, :, :, None, None]
            moved = (d0[0] + k * dd[0], d0[1] + k * dd[1])
            return (_clip_excess(moved, d0, limits.velocity, limits.acceleration, _SLACK) <= 1) & frame(k).all(-1)

        beta = _largest_factor(clip_ok, delta.shape[1:3], delta.device, work)  # [B, M]
        delta = beta[None, :, :, None, None] * delta
        back = delta.permute(1, 0, 3, 4, 2)  # [C, B, M, T, V] -> [B, C, T, V, M]
        out = x + back.to(x.dtype)
        # (the frame factors shrink deltas, so float rounding can only move the output towards x: keep x's
        # exact values where no change was kept)
        return torch.where(back == 0, x, out)


def violations(x_adv: Tensor, x: Tensor, limits: SkeletonLimits, tolerance: float = 1e-2) -> dict[str, Tensor]:
    """Per clip (bool ``[B]``): which constraints of ``limits`` ``x_adv`` breaks by more than ``tolerance``
    of the tolerance (room for float rounding). Keys: ``bone``, ``angle``, ``velocity``, ``acceleration``."""
    with torch.no_grad():
        p, clean = _joints(x_adv).double(), _joints(x).double()
        b, b0 = _bones(p), _bones(clean)
        uv, uv0 = _pairs(b), _pairs(b0)
        d, d0 = _differences(p), _differences(clean)
        return {
            "bone": (_frame_excess(b, b0, uv, uv0, limits.bone, None, -tolerance) > 1).flatten(1).any(1),
            "angle": (_frame_excess(b, b0, uv, uv0, None, limits.angle, -tolerance) > 1).flatten(1).any(1),
            "velocity": (_clip_excess(d, d0, limits.velocity, None, -tolerance) > 1).any(1),
            "acceleration": (_clip_excess(d, d0, None, limits.acceleration, -tolerance) > 1).any(1),
        }


def plausibility(x_adv: Tensor, x: Tensor, limits: SkeletonLimits = REFERENCE_LIMITS) -> dict[str, Tensor]:
    """How plausible adversarial skeletons are, per clip (float ``[B]``), present persons only:

    ``bone_violations`` / ``angle_violations``: the fraction of (frame, bone) and (frame, joint angle)
    pairs whose change exceeds ``limits``; ``velocity_violations``: the fraction of (frame pair, joint)
    whose velocity change exceeds it; ``mean_displacement_cm`` / ``max_displacement_cm``: the joints'
    Euclidean displacement, in centimetres if the data is in metres.
    """
    with torch.no_grad():
        p, clean = _joints(x_adv).double(), _joints(x).double()
        present = clean.abs().amax(dim=(0, 3, 4)) > 0  # [B, M]
        weight = present[:, :, None, None].double()
        b, b0 = _bones(p), _bones(clean)
        change, len0 = _bone_change(b, b0)
        bone_bad = change > limits.bone * len0 + 1e-9
        change, ang0 = _angle_change(_pairs(b), _pairs(b0))
        angle_bad = change > limits.angle * ang0 + 1e-9
        (v, _), (v0, _) = _differences(p), _differences(clean)
        change, speed = _motion_change(v, v0)
        velocity_bad = change > limits.velocity * speed[:, :, None, None] + 1e-9
        shift = _norm(p - clean) * 100  # [B, M, T, V], cm

        def rate(bad: Tensor) -> Tensor:
            w = weight.expand_as(bad)
            return (bad.double() * w).sum(dim=(1, 2, 3)) / w.sum(dim=(1, 2, 3)).clamp(min=1)

        w = weight.expand_as(shift)
        return {"bone_violations": rate(bone_bad), "angle_violations": rate(angle_bad),
                "velocity_violations": rate(velocity_bad) if v.shape[3] else torch.zeros(p.shape[1], dtype=p.dtype),
                "mean_displacement_cm": (shift * w).sum(dim=(1, 2, 3)) / w.sum(dim=(1, 2, 3)).clamp(min=1),
                "max_displacement_cm": (shift * w).amax(dim=(1, 2, 3))}
