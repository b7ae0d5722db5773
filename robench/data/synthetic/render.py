"""Camera, textured backgrounds, lighting and the capsule rasteriser of the synthetic dataset.

Units: positions in metres; the world frame has the floor at ``y = 0``, ``y`` up; the camera frame is
Kinect-like (``x`` right in the image, ``y`` up, ``z`` depth away from the camera). Images are float32
RGB in [0, 1] until the final quantisation; pixel coordinates ``(u, v)`` are measured in pixels from the
top-left corner of the image, pixel centres at ``i + 0.5``.

Every parameter drawn here (camera, background, lighting, noise) comes from generators that never see a
label (see :mod:`.generate`), so appearance cannot reveal the class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from robench.data.synthetic import skeleton as sk

# --- colours ---------------------------------------------------------------------------------------
#: body parts, index into a performer's colour table [P, NUM_PARTS, 3]
SHIRT, PANTS, SKIN, HAIR, SHOES, SLEEVE = range(6)
NUM_PARTS = 6

#: primitives drawn for every body: (node a, node b, radius in metres for a 1.75 m body, part);
#: a == b is a sphere
PRIMITIVES: tuple[tuple[int, int, float, int], ...] = (
    (sk.SPINE_BASE, sk.SPINE_MID, 0.125, SHIRT),
    (sk.SPINE_MID, sk.SPINE_SHOULDER, 0.135, SHIRT),
    (sk.L_SHOULDER, sk.SPINE_SHOULDER, 0.065, SHIRT),
    (sk.R_SHOULDER, sk.SPINE_SHOULDER, 0.065, SHIRT),
    (sk.L_HIP, sk.SPINE_BASE, 0.085, PANTS),
    (sk.R_HIP, sk.SPINE_BASE, 0.085, PANTS),
    (sk.NECK, sk.SPINE_SHOULDER, 0.05, SKIN),
    (sk.HAIR, sk.HAIR, 0.095, HAIR),
    (sk.FACE, sk.FACE, 0.09, SKIN),
    (sk.L_SHOULDER, sk.L_ELBOW, 0.052, SHIRT),
    (sk.R_SHOULDER, sk.R_ELBOW, 0.052, SHIRT),
    (sk.L_ELBOW, sk.L_WRIST, 0.042, SLEEVE),
    (sk.R_ELBOW, sk.R_WRIST, 0.042, SLEEVE),
    (sk.L_WRIST, sk.L_HAND_TIP, 0.036, SKIN),
    (sk.R_WRIST, sk.R_HAND_TIP, 0.036, SKIN),
    (sk.L_HIP, sk.L_KNEE, 0.075, PANTS),
    (sk.R_HIP, sk.R_KNEE, 0.075, PANTS),
    (sk.L_KNEE, sk.L_ANKLE, 0.055, PANTS),
    (sk.R_KNEE, sk.R_ANKLE, 0.055, PANTS),
    (sk.L_ANKLE, sk.L_FOOT, 0.045, SHOES),
    (sk.R_ANKLE, sk.R_FOOT, 0.045, SHOES),
)
_PRIM_A = torch.tensor([p[0] for p in PRIMITIVES])
_PRIM_B = torch.tensor([p[1] for p in PRIMITIVES])
_PRIM_R = torch.tensor([p[2] for p in PRIMITIVES])
_PRIM_PART = torch.tensor([p[3] for p in PRIMITIVES])


def hsv_to_rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """HSV in [0, 1] (any shape) -> RGB ``[..., 3]`` in [0, 1]."""
    k = torch.tensor([5.0, 3.0, 1.0])
    kk = (k + h[..., None] * 6.0) % 6.0
    return v[..., None] - v[..., None] * s[..., None] * torch.clamp(torch.minimum(kk, 4.0 - kk), 0.0, 1.0)


def sample_clothing(n: int, generator: torch.Generator) -> Tensor:
    """Colour table ``[n, NUM_PARTS, 3]`` (RGB in [0, 1]) of ``n`` performers: shirt, pants, skin, hair,
    shoes and sleeves (long sleeves = shirt colour, short = skin, 50 % each)."""
    u = torch.rand(n, 16, generator=generator)
    shirt = hsv_to_rgb(u[:, 0], 0.15 + 0.75 * u[:, 1], 0.25 + 0.7 * u[:, 2])
    pants = hsv_to_rgb(u[:, 3], 0.10 + 0.6 * u[:, 4], 0.12 + 0.6 * u[:, 5])
    light, dark = torch.tensor([0.96, 0.80, 0.69]), torch.tensor([0.36, 0.23, 0.16])
    skin = light + (dark - light) * u[:, 6:7] + 0.06 * (u[:, 7:10] - 0.5)
    hair_palette = torch.tensor([[0.08, 0.06, 0.05], [0.25, 0.15, 0.08], [0.45, 0.30, 0.15],
                                 [0.80, 0.68, 0.40], [0.60, 0.60, 0.60]])
    hair = hair_palette[(u[:, 10] * len(hair_palette)).long().clamp(max=len(hair_palette) - 1)]
    shoes = (0.05 + 0.45 * u[:, 11:12]) * (0.85 + 0.3 * u[:, 12:15])
    sleeve = torch.where(u[:, 15:16] < 0.5, shirt, skin)
    return torch.stack([shirt, pants, skin, hair, shoes, sleeve], dim=1).clamp(0.0, 1.0)


# --- camera ----------------------------------------------------------------------------------------
@dataclass
class Camera:
    """Pinhole cameras of a batch of clips (static over a clip).

    Attributes:
        rotation: ``[B, 3, 3]`` world-to-camera rotation (rows: camera x, y, z axes in world coordinates).
        position: ``[B, 3]`` camera centre in world coordinates, metres.
        focal: ``[B]`` focal length in pixels (square pixels).
        height, width: image size in pixels; the principal point is the image centre.
    """

    rotation: Tensor
    position: Tensor
    focal: Tensor
    height: int
    width: int

    def to_camera(self, points: Tensor) -> Tensor:
        """World points ``[B, ..., 3]`` -> camera coordinates ``[B, ..., 3]`` (metres)."""
        b = points.shape[0]
        flat = points.reshape(b, -1, 3) - self.position[:, None]
        return (flat @ self.rotation.transpose(1, 2)).reshape(points.shape)

    def project(self, points: Tensor) -> Tensor:
        """Camera points ``[B, ..., 3]`` -> pixel coordinates ``(u, v)`` ``[B, ..., 2]``."""
        return project(points, self.intrinsics())

    def intrinsics(self) -> Tensor:
        """``[B, 4]`` = (fx, fy, cx, cy) in pixels."""
        b = self.focal.shape[0]
        centre = torch.tensor([self.width / 2.0, self.height / 2.0]).expand(b, 2)
        return torch.cat([self.focal[:, None], self.focal[:, None], centre], dim=1)


def project(points: Tensor, intrinsics: Tensor) -> Tensor:
    """Pinhole projection of camera points ``[B, ..., 3]`` with ``intrinsics [B, 4]`` = (fx, fy, cx, cy):
    ``u = cx + fx x / z``, ``v = cy - fy y / z`` (pixels; ``v`` grows downwards)."""
    shape = [points.shape[0]] + [1] * (points.dim() - 2)
    fx, fy, cx, cy = (intrinsics[:, i].reshape(shape) for i in range(4))
    z = points[..., 2].clamp(min=0.05)
    return torch.stack([cx + fx * points[..., 0] / z, cy - fy * points[..., 1] / z], dim=-1)


def look_at_camera(yaw: Tensor, pitch: Tensor, distance: Tensor, target: Tensor, view_height: Tensor,
                   height: int, width: int) -> Camera:
    """Cameras looking at ``target`` (``[B, 3]``, m) from ``distance`` (m) with ``yaw`` about the vertical
    and ``pitch`` (downwards positive), both radians; the focal length makes the image height span
    ``view_height`` metres at the target's distance."""
    fwd = torch.stack([torch.sin(yaw) * torch.cos(pitch), -torch.sin(pitch), torch.cos(yaw) * torch.cos(pitch)], -1)
    up = torch.tensor([0.0, 1.0, 0.0]).expand_as(fwd)
    x_axis = F.normalize(torch.linalg.cross(up, fwd, dim=-1), dim=-1)
    y_axis = torch.linalg.cross(fwd, x_axis, dim=-1)
    rotation = torch.stack([x_axis, y_axis, fwd], dim=1)
    position = target - distance[:, None] * fwd
    return Camera(rotation, position, height * distance / view_height, height, width)


