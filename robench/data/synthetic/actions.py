"""The motion library: every class is a set of joint-angle trajectories that drive the body's kinematics.

An action is a function of a :class:`MotionContext` (clip time, repetition phase, amplitude and a few
label-independent random numbers, all per clip) returning one :class:`Pose` per person. A pose holds
joint angles in degrees over time (set through anatomical setters such as :meth:`Pose.shoulder`) and
a root offset in metres in the body's own frame (``x`` left, ``y`` up, ``z`` back; see
:mod:`.skeleton`). Angles of the right side are given in the same anatomical sense as the left side
(positive abduction = away from the body) and mirrored internally.

Nothing here touches appearance, camera or background: the label selects the action function and
nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from robench.data.synthetic import skeleton as sk

Value = Tensor | float

# node that stores the rotation of each anatomical joint (the bone *below* the joint), per side
_SHOULDER = {"L": sk.L_ELBOW, "R": sk.R_ELBOW}
_ELBOW = {"L": sk.L_WRIST, "R": sk.R_WRIST}
_WRIST = {"L": sk.L_HAND, "R": sk.R_HAND}
_HIP = {"L": sk.L_KNEE, "R": sk.R_KNEE}
_KNEE = {"L": sk.L_ANKLE, "R": sk.R_ANKLE}
_ANKLE = {"L": sk.L_FOOT, "R": sk.R_FOOT}


@dataclass
class MotionContext:
    """Per-clip timing and style of a batch of ``b`` clips of one action, ``T`` time points each.

    Attributes:
        t: ``[b, T]`` time in the clip, 0 (start) to 1 (end).
        phase: ``[b, T]`` repetition phase in radians, ``2 pi * cycles * t + phase0``.
        amp: ``[b, 1]`` amplitude factor (about 0.8-1.2) applied to the main movement.
        onset: ``[b, 1]`` start time (clip fraction, 0.05-0.3) of one-shot movements.
        u: ``[b, 4]`` extra uniform numbers in [0, 1) for style choices (e.g. which arm starts).
    """

    t: Tensor
    phase: Tensor
    amp: Tensor
    onset: Tensor
    u: Tensor

    @property
    def shape(self) -> tuple[int, int]:
        return self.t.shape[0], self.t.shape[1]


class Pose:
    """Joint angles (degrees) and root offset (metres, body frame) of one person over time.

    Setters *add* to the current angles, on top of a relaxed base posture (arms slightly away from
    the torso, elbows and knees slightly bent). Angle arguments are ``[b, T]``, ``[b, 1]`` tensors or
    floats, in degrees.
    """

    def __init__(self, b: int, t: int) -> None:
        self.angles = torch.zeros(b, t, sk.NUM_JOINTS, 3)  # raw (ax, az, ay) in degrees
        self.offset = torch.zeros(b, t, 3)  # metres, body frame: x left, y up (lift), z back
        for side in "LR":
            self.shoulder(side, abd=8.0)
            self.elbow(side, flex=12.0)
            self.knee(side, flex=3.0)

    def _add(self, node: int, ax: Value = 0.0, az: Value = 0.0, ay: Value = 0.0) -> None:
        sign = -1.0 if node in sk.RIGHT_SIDE else 1.0  # mirror the right side
        for k, v in ((0, ax), (1, az), (2, ay)):
            if isinstance(v, Tensor) or v != 0.0:
                self.angles[:, :, node, k] += v if k == 0 else sign * v

    def shoulder(self, side: str, flex: Value = 0.0, abd: Value = 0.0, horiz: Value = 0.0) -> None:
        """Upper arm: ``flex`` forward (90 = arm horizontal in front), ``abd`` sideways (90 = horizontal
        to the side, 180 = up), then ``horiz`` horizontal adduction (towards the midline)."""
        self._add(_SHOULDER[side], flex, abd, horiz)

    def elbow(self, side: str, flex: Value = 0.0, twist: Value = 0.0) -> None:
        """Forearm: ``flex`` elbow flexion, then ``twist`` internal rotation of the upper arm (-90 turns a
        forearm that points forward to point up when the arm is abducted)."""
        self._add(_ELBOW[side], flex, 0.0, twist)

    def wrist(self, side: str, flex: Value = 0.0) -> None:
        """Hand: wrist flexion."""
        self._add(_WRIST[side], flex)

    def hip(self, side: str, flex: Value = 0.0, abd: Value = 0.0, rot: Value = 0.0) -> None:
        """Thigh: ``flex`` forward, ``abd`` sideways, ``rot`` about the vertical."""
        self._add(_HIP[side], flex, abd, rot)

    def knee(self, side: str, flex: Value = 0.0) -> None:
        """Shin: knee flexion (the shin swings backwards)."""
        self._add(_KNEE[side], -flex)

    def ankle(self, side: str, flex: Value = 0.0) -> None:
        """Foot: dorsiflexion (toes up)."""
        self._add(_ANKLE[side], -flex)

    def spine(self, flex: Value = 0.0, bend: Value = 0.0, twist: Value = 0.0) -> None:
        """Torso, shared 55/45 between the lower and upper spine: ``flex`` forward, ``bend`` sideways
        (towards the subject's right), ``twist`` about the vertical."""
        for node, w in ((sk.SPINE_MID, 0.55), (sk.SPINE_SHOULDER, 0.45)):
            self._add(node, -flex * w, bend * w, twist * w)

    def neck(self, flex: Value = 0.0, turn: Value = 0.0) -> None:
        """Neck and head: ``flex`` forward (nod), ``turn`` about the vertical."""
        for node in (sk.NECK, sk.HEAD):
            self._add(node, -flex * 0.5, 0.0, turn * 0.5)

    def move(self, left: Value = 0.0, up: Value = 0.0, forward: Value = 0.0) -> None:
        """Translate the root (metres): ``up`` lifts the body off the floor (jumps)."""
        for k, v in ((0, left), (1, up), (2, forward)):
            if isinstance(v, Tensor) or v != 0.0:
                self.offset[..., k] += -v if k == 2 else v


@dataclass
class ActionOutput:
    """Poses of the persons of one action (1 or 2) and, for two, the distance between their roots (m)."""

    poses: list[Pose]
    separation: Tensor | None = None  # [b, 1] metres between the two roots before their own offsets


ActionFn = Callable[[MotionContext], ActionOutput]


@dataclass(frozen=True)
class ActionSpec:
    """One class: human-readable name, number of persons, repetitions per clip at speed 1, motion."""

    name: str
    persons: int
    cycles: float
    fn: ActionFn


# --- shape helpers ---------------------------------------------------------------------------------
def hump(phase: Tensor) -> Tensor:
    """0 at phase 0, 1 at phase pi: a smooth repetition profile in [0, 1]."""
    return 0.5 * (1.0 - torch.cos(phase))


def smoothstep(x: Tensor) -> Tensor:
    """Smooth ramp from 0 (x <= 0) to 1 (x >= 1)."""
    x = x.clamp(0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _pose(ctx: MotionContext) -> Pose:
    return Pose(*ctx.shape)


def _march(p: Pose, phase: Tensor, amount: Value) -> None:
    """Alternate knee lifts (walking in place) with opposite arm swing; ``amount`` 0-1 scales it."""
    s = torch.sin(phase)
    lift_l, lift_r = s.clamp(min=0.0), (-s).clamp(min=0.0)
    p.hip("L", flex=45.0 * lift_l * amount)
    p.knee("L", flex=75.0 * lift_l * amount)
    p.hip("R", flex=45.0 * lift_r * amount)
    p.knee("R", flex=75.0 * lift_r * amount)
    p.shoulder("L", flex=-25.0 * s * amount)
    p.shoulder("R", flex=25.0 * s * amount)
    p.elbow("L", flex=15.0 * amount)
    p.elbow("R", flex=15.0 * amount)


# --- one-person actions ----------------------------------------------------------------------------
def _wave(side: str) -> ActionFn:
    def fn(ctx: MotionContext) -> ActionOutput:
        p = _pose(ctx)
        p.shoulder(side, flex=15.0, abd=90.0 + 15.0 * (ctx.amp - 1.0))
        p.elbow(side, flex=75.0 + 30.0 * ctx.amp * torch.sin(ctx.phase), twist=-90.0)
        p.wrist(side, flex=10.0 * torch.sin(ctx.phase))
        return ActionOutput([p])
    return fn


def _raise_arms(ctx: MotionContext) -> ActionOutput:
    p = _pose(ctx)
    up = 150.0 * ctx.amp.clamp(max=1.15) * hump(ctx.phase)
    for side in "LR":
        p.shoulder(side, abd=up, flex=10.0)
    return ActionOutput([p])


def _clap(ctx: MotionContext) -> ActionOutput:
    p = _pose(ctx)
    closed = hump(ctx.phase) ** 2
    for side in "LR":
        p.shoulder(side, flex=70.0, abd=-8.0, horiz=18.0 - 45.0 * ctx.amp * (1.0 - closed))
        p.elbow(side, flex=20.0)
    return ActionOutput([p])


def _punch(ctx: MotionContext) -> ActionOutput:
    p = _pose(ctx)
    first = torch.where(ctx.u[:, :1] < 0.5, 0.0, math.pi)
    ext = {"L": hump(ctx.phase + first) ** 2, "R": hump(ctx.phase + first + math.pi) ** 2}
    for side in "LR":
        e = ext[side] * ctx.amp.clamp(max=1.0)
        p.shoulder(side, flex=40.0 + 50.0 * e, abd=-5.0, horiz=15.0)
        p.elbow(side, flex=125.0 * (1.0 - e))
    p.spine(twist=15.0 * (ext["L"] - ext["R"]))
    return ActionOutput([p])


def _kick(ctx: MotionContext) -> ActionOutput:
    p = _pose(ctx)
    k = hump(ctx.phase)
    p.hip("R", flex=80.0 * ctx.amp * k)
    p.knee("R", flex=240.0 * k * (1.0 - k))  # chambered mid-way, straight at full extension
    p.spine(flex=-10.0 * k)
    for side in "LR":
        p.shoulder(side, abd=20.0)
    return ActionOutput([p])


def _squat(ctx: MotionContext) -> ActionOutput:
    p = _pose(ctx)
    s = hump(ctx.phase) * ctx.amp.clamp(max=1.05)
    for side in "LR":
        p.hip(side, flex=95.0 * s)
        p.knee(side, flex=115.0 * s)
        p.shoulder(side, flex=80.0 * s)
    p.spine(flex=20.0 * s)
    return ActionOutput([p])


def _jump(ctx: MotionContext) -> ActionOutput:
    p = _pose(ctx)
    s = torch.sin(ctx.phase)
    crouch, air = (-s).clamp(min=0.0), s.clamp(min=0.0)
    for side in "LR":
        p.hip(side, flex=45.0 * crouch + 10.0 * air)
        p.knee(side, flex=80.0 * crouch + 20.0 * air)
        p.shoulder(side, flex=-35.0 * crouch + 140.0 * air * ctx.amp.clamp(max=1.1))
    p.spine(flex=20.0 * crouch)
    p.move(up=0.22 * ctx.amp * air)
    return ActionOutput([p])


def _bow(ctx: MotionContext) -> ActionOutput:
    p = _pose(ctx)
    b = 55.0 * hump(ctx.phase) * ctx.amp
    p.spine(flex=b)
    p.neck(flex=0.2 * b)
    for side in "LR":
        p.shoulder(side, flex=0.85 * b)  # arms keep hanging down
    return ActionOutput([p])


def _walk_in_place(ctx: MotionContext) -> ActionOutput:
    p = _pose(ctx)
    _march(p, ctx.phase, ctx.amp)
    return ActionOutput([p])


def _twist(ctx: MotionContext) -> ActionOutput:
    p = _pose(ctx)
    p.spine(twist=45.0 * ctx.amp * torch.sin(ctx.phase))
    for side in "LR":
        p.shoulder(side, abd=75.0)
    return ActionOutput([p])


def _arm_circles(ctx: MotionContext) -> ActionOutput:
    p = _pose(ctx)
    deg = torch.rad2deg(ctx.phase)
    p.shoulder("L", flex=deg, abd=12.0)
    p.shoulder("R", flex=deg + 180.0, abd=12.0)
    return ActionOutput([p])


# --- two-person actions (person 0 = the actor) ---------------------------------------------------
def _handshake(ctx: MotionContext) -> ActionOutput:
    reach = smoothstep((ctx.t - ctx.onset) / 0.3)
    poses = []
    for _ in range(2):
        p = _pose(ctx)
        p.shoulder("R", flex=reach * (45.0 + 10.0 * ctx.amp * torch.sin(ctx.phase)), horiz=20.0 * reach)
        p.elbow("R", flex=25.0 * reach)
        poses.append(p)
    return ActionOutput(poses, separation=1.0 + 0.1 * (ctx.amp - 1.0))


def _push(ctx: MotionContext) -> ActionOutput:
    o = ctx.onset
    push = smoothstep((ctx.t - o) / 0.2) - smoothstep((ctx.t - o - 0.45) / 0.25)
    hit = smoothstep((ctx.t - o - 0.08) / 0.2)
    a = _pose(ctx)
    for side in "LR":
        a.shoulder(side, flex=35.0 + 55.0 * push, horiz=12.0)
        a.elbow(side, flex=90.0 * (1.0 - push) + 10.0)
    a.spine(flex=12.0 * push)
    a.move(forward=0.15 * push)
    b = _pose(ctx)
    b.move(forward=-0.4 * ctx.amp * hit)
    b.spine(flex=-15.0 * hit * (1.0 - hit) * 4.0)
    for side in "LR":
        b.shoulder(side, abd=25.0 * hit, flex=30.0 * hit)
    b.hip("R", flex=-20.0 * hit * (1.0 - hit) * 4.0)  # step back
    return ActionOutput([a, b], separation=torch.full_like(ctx.amp, 0.85))


def _hug(ctx: MotionContext) -> ActionOutput:
    close = smoothstep((ctx.t - ctx.onset) / 0.45)
    walking = 4.0 * close * (1.0 - close)
    poses = []
    for _ in range(2):
        p = _pose(ctx)
        p.move(forward=0.45 * close)
        _march(p, ctx.phase, 0.6 * walking)
        for side in "LR":
            p.shoulder(side, flex=80.0 * close, horiz=45.0 * close)
            p.elbow(side, flex=60.0 * close, twist=80.0 * close)  # forearms wrap around the partner
        poses.append(p)
    return ActionOutput(poses, separation=1.35 + 0.1 * (ctx.amp - 1.0))


def _approach(ctx: MotionContext) -> ActionOutput:
    progress = ((ctx.t - 0.5 * ctx.onset) / 0.9).clamp(0.0, 1.0)
    poses = []
    for _ in range(2):
        p = _pose(ctx)
        p.move(forward=0.6 * ctx.amp.clamp(max=1.1) * progress)
        _march(p, ctx.phase, 0.8)
        poses.append(p)
    return ActionOutput(poses, separation=torch.full_like(ctx.amp, 2.0))


#: the motion library, in class-index order (``classes=k`` keeps the first k). Repetitions per clip are at
#: most 2 at speed 1, so that even 8 RGB frames sample every repetition about 3 times at the fastest
#: default speed (1.35x): faster movements would alias into apparent stillness.
ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("wave right hand", 1, 2.0, _wave("R")),
    ActionSpec("wave left hand", 1, 2.0, _wave("L")),
    ActionSpec("raise both arms", 1, 1.5, _raise_arms),
    ActionSpec("clap hands", 1, 2.0, _clap),
    ActionSpec("punch forward", 1, 1.5, _punch),
    ActionSpec("kick forward", 1, 1.5, _kick),
    ActionSpec("squat", 1, 1.5, _squat),
    ActionSpec("jump up", 1, 1.5, _jump),
    ActionSpec("bow", 1, 1.2, _bow),
    ActionSpec("walk in place", 1, 2.0, _walk_in_place),
    ActionSpec("twist torso", 1, 1.5, _twist),
    ActionSpec("arm circles", 1, 1.5, _arm_circles),
    ActionSpec("handshake", 2, 2.0, _handshake),
    ActionSpec("push other person", 2, 1.0, _push),
    ActionSpec("hug", 2, 2.0, _hug),
    ActionSpec("walk towards each other", 2, 2.0, _approach),
)
ACTION_NAMES: tuple[str, ...] = tuple(a.name for a in ACTIONS)
