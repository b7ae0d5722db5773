"""Generation of the synthetic dataset: configuration, random streams, performers and the clip pipeline.

Pipeline for a block of clips: joint angles of the label's action (+ per-clip style noise) ->
forward kinematics per performer -> feet on the floor -> placement in the scene -> camera space ->
(a) skeleton at ``frames_skeleton`` times + Kinect-like noise and stale joints, (b) RGB at
``frames_rgb`` times: textured background, bodies as capsules, lighting, sensor noise, uint8.

**No label leaks into appearance.** Randomness comes from independent generators keyed by
``(seed, split, stream)``: ``"labels"`` (the balanced label permutation), ``"appearance"`` (performers,
camera, background, lighting), ``"motion"`` (speed, phase, amplitude, style, placement), and per block
of :data:`RNG_BLOCK` clips ``"sensor"`` (joint noise, dropped joints, pixel noise). Only the action
function reads the label, and every draw is made for every clip whatever its label, so forcing another
label onto a clip changes its motion and nothing else (``generate_split(..., labels=...)``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import TypeVar

import torch
from torch import Tensor

from robench import hashing
from robench.data.base import TensorClipDataset
from robench.data.synthetic import render as rd
from robench.data.synthetic import skeleton as sk
from robench.data.synthetic.actions import ACTIONS, MotionContext
from robench.errors import RobenchError

#: bump whenever generated data would change for the same parameters (invalidates caches)
GENERATOR_VERSION = 3
#: clips per block of the "sensor" random stream (part of the data definition: changing it changes data)
RNG_BLOCK = 32
#: largest number of pixels (clips x frames x H x W) rasterised at once (memory bound; does not change data)
RENDER_BUDGET = 1 << 21
SPLITS = ("train", "test")
_D = TypeVar("_D")


@dataclass(frozen=True)
class SyntheticConfig:
    """All parameters of the synthetic dataset; see :class:`robench.data.synthetic.SyntheticDataset`."""

    classes: int = 10
    train_clips_per_class: int = 48
    test_clips_per_class: int = 16
    frames_rgb: int = 16
    frames_skeleton: int = 32
    resolution: int = 32
    width: int = 0
    seed: int = 0
    train_performers: int = 10
    test_performers: int = 6
    joint_noise: float = 0.01
    drop_rate: float = 0.02
    max_yaw: float = 45.0
    max_pitch: float = 10.0
    min_distance: float = 2.5
    max_distance: float = 4.0
    min_speed: float = 0.75
    max_speed: float = 1.35
    amplitude_jitter: float = 0.2
    style_noise: float = 4.0
    lighting: float = 0.25
    pixel_noise: float = 3.0
    scenes: int = 0

    @property
    def height_px(self) -> int:
        return self.resolution

    @property
    def width_px(self) -> int:
        return self.width if self.width > 0 else self.resolution

    def clips_per_class(self, split: str) -> int:
        return self.train_clips_per_class if split == "train" else self.test_clips_per_class

    def validate(self) -> None:
        """Raise :class:`RobenchError` naming the first invalid parameter."""
        def bad(name: str, allowed: str) -> RobenchError:
            return RobenchError(f"synthetic dataset: {name}={getattr(self, name)!r} is invalid; allowed: {allowed}")

        if not 1 <= self.classes <= len(ACTIONS):
            raise bad("classes", f"1..{len(ACTIONS)} (the motion library has {len(ACTIONS)} actions)")
        for name in ("train_clips_per_class", "test_clips_per_class", "frames_rgb", "frames_skeleton"):
            if getattr(self, name) < 1:
                raise bad(name, ">= 1")
        if self.resolution < 8:
            raise bad("resolution", ">= 8 pixels")
        if self.width != 0 and self.width < 8:
            raise bad("width", "0 (= resolution) or >= 8 pixels")
        for name in ("train_performers", "test_performers"):
            if getattr(self, name) < 2:
                raise bad(name, ">= 2 (two-person actions need two distinct performers)")
        for name in ("joint_noise", "amplitude_jitter", "style_noise", "pixel_noise", "max_pitch"):
            if getattr(self, name) < 0:
                raise bad(name, ">= 0")
        if not 0 <= self.drop_rate < 1:
            raise bad("drop_rate", "0 <= drop_rate < 1")
        if not 0 <= self.max_yaw <= 180:
            raise bad("max_yaw", "0..180 degrees")
        if not 0 <= self.lighting < 0.5:
            raise bad("lighting", "0 <= lighting < 0.5")
        if not 1.0 <= self.min_distance <= self.max_distance:
            raise bad("min_distance", f"1.0 <= min_distance <= max_distance ({self.max_distance})")
        if not 0 < self.min_speed <= self.max_speed:
            raise bad("min_speed", f"0 < min_speed <= max_speed ({self.max_speed})")
        if self.scenes < 0:
            raise bad("scenes", ">= 0 (0 = a new background for every clip)")

    def to_dict(self) -> dict[str, int | float]:
        return asdict(self)


CONFIG_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(SyntheticConfig))


def content_hash(cfg: SyntheticConfig) -> str:
    """Hash of every parameter and :data:`GENERATOR_VERSION` (names the cache file)."""
    return hashing.content_hash({**cfg.to_dict(), "generator_version": GENERATOR_VERSION, "rng_block": RNG_BLOCK})


def make_generator(seed: int, *keys: str | int) -> torch.Generator:
    """An independent CPU generator for the stream ``keys`` of ``seed``."""
    return torch.Generator().manual_seed(hashing.derive_seed(seed, *keys))


# --- performers ------------------------------------------------------------------------------------
@dataclass
class Performers:
    """The performer pool: ids ``0..train_performers-1`` act in train clips, the rest in test clips."""

    shapes: sk.BodyShapes
    clothing: Tensor  # [P, NUM_PARTS, 3] RGB in [0, 1]

    @property
    def offsets(self) -> Tensor:
        return self.shapes.offsets()


def performer_pool(cfg: SyntheticConfig) -> Performers:
    """All performers of the dataset (shared by both splits, which use disjoint ids)."""
    n = cfg.train_performers + cfg.test_performers
    g = make_generator(cfg.seed, "performers")
    return Performers(sk.sample_body_shapes(n, g), rd.sample_clothing(n, g))


def split_performer_ids(cfg: SyntheticConfig, split: str) -> Tensor:
    """Pool ids of the performers of ``split`` (int64)."""
    if split == "train":
        return torch.arange(cfg.train_performers)
    return torch.arange(cfg.train_performers, cfg.train_performers + cfg.test_performers)


# --- label-independent per-clip draws --------------------------------------------------------------
@dataclass
class ClipDraws:
    """Every random choice of the clips of a split that is not the label (all ``[N, ...]``).

    Angles are radians unless noted, lengths metres, times fractions of the clip.
    """

    performer: Tensor  # [N, 2] pool ids (actor, partner)
    speed: Tensor  # [N] multiplier of the action's repetitions per clip
    phase0: Tensor  # [N] rad
    amp: Tensor  # [N] amplitude factor
    onset: Tensor  # [N] start of one-shot movements
    u: Tensor  # [N, 4] uniform style choices
    style: Tensor  # [N, 2, 25, 3, 4] per body/DOF: static offset (deg), sway amplitude (deg), freq, phase
    yaw_jitter: Tensor  # [N] body / pair orientation
    position: Tensor  # [N, 2] scene offset (x, z) in metres
    actor_side: Tensor  # [N] +1: actor on the left of the pair axis, -1 on the right
    cam_yaw: Tensor  # [N]
    cam_pitch: Tensor  # [N]
    cam_distance: Tensor  # [N]
    target: Tensor  # [N, 3] look-at point
    view_height: Tensor  # [N] metres spanned by the image height at the target distance
    background: rd.BackgroundParams
    lighting: rd.LightingParams


def _style_mask() -> Tensor:
    """DOFs that get per-clip style noise: spine, neck, shoulders, elbows, hips, knees."""
    m = torch.zeros(sk.NUM_JOINTS, 3)
    m[[sk.SPINE_MID, sk.SPINE_SHOULDER]] = 1.0
    m[[sk.NECK, sk.HEAD], 0] = 1.0
    m[[sk.NECK, sk.HEAD], 2] = 1.0
    m[[sk.L_ELBOW, sk.R_ELBOW]] = 1.0  # shoulder rotation
    m[[sk.L_WRIST, sk.R_WRIST], 0] = 1.5  # elbow flexion
    m[[sk.L_KNEE, sk.R_KNEE], :2] = 0.7  # hip flexion / abduction
    m[[sk.L_ANKLE, sk.R_ANKLE], 0] = 0.7  # knee
    return m


def draw_clips(cfg: SyntheticConfig, split: str, n: int) -> ClipDraws:
    """Label-independent draws for the ``n`` clips of ``split`` (see the module docstring)."""
    ga = make_generator(cfg.seed, split, "appearance")
    ids = split_performer_ids(cfg, split)
    k = len(ids)
    first = torch.randint(k, (n,), generator=ga)
    second = (first + 1 + torch.randint(k - 1, (n,), generator=ga)) % k
    performer = ids[torch.stack([first, second], dim=1)]
    cam = torch.rand(n, 7, generator=ga)
    if cfg.scenes > 0:  # a fixed set of rooms shared by both splits, each clip in one of them
        background = _take(rd.sample_background(cfg.scenes, make_generator(cfg.seed, "scenes")),
                           torch.randint(cfg.scenes, (n,), generator=ga))
    else:
        background = rd.sample_background(n, ga)
    lighting = rd.sample_lighting(n, ga, cfg.lighting, cfg.pixel_noise)

    gm = make_generator(cfg.seed, split, "motion")
    r = torch.rand(n, 12, generator=gm)
    style_u = torch.rand(n, 2, sk.NUM_JOINTS, 3, 4, generator=gm)
    style = torch.stack([
        cfg.style_noise * math.sqrt(3.0) * (2 * style_u[..., 0] - 1),  # static offset, std = style_noise
        0.5 * cfg.style_noise * style_u[..., 1],  # sway amplitude
        0.3 + 1.5 * style_u[..., 2],  # sway frequency, cycles per clip
        2 * math.pi * style_u[..., 3],
    ], dim=-1) * torch.cat([_style_mask()[..., None].expand(-1, -1, 2), torch.ones(sk.NUM_JOINTS, 3, 2)], -1)

    return ClipDraws(
        performer=performer,
        speed=cfg.min_speed + (cfg.max_speed - cfg.min_speed) * r[:, 0],
        phase0=2 * math.pi * r[:, 1],
        amp=1.0 + cfg.amplitude_jitter * (2 * r[:, 2] - 1),
        onset=0.05 + 0.25 * r[:, 3],
        u=r[:, 4:8],
        style=style,
        yaw_jitter=math.radians(15.0) * (2 * r[:, 8] - 1),
        position=0.3 * (2 * r[:, 9:11] - 1),
        actor_side=torch.where(r[:, 11] < 0.5, 1.0, -1.0),
        cam_yaw=math.radians(cfg.max_yaw) * (2 * cam[:, 0] - 1),
        cam_pitch=math.radians(cfg.max_pitch) * (1.25 * cam[:, 1] - 0.25),
        cam_distance=cfg.min_distance + (cfg.max_distance - cfg.min_distance) * cam[:, 2],
        target=torch.stack([0.3 * (cam[:, 3] - 0.5), 0.8 + 0.2 * cam[:, 4], torch.zeros(n)], dim=1),
        view_height=2.0 + 0.6 * cam[:, 5],
        background=background,
        lighting=lighting,
    )


def split_labels(cfg: SyntheticConfig, split: str) -> Tensor:
    """Balanced labels of ``split`` (each class ``clips_per_class`` times) in a random order (int64)."""
    n_per = cfg.clips_per_class(split)
    labels = torch.arange(cfg.classes).repeat_interleave(n_per)
    return labels[torch.randperm(len(labels), generator=make_generator(cfg.seed, split, "labels"))]


def _take(obj: _D, idx: Tensor) -> _D:
    """Index every tensor field of a (nested) dataclass by ``idx``."""
    vals = {}
    for f in fields(obj):  # type: ignore[arg-type]
        v = getattr(obj, f.name)
        vals[f.name] = v[idx] if isinstance(v, Tensor) else _take(v, idx)
    return type(obj)(**vals)


# --- the pipeline ----------------------------------------------------------------------------------
def clip_times(frames: int) -> Tensor:
    """Centres of ``frames`` equal segments of the clip, as fractions of the clip (0-1)."""
    return (torch.arange(frames, dtype=torch.float32) + 0.5) / frames


def _motion(labels: Tensor, d: ClipDraws, times: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Angles ``[B, 2, T, 25, 3]`` (deg), root offsets ``[B, 2, T, 3]`` (m, body frame), pair separation
    ``[B]`` (m) and persons ``[B]`` of a block of clips."""
    b, t = labels.shape[0], times.shape[0]
    angles = torch.zeros(b, 2, t, sk.NUM_JOINTS, 3)
    offsets = torch.zeros(b, 2, t, 3)
    separation = torch.zeros(b)
    persons = torch.ones(b, dtype=torch.long)
    for c in labels.unique().tolist():
        sel = (labels == c).nonzero().squeeze(1)
        spec = ACTIONS[c]
        tt = times[None].expand(len(sel), t)
        cycles = spec.cycles * d.speed[sel, None]
        ctx = MotionContext(t=tt, phase=2 * math.pi * cycles * tt + d.phase0[sel, None], amp=d.amp[sel, None],
                            onset=d.onset[sel, None], u=d.u[sel])
        out = spec.fn(ctx)
        for m, pose in enumerate(out.poses):
            angles[sel, m] = pose.angles
            offsets[sel, m] = pose.offset
        if out.separation is not None:
            separation[sel] = out.separation.expand(len(sel), 1).reshape(-1)
        persons[sel] = spec.persons
    # style: static posture offsets and slow sway, independent of the label
    s = d.style[:, :, None]  # [B, 2, 1, 25, 3, 4]
    tt = times.view(1, 1, t, 1, 1)
    angles += s[..., 0] + s[..., 1] * torch.sin(2 * math.pi * s[..., 2] * tt + s[..., 3])
    return angles, offsets, separation, persons