# --- background ------------------------------------------------------------------------------------
@dataclass
class BackgroundParams:
    """Per-clip parameters of a static background (resolution-independent), all in [0, 1] unless noted."""

    palette: Tensor  # [B, 6, 3] RGB colours
    weights: Tensor  # [B, 5] mixture weights of gradient, blobs, stripes, checker, value noise
    angles: Tensor  # [B, 3] radians: gradient, stripes, checker orientation
    stripes: Tensor  # [B, 3] frequency (cycles per image height), phase (rad), sharpness
    checker: Tensor  # [B, 2] frequency (cells per image height), sharpness
    blob_centres: Tensor  # [B, 6, 2] normalised image coordinates
    blob_sigma: Tensor  # [B, 6] normalised image units
    blob_colours: Tensor  # [B, 6, 3]
    noise_coarse: Tensor  # [B, 3, 4, 4] value-noise grid
    noise_fine: Tensor  # [B, 3, 10, 10]
    floor_colours: Tensor  # [B, 2, 3]
    floor_tile: Tensor  # [B] tile size in metres
    floor_contrast: Tensor  # [B] 0 = plain floor, 1 = full checker tiles
    wall_distance: Tensor  # [B] metres from the scene centre to the back wall (along the view)


def sample_background(n: int, generator: torch.Generator) -> BackgroundParams:
    """Draw ``n`` background parameter sets (random mixtures of textures, random colours)."""
    def rand(*shape: int) -> Tensor:
        return torch.rand(n, *shape, generator=generator)

    grey = rand(6, 1)
    palette = grey + (rand(6, 3) - grey) * (0.3 + 0.7 * rand(6, 1))  # colours of varying saturation
    on = rand(5) < 0.6
    on[:, 0] |= ~on.any(dim=1)
    weights = on * (0.2 + rand(5))
    weights = weights / weights.sum(dim=1, keepdim=True)
    return BackgroundParams(
        palette=palette,
        weights=weights,
        angles=rand(3) * 2 * math.pi,
        stripes=torch.stack([2 + 8 * rand(), 2 * math.pi * rand(), 1 + 7 * rand()], dim=1),
        checker=torch.stack([2 + 6 * rand(), 1 + 7 * rand()], dim=1),
        blob_centres=rand(6, 2),
        blob_sigma=0.05 + 0.25 * rand(6),
        blob_colours=rand(6, 3),
        noise_coarse=rand(3, 4, 4),
        noise_fine=rand(3, 10, 10),
        floor_colours=rand(2, 3) * (0.3 + 0.7 * rand(1, 1)),
        floor_tile=0.3 + 0.7 * rand(),
        floor_contrast=rand() * (rand() < 0.7),
        wall_distance=0.8 + 2.2 * rand(),
    )


