"""Per-frame image corruptions of the RGB video: noise, blur, brightness, contrast and occlusion.

The families and most severities follow ImageNet-C (Hendrycks & Dietterich, "Benchmarking Neural Network
Robustness to Common Corruptions and Perturbations", ICLR 2019), applied to every frame of a clip, as the
video corruption benchmark of Yi et al. (2021, "Benchmarking the Robustness of Spatial-Temporal Models
Against Corruptions", Mini Kinetics-C / Mini SSV2-C) does for its per-image corruptions. Where ImageNet-C
gives a size in pixels of a 224-px photo, the level here is a share of the frame width, so that a severity
means the same thing at every resolution.

Every corruption takes an RGB clip ``[3, T, H, W]`` (float, [0, 1]) and returns a clip of the same shape
and dtype, still in [0, 1]. Random choices (noise, a blur's direction, an occluder's position) come only
from the per-clip generator; they are drawn on the CPU, so a clip is corrupted the same way on any device.
Blurs run as one ``conv2d`` over the whole clip (frames and channels as the batch) with replicated borders,
in float32 outside autocast, without TF32 and with a deterministic cuDNN algorithm, so that mixed precision or
benchmark mode do not change the corrupted clip (a GPU and the CPU may still differ in the last bit).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from robench.corruptions.base import Corruption
from robench.registry import register_corruption

#: the smallest blur extent, in pixels (a motion-blur length, a defocus radius): a level that would be
#: smaller at a low resolution is raised to it, so that every severity changes the frame
MIN_BLUR_PX = 1.0



def _check_rgb(x: Tensor) -> None:
    if x.dim() != 4 or x.shape[0] != 3:
        raise ValueError(f"expected an RGB clip [3, T, H, W], got shape {tuple(x.shape)}")


def _filter(x: Tensor, kernel: Tensor) -> Tensor:
    """``x`` ``[3, T, H, W]`` filtered frame by frame with the 2-D ``kernel`` (odd sides, centred), replicated
    borders. All-zero outer rows and columns are trimmed first (a line kernel is mostly zeros)."""
    rows = kernel.abs().sum(dim=1).nonzero()
    cols = kernel.abs().sum(dim=0).nonzero()
    ch, cw = kernel.shape[0] // 2, kernel.shape[1] // 2
    dh = int((rows - ch).abs().max())  # the trimmed kernel stays centred
    dw = int((cols - cw).abs().max())
    kernel = kernel[ch - dh : ch + dh + 1, cw - dw : cw + dw + 1]
    c, t, h, w = x.shape
    # float32 without autocast (no bfloat16 under --amp), and on a GPU without TF32 and with a deterministic
    # cuDNN algorithm (not the one benchmark mode happens to pick), so that a clip is blurred the same every time
    with torch.autocast(device_type=x.device.type, enabled=False), torch.backends.cudnn.flags(
            enabled=torch.backends.cudnn.enabled, benchmark=False, deterministic=True, allow_tf32=False):
        frames = x.float().reshape(c * t, 1, h, w)
        padded = F.pad(frames, (dw, dw, dh, dh), mode="replicate")
        out = F.conv2d(padded, kernel.to(device=x.device, dtype=torch.float32)[None, None])
    return out.view(c, t, h, w).clamp_(0.0, 1.0).to(x.dtype)


def motion_kernel(length: float, angle: float) -> Tensor:
    """A normalised line kernel: a segment of ``length`` pixels through the centre at ``angle`` (radians),
    drawn with bilinear weights so that fractional lengths and any direction are exact on average."""
    half = length / 2.0
    size = 2 * math.ceil(half) + 1
    c = size // 2
    n = 4 * math.ceil(length) + 1  # samples along the segment, several per pixel
    t = torch.linspace(-half, half, n, dtype=torch.float64)
    px = c + t * math.cos(angle)
    py = c - t * math.sin(angle)  # image rows grow downwards
    kernel = torch.zeros(size, size, dtype=torch.float64)
    x0, y0 = px.floor(), py.floor()
    fx, fy = px - x0, py - y0
    for dx, dy, wgt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xi = (x0 + dx).long().clamp(0, size - 1)
        yi = (y0 + dy).long().clamp(0, size - 1)
        kernel.index_put_((yi, xi), wgt, accumulate=True)
    return kernel / kernel.sum()


def disk_kernel(radius: float, supersample: int = 8) -> Tensor:
    """A normalised disk (pillbox) of ``radius`` pixels; each pixel weighs the share of it inside the disk
    (``supersample`` x ``supersample`` points per pixel), so fractional radii blur by a fraction."""
    half = math.ceil(radius)
    size = 2 * half + 1
    offsets = (torch.arange(supersample, dtype=torch.float64) + 0.5) / supersample - 0.5
    grid = torch.arange(size, dtype=torch.float64) - half
    fine = (grid[:, None] + offsets[None, :]).reshape(-1)  # sub-pixel centres along one axis
    inside = (fine[:, None] ** 2 + fine[None, :] ** 2) <= radius**2
    cover = inside.double().view(size, supersample, size, supersample).mean(dim=(1, 3))
    return cover / cover.sum()


@register_corruption("gaussian-noise")
class GaussianNoise(Corruption):
    """Additive Gaussian sensor noise, clipped to [0, 1] (ImageNet-C's gaussian noise, milder levels).

    Additive Gaussian sensor noise, independent per pixel, channel and frame, then clipped to [0, 1].

    Unit: the noise's standard deviation in grey levels (of 255). ImageNet-C (Hendrycks & Dietterich 2019)
    uses 0.08 to 0.38 of full scale (about 20 to 97 grey levels) on full-size photos; on the small frames
    of a video model (112 or 224 px, already compressed) its upper levels leave little of the action for a
    person to see, so the range here runs from about half of ImageNet-C's first level (10 grey levels) to
    its third level (48 grey levels), a choice of ours.
    """

    version = 1
    modality = "rgb"
    family = "noise"
    levels = (10.0, 16.0, 24.0, 32.0, 48.0)
    unit = "grey levels (of 255), noise std"

    def corrupt(self, x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
        _check_rgb(x)
        sigma = self.level(severity) / 255.0
        noise = torch.randn(x.shape, generator=generator, dtype=torch.float32)
        return (x + sigma * noise.to(device=x.device, dtype=x.dtype)).clamp_(0.0, 1.0)


@register_corruption("shot-noise")
class ShotNoise(Corruption):
    """Photon (shot) noise: Poisson counts at a number of photons per unit intensity (ImageNet-C).

    Photon (shot) noise: each value becomes a Poisson count of photons divided by the photons per unit
    intensity, so darker pixels are relatively noisier; clipped to [0, 1].

    Unit: photons per unit intensity (fewer photons, more noise). The five levels are ImageNet-C's
    (Hendrycks & Dietterich 2019).
    """

    version = 1
    modality = "rgb"
    family = "noise"
    levels = (60.0, 25.0, 12.0, 5.0, 3.0)
    unit = "photons per unit intensity"

    def corrupt(self, x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
        _check_rgb(x)
        photons = self.level(severity)
        rate = (x.detach().float().cpu().clamp(0.0, 1.0) * photons)
        counts = torch.poisson(rate, generator=generator)
        return (counts / photons).clamp_(0.0, 1.0).to(device=x.device, dtype=x.dtype)


@register_corruption("motion-blur")
class MotionBlur(Corruption):
    """Linear motion blur in one random direction per clip, its length a share of the frame width.

    Linear motion blur, as from camera shake: every frame averaged along a straight line through each
    pixel, in one random direction per clip (the same for all its frames).

    Unit: the blur's length as a share of the frame width. ImageNet-C (Hendrycks & Dietterich 2019) uses
    ImageMagick's motion blur, a one-sided streak with Gaussian weights (radius 10 to 20 px, sigma 3 to 15
    px on 224-px photos); here the streak is a uniform line centred on each pixel (so the image does not
    shift), 2% to 12% of the width long (4.5 to 27 px at 224 px), a range chosen by us. The length in
    pixels, ``level * W``, is not rounded: the line is drawn with bilinear weights, so a fractional length
    blurs by a fraction of a pixel. It is raised to at least 1 px (:data:`MIN_BLUR_PX`), so on frames
    narrower than 50 px the mildest level is 1 px long.
    """

    version = 1
    modality = "rgb"
    family = "blur"
    levels = (0.02, 0.04, 0.06, 0.09, 0.12)
    unit = "share of the frame width (blur length)"

    def corrupt(self, x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
        _check_rgb(x)
        angle = float(torch.rand((), generator=generator, dtype=torch.float64)) * math.pi
        length = max(self.level(severity) * x.shape[-1], MIN_BLUR_PX)
        return _filter(x, motion_kernel(length, angle))


@register_corruption("defocus-blur")
class DefocusBlur(Corruption):
    """Defocus blur: a disk kernel whose radius is a share of the frame width (ImageNet-C's radii).

    Defocus (out-of-focus lens) blur: every frame averaged over a disk around each pixel.

    Unit: the disk's radius as a share of the frame width. The levels are ImageNet-C's radii (Hendrycks &
    Dietterich 2019: 3, 4, 6, 8 and 10 px on 224-px photos) divided by 224. The radius in pixels is not
    rounded: pixels on the disk's rim weigh the share of them inside it, so a fractional radius blurs by a
    fraction. It is raised to at least 1 px (:data:`MIN_BLUR_PX`), so on frames narrower than about 75 px
    the mildest levels coincide.
    """

    version = 1
    modality = "rgb"
    family = "blur"
    levels = (0.0134, 0.0179, 0.0268, 0.0357, 0.0446)
    unit = "share of the frame width (disk radius)"

    def corrupt(self, x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
        _check_rgb(x)
        radius = max(self.level(severity) * x.shape[-1], MIN_BLUR_PX)
        return _filter(x, disk_kernel(radius))


@register_corruption("brightness")
class Brightness(Corruption):
    """Over-exposure: a constant share of full scale added to every value, clipped (ImageNet-C).

    Over-exposure: a constant added to every value, then clipped to [0, 1].

    Unit: the share of full scale added. The levels are ImageNet-C's (Hendrycks & Dietterich 2019), which
    adds them to the HSV value channel; adding them to R, G and B alike, as here, brightens grey pixels the
    same way and changes saturated colours slightly differently (a channel at 1 stays at 1).
    """

    version = 1
    modality = "rgb"
    family = "digital"
    levels = (0.1, 0.2, 0.3, 0.4, 0.5)
    unit = "share of full scale added"

    def corrupt(self, x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
        _check_rgb(x)
        return (x + self.level(severity)).clamp_(0.0, 1.0)


@register_corruption("contrast")
class Contrast(Corruption):
    """Low contrast: each frame pulled towards its per-channel mean by a factor (ImageNet-C).

    Low contrast, as in haze or a washed-out camera: each frame's values pulled towards that frame's mean
    (per channel, as ImageNet-C does), ``mean + factor * (x - mean)``.

    Unit: the factor kept of each value's distance from the mean (1 would be no change). The levels are
    ImageNet-C's (Hendrycks & Dietterich 2019).
    """

    version = 1
    modality = "rgb"
    family = "digital"
    levels = (0.4, 0.3, 0.2, 0.1, 0.05)
    unit = "contrast factor"

    def corrupt(self, x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
        _check_rgb(x)
        mean = x.mean(dim=(2, 3), keepdim=True)  # per channel and frame
        return (mean + self.level(severity) * (x - mean)).clamp_(0.0, 1.0)


@register_corruption("occlusion")
class Occlusion(Corruption):
    """A static mid-grey rectangle at a random place per clip, covering a share of the frame.

    A static occluder: a mid-grey (0.5) rectangle with the frame's aspect ratio, at one random position
    per clip (the same in every frame), as an object between the camera and the scene.

    Unit: the share of the frame's area covered. The rectangle's sides are ``sqrt(level)`` times the frame's
    height and width, rounded to whole pixels (at least 1). Occlusion is not one of ImageNet-C's corruptions
    (Hendrycks & Dietterich 2019) nor of Yi et al.'s (2021) video benchmark; it is added here because a
    person or object blocking part of a fixed camera's view is common in indoor action datasets.
    """

    version = 1
    modality = "rgb"
    family = "occlusion"
    levels = (0.1, 0.2, 0.3, 0.4, 0.5)
    unit = "share of the frame area covered"

    def corrupt(self, x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
        _check_rgb(x)
        h, w = x.shape[-2:]
        side = math.sqrt(self.level(severity))
        rh = min(h, max(1, round(side * h)))
        rw = min(w, max(1, round(side * w)))
        top = int(torch.randint(0, h - rh + 1, (), generator=generator))
        left = int(torch.randint(0, w - rw + 1, (), generator=generator))
        out = x.clone()
        out[:, :, top : top + rh, left : left + rw] = 0.5
        return out
