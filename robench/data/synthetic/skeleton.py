"""NTU 25-joint body: joint layout, bone list, body proportions and forward kinematics.

Joint order and bones follow NTU RGB+D (Kinect v2 joint numbering); the constants here are
0-based (NTU documents them 1-based). Lengths are metres.

**Body frame.** A body is built in its own frame: ``x`` = the subject's left, ``y`` = up, ``z`` = the
subject's back (the subject faces ``-z``). This frame has the same handedness as the Kinect camera frame
used by robench (``x`` right in the image, ``y`` up, ``z`` away from the camera), so a subject with body
yaw 0 placed in front of the camera faces it, with the left hand on the image's right.

**Kinematics.** The FK tree (:data:`PARENTS`) has SpineBase as root; every node ``j`` has a rest offset
``o_j`` (the bone vector from its parent, in the parent's frame) and a local rotation ``L_j`` that rotates
*the bone ending at j* and everything below it:

    ``G_j = G_parent(j) @ L_j``,   ``P_j = P_parent(j) + G_j @ o_j``.

So the "shoulder" angles live on the elbow node (they turn the upper arm), the "hip" angles on the knee
node, and so on; :mod:`.actions` hides this behind named setters. ``L_j = Ry(ay) @ Rz(az) @ Rx(ax)``
(angles in radians): first ``ax`` about the lateral axis (positive swings a hanging limb forward), then
``az`` about the front-back axis, then ``ay`` about the vertical axis. Two render-only nodes follow the 25
joints: a hair point and a face point, rigidly attached to the head.

Because every node is a rigid transform of its parent, every bone keeps its length in every frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

# --- NTU joint indices (0-based) -------------------------------------------------------------------
SPINE_BASE, SPINE_MID, NECK, HEAD = 0, 1, 2, 3
L_SHOULDER, L_ELBOW, L_WRIST, L_HAND = 4, 5, 6, 7
R_SHOULDER, R_ELBOW, R_WRIST, R_HAND = 8, 9, 10, 11
L_HIP, L_KNEE, L_ANKLE, L_FOOT = 12, 13, 14, 15
R_HIP, R_KNEE, R_ANKLE, R_FOOT = 16, 17, 18, 19
SPINE_SHOULDER, L_HAND_TIP, L_THUMB, R_HAND_TIP, R_THUMB = 20, 21, 22, 23, 24
#: render-only nodes appended after the 25 joints
HAIR, FACE = 25, 26

NUM_JOINTS = 25
NUM_NODES = 27

JOINT_NAMES: tuple[str, ...] = (
    "SpineBase", "SpineMid", "Neck", "Head",
    "ShoulderLeft", "ElbowLeft", "WristLeft", "HandLeft",
    "ShoulderRight", "ElbowRight", "WristRight", "HandRight",
    "HipLeft", "KneeLeft", "AnkleLeft", "FootLeft",
    "HipRight", "KneeRight", "AnkleRight", "FootRight",
    "SpineShoulder", "HandTipLeft", "ThumbLeft", "HandTipRight", "ThumbRight",
)

#: NTU bones, 1-based as NTU RGB+D documents them (child, parent)
NTU_BONES_1BASED: tuple[tuple[int, int], ...] = (
    (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9), (11, 10),
    (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19), (22, 23),
    (23, 8), (24, 25), (25, 12),
)
#: the same bones, 0-based
BONES: tuple[tuple[int, int], ...] = tuple((a - 1, b - 1) for a, b in NTU_BONES_1BASED)

#: FK parent of every node (-1 for the root). Thumb and hand tip hang rigidly off the hand.
PARENTS: tuple[int, ...] = (
    -1, SPINE_BASE, SPINE_SHOULDER, NECK,
    SPINE_SHOULDER, L_SHOULDER, L_ELBOW, L_WRIST,
    SPINE_SHOULDER, R_SHOULDER, R_ELBOW, R_WRIST,
    SPINE_BASE, L_HIP, L_KNEE, L_ANKLE,
    SPINE_BASE, R_HIP, R_KNEE, R_ANKLE,
    SPINE_MID, L_HAND, L_HAND, R_HAND, R_HAND,
    HEAD, HEAD,
)


def _topological_order() -> tuple[int, ...]:
    order: list[int] = []
    done: set[int] = set()
    while len(order) < NUM_NODES:
        for j, p in enumerate(PARENTS):
            if j not in done and (p == -1 or p in done):
                order.append(j)
                done.add(j)
    return tuple(order)


#: nodes ordered parents-first
FK_ORDER: tuple[int, ...] = _topological_order()

#: nodes on the subject's right side, whose angles are mirrored (see :mod:`.actions`)
RIGHT_SIDE: tuple[int, ...] = (R_SHOULDER, R_ELBOW, R_WRIST, R_HAND, R_HIP, R_KNEE, R_ANKLE, R_FOOT,
                               R_HAND_TIP, R_THUMB)
#: nodes used to put the body on the floor (lowest of them touches y = 0)
FEET: tuple[int, ...] = (L_ANKLE, L_FOOT, R_ANKLE, R_FOOT)

# Rest offsets (metres, for a 1.75 m tall reference body) and the proportion group that scales them.
# Groups: 0 torso, 1 arm, 2 leg, 3 shoulder width, 4 hip width, 5 head.
_REST: dict[int, tuple[tuple[float, float, float], int]] = {
    SPINE_MID: ((0.0, 0.27, 0.0), 0),
    SPINE_SHOULDER: ((0.0, 0.24, 0.0), 0),
    NECK: ((0.0, 0.07, 0.0), 0),
    HEAD: ((0.0, 0.11, 0.0), 5),
    L_SHOULDER: ((0.17, -0.03, 0.0), 3),
    L_ELBOW: ((0.0, -0.28, 0.0), 1),
    L_WRIST: ((0.0, -0.25, 0.0), 1),
    L_HAND: ((0.0, -0.07, 0.0), 1),
    L_HAND_TIP: ((0.0, -0.07, 0.0), 1),
    L_THUMB: ((-0.01, -0.02, -0.045), 1),
    L_HIP: ((0.085, -0.06, 0.0), 4),
    L_KNEE: ((0.0, -0.42, 0.0), 2),
    L_ANKLE: ((0.0, -0.41, 0.0), 2),
    L_FOOT: ((0.0, -0.05, -0.10), 2),
    HAIR: ((0.0, 0.035, 0.03), 5),
    FACE: ((0.0, -0.01, -0.03), 5),
}
_MIRROR = {R_SHOULDER: L_SHOULDER, R_ELBOW: L_ELBOW, R_WRIST: L_WRIST, R_HAND: L_HAND,
           R_HAND_TIP: L_HAND_TIP, R_THUMB: L_THUMB, R_HIP: L_HIP, R_KNEE: L_KNEE, R_ANKLE: L_ANKLE,
           R_FOOT: L_FOOT}
REFERENCE_HEIGHT = 1.75  # metres


def _rest_table() -> tuple[Tensor, Tensor]:
    """Rest offsets ``[27, 3]`` (m, reference body) and proportion group ``[27]`` of every node."""
    off = torch.zeros(NUM_NODES, 3)
    grp = torch.zeros(NUM_NODES, dtype=torch.long)
    for j, (vec, g) in _REST.items():
        off[j] = torch.tensor(vec)
        grp[j] = g
    for right, left in _MIRROR.items():
        off[right] = off[left] * torch.tensor([-1.0, 1.0, 1.0])
        grp[right] = grp[left]
    return off, grp


REST_OFFSETS, REST_GROUPS = _rest_table()
NUM_PROPORTION_GROUPS = 6


@dataclass
class BodyShapes:
    """Body shape of a batch of performers.

    Attributes:
        height: ``[P]`` standing height in metres (top of the head to the floor, approximately).
        proportions: ``[P, 6]`` relative scale of the torso, arms, legs, shoulder width, hip width and
            head (1 = reference proportions).
        girth: ``[P]`` relative limb/torso thickness used by the renderer (1 = reference).
    """

    height: Tensor
    proportions: Tensor
    girth: Tensor

    def offsets(self) -> Tensor:
        """Rest bone vectors ``[P, 27, 3]`` in metres, scaled by height and proportions."""
        scale = self.height[:, None] / REFERENCE_HEIGHT * self.proportions[:, REST_GROUPS]  # [P, 27]
        return REST_OFFSETS[None] * scale[..., None]


def sample_body_shapes(n: int, generator: torch.Generator) -> BodyShapes:
    """Draw ``n`` body shapes: height 1.50-1.92 m, proportions +-8 % (widths +-15 %), girth 0.85-1.25."""
    u = torch.rand(n, 2 + NUM_PROPORTION_GROUPS, generator=generator)
    height = 1.50 + 0.42 * u[:, 0]
    spread = torch.tensor([0.08, 0.08, 0.08, 0.15, 0.15, 0.06])
    proportions = 1.0 + spread * (2.0 * u[:, 1:1 + NUM_PROPORTION_GROUPS] - 1.0)
    girth = 0.85 + 0.40 * u[:, -1]
    return BodyShapes(height, proportions, girth)


def rotation_matrices(angles: Tensor) -> Tensor:
    """``L = Ry(ay) @ Rz(az) @ Rx(ax)`` for angles ``[..., 3]`` = (ax, az, ay) in radians -> ``[..., 3, 3]``."""
    ax, az, ay = angles.unbind(-1)
    cx, sx, cz, sz, cy, sy = ax.cos(), ax.sin(), az.cos(), az.sin(), ay.cos(), ay.sin()
    # Closed form of Ry @ Rz @ Rx.
    m = torch.stack([
        cy * cz, -cy * sz * cx + sy * sx, cy * sz * sx + sy * cx,
        sz, cz * cx, -cz * sx,
        -sy * cz, sy * sz * cx + cy * sx, -sy * sz * sx + cy * cx,
    ], dim=-1)
    return m.reshape(*angles.shape[:-1], 3, 3)


def yaw_matrix(yaw: Tensor) -> Tensor:
    """Rotation about the vertical axis, ``yaw [...]`` in radians -> ``[..., 3, 3]``."""
    zero = torch.zeros_like(yaw)
    return rotation_matrices(torch.stack([zero, zero, yaw], dim=-1))


def forward_kinematics(angles: Tensor, offsets: Tensor) -> Tensor:
    """Node positions of bodies in their own frame (root at the origin, no root rotation).

    Args:
        angles: ``[B, T, 25, 3]`` local rotation (ax, az, ay) in radians of the bone ending at each joint
            (entries of the root and of rigid bones are ignored where not used).
        offsets: ``[B, 27, 3]`` rest bone vectors in metres (:meth:`BodyShapes.offsets`).

    Returns:
        ``[B, T, 27, 3]`` positions in metres (25 NTU joints, then the hair and face points).
    """
    b, t = angles.shape[:2]
    local = rotation_matrices(angles)  # [B, T, 25, 3, 3]
    eye = torch.eye(3, dtype=angles.dtype).expand(b, t, 3, 3)
    glob: list[Tensor | None] = [None] * NUM_NODES
    pos: list[Tensor | None] = [None] * NUM_NODES
    for j in FK_ORDER:
        p = PARENTS[j]
        if p < 0:
            glob[j] = eye
            pos[j] = torch.zeros(b, t, 3, dtype=angles.dtype)
            continue
        g = glob[p] if j >= NUM_JOINTS else glob[p] @ local[:, :, j]  # type: ignore[operator]
        glob[j] = g
        pos[j] = pos[p] + (g @ offsets[:, None, j, :, None]).squeeze(-1)  # type: ignore[operator]
    return torch.stack(pos, dim=2)  # type: ignore[arg-type]