def _rotated(x: Tensor, y: Tensor, angle: Tensor) -> Tensor:
    """Coordinate along direction ``angle [B]`` of the grids ``x [1, W]``, ``y [H, 1]`` -> ``[B, H, W]``."""
    return x[None] * torch.cos(angle)[:, None, None] + y[None] * torch.sin(angle)[:, None, None]


def render_background(p: BackgroundParams, camera: Camera) -> Tensor:
    """Static backgrounds ``[B, 3, H, W]`` in [0, 1]: a textured wall and, where the camera sees it, a
    (tiled) floor in perspective."""
    h, w = camera.height, camera.width
    b = p.palette.shape[0]
    # normalised coordinates in units of the image height, centred
    y = ((torch.arange(h) + 0.5) / h - 0.5)[:, None]
    x = ((torch.arange(w) + 0.5) / h - 0.5 * w / h)[None, :]
    pal = p.palette[..., None, None]  # [B, 6, 3, 1, 1]

    def mix(c0: Tensor, c1: Tensor, s: Tensor) -> Tensor:  # s [B, H, W]
        return c0 + (c1 - c0) * s[:, None]

    grad = mix(pal[:, 0], pal[:, 1], (_rotated(x, y, p.angles[:, 0]) + 0.7).clamp(0, 1.4) / 1.4)
    d2 = (x[None, None] - (p.blob_centres[..., 0, None, None] - 0.5) * w / h) ** 2 + \
         (y[None, None] - (p.blob_centres[..., 1, None, None] - 0.5)) ** 2  # [B, 6, H, W]
    g = torch.exp(-d2 / (2 * p.blob_sigma[..., None, None] ** 2))
    blobs = (0.15 * pal[:, 2] + torch.einsum("bkhw,bkc->bchw", g, p.blob_colours)) / (0.15 + g.sum(1)[:, None])
    s_arg = 2 * math.pi * p.stripes[:, 0, None, None] * _rotated(x, y, p.angles[:, 1]) + p.stripes[:, 1, None, None]
    stripes = mix(pal[:, 3], pal[:, 4], torch.sigmoid(p.stripes[:, 2, None, None] * torch.sin(s_arg)))
    freq = math.pi * p.checker[:, 0, None, None]
    c_arg = torch.sin(freq * _rotated(x, y, p.angles[:, 2])) * \
        torch.sin(freq * _rotated(x, y, p.angles[:, 2] + math.pi / 2))
    checker = mix(pal[:, 4], pal[:, 5], torch.sigmoid(4 * p.checker[:, 1, None, None] * c_arg))
    noise = F.interpolate(p.noise_coarse, size=(h, w), mode="bilinear", align_corners=False)
    noise = 0.7 * noise + 0.3 * F.interpolate(p.noise_fine, size=(h, w), mode="bilinear", align_corners=False)
    layers = torch.stack([grad, blobs, stripes, checker, noise], dim=1)  # [B, 5, 3, H, W]
    wall = torch.einsum("bk,bkchw->bchw", p.weights, layers)

    # Floor: rays through each pixel that hit y = 0 before the back wall.
    u = (torch.arange(w) + 0.5 - w / 2.0)[None, :].expand(h, w)
    v = (h / 2.0 - torch.arange(h) - 0.5)[:, None].expand(h, w)
    f = camera.focal[:, None, None]
    rays_cam = torch.stack([u.expand(b, h, w) / f, v.expand(b, h, w) / f, torch.ones(b, h, w)], dim=-1)  # [B, H, W, 3]
    rays = rays_cam @ camera.rotation[:, None]  # camera -> world directions (R^T d, as row vectors)
    cam = camera.position[:, None, None]
    t_floor = torch.where(rays[..., 1] < -1e-6, -cam[..., 1] / rays[..., 1].clamp(max=-1e-6), torch.inf)
    fwd_h = F.normalize(camera.rotation[:, 2] * torch.tensor([1.0, 0.0, 1.0]), dim=-1)[:, None, None]  # [B,1,1,3]
    along = (rays * fwd_h).sum(-1).clamp(min=1e-6)
    t_wall = (p.wall_distance[:, None, None] - (cam * fwd_h).sum(-1)) / along
    hit = cam + t_floor.clamp(max=1e3)[..., None] * rays
    tiles = torch.sin(math.pi * hit[..., 0] / p.floor_tile[:, None, None]) * \
        torch.sin(math.pi * hit[..., 2] / p.floor_tile[:, None, None])
    s = 0.5 + (torch.sigmoid(3.0 * tiles) - 0.5) * p.floor_contrast[:, None, None]
    floor = mix(p.floor_colours[:, 0, :, None, None], p.floor_colours[:, 1, :, None, None], s)
    floor_mask = (t_floor < t_wall).to(wall.dtype)[:, None]
    return wall + (floor - wall) * floor_mask


