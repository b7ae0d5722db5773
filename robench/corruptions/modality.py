"""A whole input missing: a dead camera, a blank video, no body detected.

A fused model should fall back on the input it still has; these corruptions measure how far it does. Each
has one level (the five severities are the same), no randomness, and leaves the other input untouched.
"""

from __future__ import annotations

import torch
from torch import Tensor

from robench.corruptions.base import Corruption
from robench.registry import register_corruption


@register_corruption("rgb-missing")
class RGBMissing(Corruption):
    """No video: black frames (all zeros), as from a dead camera.

    No video: every RGB value zero (black frames), as from a dead or covered camera.

    Unit: none; one level.
    """

    version = 1
    modality = "rgb"
    family = "missing"
    levels = (1.0, 1.0, 1.0, 1.0, 1.0)
    unit = "one level"

    def corrupt(self, x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
        return torch.zeros_like(x)


@register_corruption("rgb-blank")
class RGBBlank(Corruption):
    """A blank video: every value mid-grey (0.5).

    A blank video: every RGB value mid-grey (0.5), the value that carries no information once inputs
    are normalised around their mean, as a system that substitutes a neutral frame for a lost one would.

    Unit: none; one level.
    """

    version = 1
    modality = "rgb"
    family = "missing"
    levels = (1.0, 1.0, 1.0, 1.0, 1.0)
    unit = "one level"

    def corrupt(self, x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
        return torch.full_like(x, 0.5)


@register_corruption("skeleton-missing")
class SkeletonMissing(Corruption):
    """No skeleton: every body all zeros, as NTU RGB+D records a clip without a detected body.

    No skeleton: every joint of every body zero in every frame, how NTU RGB+D's files record a clip in
    which the tracker found no body.

    Unit: none; one level.
    """

    version = 1
    modality = "skeleton"
    family = "missing"
    levels = (1.0, 1.0, 1.0, 1.0, 1.0)
    unit = "one level"

    def corrupt(self, x: Tensor, severity: int, generator: torch.Generator) -> Tensor:
        return torch.zeros_like(x)