def _place(nodes: Tensor, offsets: Tensor, separation: Tensor, persons: Tensor, d: ClipDraws) -> Tensor:
    """Body-frame nodes ``[B, 2, T, 27, 3]`` -> world coordinates: feet on the floor, pair layout, yaw, offset."""
    nodes = nodes.clone()
    nodes[..., 1] -= nodes[..., list(sk.FEET), 1].amin(dim=-1, keepdim=True)  # lowest foot on y = 0
    nodes = nodes + offsets[:, :, :, None, :]
    two = (persons == 2).to(nodes.dtype)
    side = d.actor_side * two  # 0 for one person: no offset, facing the scene's front
    face = torch.stack([-side, side], dim=1) * (math.pi / 2)  # actor faces the partner
    base = torch.zeros(len(persons), 2, 3)
    base[:, 0, 0] = -side * separation / 2
    base[:, 1, 0] = side * separation / 2
    rot = sk.yaw_matrix(d.yaw_jitter)[:, None] @ sk.yaw_matrix(face)  # [B, 2, 3, 3]
    world = torch.einsum("bmij,bmtnj->bmtni", rot, nodes)
    world = world + torch.einsum("bij,bmj->bmi", sk.yaw_matrix(d.yaw_jitter), base)[:, :, None, None]
    shift = torch.stack([d.position[:, 0], torch.zeros_like(d.position[:, 0]), d.position[:, 1]], dim=1)
    return world + shift[:, None, None, None]