# --- lighting --------------------------------------------------------------------------------------
@dataclass
class LightingParams:
    """Per-clip lighting: brightness drift, a moving light gradient, colour cast, sensor noise."""

    base: Tensor  # [B] overall brightness factor
    gain: Tensor  # [B, 3] amplitude (relative), frequency (cycles per clip), phase (rad) of the gain drift
    gradient: Tensor  # [B, 3] amplitude (relative), start angle (rad), angular travel over the clip (rad)
    cast: Tensor  # [B, 3] per-channel gains
    noise_std: Tensor  # [B] sensor noise, std in [0, 1] intensity units


def sample_lighting(n: int, generator: torch.Generator, strength: float, pixel_noise: float) -> LightingParams:
    """Draw lighting for ``n`` clips; ``strength`` is the largest relative gain change, ``pixel_noise``
    the mean sensor-noise std in 0..255 levels."""
    r = torch.rand(n, 11, generator=generator)
    return LightingParams(
        base=0.8 + 0.3 * r[:, 0],
        gain=torch.stack([strength * r[:, 1], 0.3 + 1.2 * r[:, 2], 2 * math.pi * r[:, 3]], dim=1),
        gradient=torch.stack([strength * r[:, 4], 2 * math.pi * r[:, 5], math.pi * (2 * r[:, 6] - 1)], dim=1),
        cast=0.88 + 0.24 * r[:, 7:10],
        noise_std=pixel_noise / 255.0 * (0.5 + r[:, 10]),
    )


def lighting_field(p: LightingParams, times: Tensor, height: int, width: int) -> Tensor:
    """Multiplicative light ``[B, T, 3, H, W]`` at clip ``times [T]`` (0-1): gain drift x moving gradient x
    colour cast."""
    t = times[None, :]
    gain = p.base[:, None] * (1 + p.gain[:, 0:1] * torch.sin(2 * math.pi * p.gain[:, 1:2] * t + p.gain[:, 2:3]))
    ang = p.gradient[:, 1:2] + p.gradient[:, 2:3] * t  # [B, T]
    y = ((torch.arange(height) + 0.5) / height - 0.5)[:, None]
    x = ((torch.arange(width) + 0.5) / height - 0.5 * width / height)[None, :]
    ramp = x * torch.cos(ang)[..., None, None] + y * torch.sin(ang)[..., None, None]  # [B, T, H, W]
    light = gain[..., None, None] * (1 + 2 * p.gradient[:, 0, None, None, None] * ramp)
    return light[:, :, None] * p.cast[:, None, :, None, None]


# --- bodies ----------------------------------------------------------------------------------------
def render_bodies(frames: Tensor, nodes: Tensor, colours: Tensor, girth: Tensor, intrinsics: Tensor) -> None:
    """Draw bodies into ``frames`` in place, far primitives first (painter's algorithm).

    Args:
        frames: ``[B, T, 3, H, W]`` float images in [0, 1].
        nodes: ``[B, M, T, 27, 3]`` node positions in camera space (metres) of ``M`` bodies, all present.
        colours: ``[B, M, NUM_PARTS, 3]`` RGB colour of each body part.
        girth: ``[B, M]`` thickness scale of each body (metres at the reference radii).
        intrinsics: ``[B, 4]`` (fx, fy, cx, cy) in pixels.

    Limbs are antialiased capsules (radius in pixels = radius in metres x focal / depth) with a simple
    cylindrical shading; the head is two spheres (hair behind, face in front).
    """
    b, m, t = nodes.shape[:3]
    h, w = frames.shape[-2:]
    pa, pb = nodes[:, :, :, _PRIM_A], nodes[:, :, :, _PRIM_B]  # [B, M, T, P, 3]
    z_mid = 0.5 * (pa[..., 2] + pb[..., 2])
    radius = _PRIM_R * girth[:, :, None, None] * intrinsics[:, 0, None, None, None] / z_mid.clamp(min=0.1)
    uva, uvb = project(pa, intrinsics), project(pb, intrinsics)
    col = colours[:, :, _PRIM_PART]  # [B, M, P, 3]
    n_prim = m * len(PRIMITIVES)
    # flatten bodies x primitives, time first
    def flat(x: Tensor) -> Tensor:
        return x.transpose(1, 2).reshape(b, t, n_prim, *x.shape[4:])

    uva, uvb, radius, z_mid = flat(uva), flat(uvb), flat(radius), flat(z_mid)
    col = col[:, None].expand(b, t, m, len(PRIMITIVES), 3).reshape(b, t, n_prim, 3)
    order = torch.argsort(z_mid, dim=-1, descending=True, stable=True)  # far first

    flat_frames = frames.view(b, t, 3, h * w)
    for k in range(n_prim):
        idx = order[..., k]  # [B, T]
        a = uva.gather(2, idx[..., None, None].expand(b, t, 1, 2)).squeeze(2)
        e = uvb.gather(2, idx[..., None, None].expand(b, t, 1, 2)).squeeze(2) - a
        r = radius.gather(2, idx[..., None]).view(b, t, 1, 1)
        c = col.gather(2, idx[..., None, None].expand(b, t, 1, 3)).view(b, t, 3, 1, 1)
        # Rasterise only a window around the primitive: the same size for all clips and frames
        # (the largest bounding box), placed per clip and frame.
        lo = torch.minimum(a, a + e) - r.view(b, t, 1) - 1.0
        hi = torch.maximum(a, a + e) + r.view(b, t, 1) + 1.0
        size = (hi - lo).amax(dim=(0, 1)).ceil()
        win_w, win_h = int(size[0].clamp(1, w)), int(size[1].clamp(1, h))
        ou = lo[..., 0].floor().clamp(0, w - win_w).long()  # [B, T] window origin, pixels
        ov = lo[..., 1].floor().clamp(0, h - win_h).long()
        cols = ou[..., None] + torch.arange(win_w)  # [B, T, win_w]
        rows = ov[..., None] + torch.arange(win_h)  # [B, T, win_h]
        pix = (rows[..., :, None] * w + cols[..., None, :]).view(b, t, 1, win_h * win_w).expand(b, t, 3, -1)
        local = flat_frames.gather(3, pix).view(b, t, 3, win_h, win_w)

        ex, ey = e[..., 0].view(b, t, 1, 1), e[..., 1].view(b, t, 1, 1)
        dx = (cols.to(frames.dtype) + 0.5)[:, :, None, :] - a[..., 0].view(b, t, 1, 1)  # [B, T, 1, win_w]
        dy = (rows.to(frames.dtype) + 0.5)[:, :, :, None] - a[..., 1].view(b, t, 1, 1)  # [B, T, win_h, 1]
        inv = 1.0 / (ex * ex + ey * ey + 1e-9)
        s = (dx * (ex * inv) + dy * (ey * inv)).clamp_(0.0, 1.0)  # [B, T, win_h, win_w]
        qx = dx - s * ex
        qy = dy - s * ey
        d2 = qx.mul_(qx).add_(qy.mul_(qy))
        alpha = (r + 0.5 - d2.sqrt()).clamp_(0.0, 1.0)
        shade = 1.0 - 0.35 * (d2 / (r * r + 1e-6)).clamp_(max=1.0)
        local.add_(alpha[:, :, None] * (c * shade[:, :, None] - local))
        flat_frames.scatter_(3, pix, local.view(b, t, 3, win_h * win_w))