def _stale_hold(x: Tensor, dropped: Tensor) -> Tensor:
    """Replace dropped joint-frames (``dropped [B, M, T, V]``) by the last tracked value (``x [B, M, T, V, 3]``)."""
    t = x.shape[2]
    keep = ~dropped
    keep[:, :, 0] = True
    src = torch.where(keep, torch.arange(t).view(1, 1, t, 1), 0).cummax(dim=2).values
    return x.gather(2, src[..., None].expand_as(x))


def _render_block(world: Tensor, persons: Tensor, perf: Performers, d: ClipDraws, camera: rd.Camera,
                  noise: Tensor, draw_bodies: bool) -> Tensor:
    """RGB ``uint8 [B, 3, T, H, W]`` of a block of clips; ``world [B, 2, T, 27, 3]`` node positions (m)."""
    h, w = camera.height, camera.width
    intr = camera.intrinsics()
    b, _, t = world.shape[:3]
    frames = rd.render_background(d.background, camera)[:, None].expand(b, t, 3, h, w).contiguous()
    if draw_bodies:
        nodes = camera.to_camera(world)
        colours = perf.clothing[d.performer]  # [B, 2, parts, 3]
        girth = perf.shapes.girth[d.performer] * perf.shapes.height[d.performer] / sk.REFERENCE_HEIGHT
        step = max(1, RENDER_BUDGET // (t * h * w))
        for m in (1, 2):
            group = (persons == m).nonzero().squeeze(1)
            for i in range(0, len(group), step):
                g = group[i:i + step]
                sub = frames[g]
                rd.render_bodies(sub, nodes[g, :m], colours[g, :m], girth[g, :m], intr[g])
                frames[g] = sub
    frames *= rd.lighting_field(d.lighting, clip_times(t), h, w)
    frames += noise * d.lighting.noise_std.view(b, 1, 1, 1, 1)
    rgb = frames.mul_(255.0).round_().clamp_(0.0, 255.0).to(torch.uint8)
    return rgb.permute(0, 2, 1, 3, 4).contiguous()


def generate_split(cfg: SyntheticConfig, split: str, labels: Tensor | None = None,
                   draw_bodies: bool = True) -> TensorClipDataset:
    """Generate the clips of ``split`` ("train" or "test").

    Args:
        cfg: the dataset parameters.
        split: "train" or "test" (disjoint performers).
        labels: test hook: force these labels (int64 ``[N]``) instead of the balanced draw; everything
            except the motion stays identical.
        draw_bodies: test hook: ``False`` renders backgrounds, lighting and noise only.

    Returns:
        The split; ``meta`` holds ``subject`` (performer id of the actor), ``subject2`` (partner, -1 if
        none), ``persons``, ``camera`` (fx, fy, cx, cy in pixels, for projecting the skeleton) and
        ``view_yaw`` (degrees).
    """
    if split not in SPLITS:
        raise RobenchError(f"synthetic dataset: unknown split {split!r}; valid: {', '.join(SPLITS)}")
    cfg.validate()
    default_labels = split_labels(cfg, split)
    labels = default_labels if labels is None else torch.as_tensor(labels, dtype=torch.long)
    n = len(default_labels)
    if labels.shape != (n,) or int(labels.min()) < 0 or int(labels.max()) >= cfg.classes:
        raise ValueError(f"labels must be int64 [{n}] in 0..{cfg.classes - 1}")
    perf = performer_pool(cfg)
    offsets_all = perf.offsets
    draws = draw_clips(cfg, split, n)
    t_rgb, t_skel = clip_times(cfg.frames_rgb), clip_times(cfg.frames_skeleton)
    times = torch.cat([t_rgb, t_skel])
    h, w = cfg.height_px, cfg.width_px

    rgb = torch.empty(n, 3, cfg.frames_rgb, h, w, dtype=torch.uint8)
    skel = torch.empty(n, 3, cfg.frames_skeleton, sk.NUM_JOINTS, 2)
    persons_all = torch.empty(n, dtype=torch.long)
    intr_all = torch.empty(n, 4)
    for start in range(0, n, RNG_BLOCK):
        idx = torch.arange(start, min(start + RNG_BLOCK, n))
        b = len(idx)
        d = _take(draws, idx)
        gs = make_generator(cfg.seed, split, "sensor", start // RNG_BLOCK)
        joint_noise = torch.randn(b, 2, cfg.frames_skeleton, sk.NUM_JOINTS, 3, generator=gs)
        dropped = torch.rand(b, 2, cfg.frames_skeleton, sk.NUM_JOINTS, generator=gs) < cfg.drop_rate
        pixel_noise = torch.randn(b, cfg.frames_rgb, 3, h, w, generator=gs)

        angles, root, separation, persons = _motion(labels[idx], d, times)
        body = sk.forward_kinematics(torch.deg2rad(angles).flatten(0, 1),
                                     offsets_all[d.performer].flatten(0, 1)).unflatten(0, (b, 2))
        world = _place(body, root, separation, persons, d)
        camera = rd.look_at_camera(d.cam_yaw, d.cam_pitch, d.cam_distance, d.target, d.view_height, h, w)

        joints = camera.to_camera(world[:, :, cfg.frames_rgb:, :sk.NUM_JOINTS])  # [B, 2, Ts, 25, 3]
        joints = _stale_hold(joints + cfg.joint_noise * joint_noise, dropped)
        joints = joints * (torch.arange(2)[None, :] < persons[:, None]).to(joints.dtype).view(b, 2, 1, 1, 1)
        skel[idx] = joints.permute(0, 4, 2, 3, 1)

        rgb[idx] = _render_block(world[:, :, :cfg.frames_rgb], persons, perf, d, camera, pixel_noise, draw_bodies)
        intr_all[idx] = camera.intrinsics()
        persons_all[idx] = persons

    subject2 = torch.where(persons_all == 2, draws.performer[:, 1], -1)
    meta = {
        "subject": draws.performer[:, 0].clone(),
        "subject2": subject2,
        "persons": persons_all,
        "camera": intr_all,
        "view_yaw": torch.rad2deg(draws.cam_yaw),
    }
    names = [a.name for a in ACTIONS[:cfg.classes]]
    return TensorClipDataset(rgb, skel, labels.clone(), names, meta)
