"""I3D: Inception-v1 inflated to 3D (Carreira & Zisserman, CVPR 2017), as a staged backbone.

Layer table as in the public reference implementation (piergiaj/pytorch-i3d): every ``Unit3D`` is
Conv3d without bias + BatchNorm3d (eps 1e-3) + ReLU with TensorFlow
'same' padding; the stage names are the reference's end points, so its checkpoints load by name.
The classification layer is not part of the backbone: the two-stream model fuses the pooled
1024-d feature (global average pool + dropout) with the skeleton feature.

``width`` scales every channel count (1.0 = the paper's network, 1024-d features); input size is
free (``frames`` >= 8 and ``resolution`` >= 32 keep every stage non-empty). RGB arrives in [0, 1]
and is scaled to [-1, 1] inside :meth:`I3D.preprocess`.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robench.models.backbone import Backbone
from robench.models.sampling import SeededDropout
from robench.registry import register_backbone

# (name, in -> branch widths [b0, b1a, b1b, b2a, b2b, b3]) for every Inception block
INCEPTION_TABLE: dict[str, tuple[int, int, int, int, int, int]] = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (front, back) for one dimension."""
    total = max(kernel - stride, 0) if size % stride == 0 else max(kernel - size % stride, 0)
    return total // 2, total - total // 2


def _pad_same(x: Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> Tensor:
    t, h, w = x.shape[-3:]
    pt, ph, pw = (_same_pad(s, k, st) for s, k, st in zip((t, h, w), kernel, stride))
    if not any(pt + ph + pw):
        return x
    return F.pad(x, (*pw, *ph, *pt))


class Unit3D(nn.Module):
    """Conv3d (no bias) + BatchNorm3d + ReLU, TF 'same' padding."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int] = (1, 1, 1),
                 stride: tuple[int, int, int] = (1, 1, 1), bn_momentum: float = 0.01) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv3d = nn.Conv3d(cin, cout, kernel, stride=stride, padding=0, bias=False)
        self.bn = nn.BatchNorm3d(cout, eps=1e-3, momentum=bn_momentum)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv3d(_pad_same(x, self.kernel, self.stride))))


class MaxPool3dSame(nn.Module):
    """Max pooling with TF 'same' padding (zero padding: inputs are post-ReLU, so >= 0)."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool3d(_pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionModule(nn.Module):
    """Four parallel branches (1x1; 1x1->3x3; 1x1->3x3; maxpool->1x1), concatenated on channels."""

    def __init__(self, cin: int, widths: tuple[int, ...], bn_momentum: float) -> None:
        super().__init__()
        b0, b1a, b1b, b2a, b2b, b3 = widths
        self.b0 = Unit3D(cin, b0, bn_momentum=bn_momentum)
        self.b1a = Unit3D(cin, b1a, bn_momentum=bn_momentum)
        self.b1b = Unit3D(b1a, b1b, (3, 3, 3), bn_momentum=bn_momentum)
        self.b2a = Unit3D(cin, b2a, bn_momentum=bn_momentum)
        self.b2b = Unit3D(b2a, b2b, (3, 3, 3), bn_momentum=bn_momentum)
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(cin, b3, bn_momentum=bn_momentum)
        self.out_channels = b0 + b1b + b2b + b3

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat(
            [self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1
        )


@register_backbone("i3d")
class I3D(Backbone):
    """I3D (Inception-v1 inflated) RGB backbone; ``width`` scales channels, input size is free.

    Args:
        width: channel multiplier (1.0 = the paper's I3D, 1024-d features).
        frames: expected clip length T (used for shape checks and AMR weight shapes).
        resolution: expected frame height = width in pixels.
        dropout: dropout probability on the pooled feature.
        bn_momentum: BatchNorm momentum in PyTorch's convention (the reference's TF value is 0.01;
            short CPU runs need a larger one for the running statistics to settle).
        checkpoint: a local weights file to start from (e.g. ImageNet-inflated I3D weights in the
            reference's format, or a robench checkpoint); its classification head is ignored.
        stem_stride: spatial stride of the first convolution, ``Conv3d_1a_7x7`` (the reference's 2, or 1).
            With 2 the stem and the pool after it shrink a frame 4x per side before any Inception block,
            which suits 224-pixel frames; on small frames (the synthetic quickstart's 32 pixels, where a
            forearm is one or two pixels wide) 1 keeps the detail, at about 4x the compute after the stem.
        stem_temporal_stride: temporal stride of the first convolution (the reference's 2, or 1): 2 halves
            the clip at once, which suits the reference's 64 frames, not 8.
        stem_kernel: size of the first convolution's cubic kernel in frames and pixels (the reference's 7,
            or 5 or 3). A kernel other than 7 cannot load the reference's weights.
    """

    #: 2: the stem options (at their defaults, the code of version 1)
    version = 2
    modality = "rgb"
    head_keys = ("logits.",)
    file_params = ("checkpoint",)
    #: parameters filled from the dataset's RGB clip shape (3, T, H, W) when a protocol leaves them out
    input_size_params: ClassVar[dict[str, int]] = {"frames": 1, "resolution": 2}

    def __init__(self, width: float = 1.0, frames: int = 64, resolution: int = 224, dropout: float = 0.5,
                 bn_momentum: float = 0.01, checkpoint: str | None = None, stem_stride: int = 2,
                 stem_temporal_stride: int = 2, stem_kernel: int = 7) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"i3d width must be > 0, got {width}")
        if frames < 8 or resolution < 32:
            raise ValueError(f"i3d needs frames >= 8 and resolution >= 32, got {frames} x {resolution}")
        for name, value, allowed in (("stem_stride", stem_stride, (1, 2)),
                                     ("stem_temporal_stride", stem_temporal_stride, (1, 2)),
                                     ("stem_kernel", stem_kernel, (3, 5, 7))):
            if value not in allowed:
                raise ValueError(f"i3d {name} must be one of {', '.join(map(str, allowed))}, got {value!r}")
        self.width, self.frames, self.resolution = width, frames, resolution

        def c(n: int) -> int:
            return max(4, math.floor(n * width + 0.5))

        s = self.stages
        s["Conv3d_1a_7x7"] = Unit3D(3, c(64), (stem_kernel,) * 3, (stem_temporal_stride, stem_stride, stem_stride),
                                      bn_momentum)
        s["MaxPool3d_2a_3x3"] = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        s["Conv3d_2b_1x1"] = Unit3D(c(64), c(64), bn_momentum=bn_momentum)
        s["Conv3d_2c_3x3"] = Unit3D(c(64), c(192), (3, 3, 3), bn_momentum=bn_momentum)
        s["MaxPool3d_3a_3x3"] = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        cin = c(192)
        for name, widths in INCEPTION_TABLE.items():
            if name == "Mixed_4b":
                s["MaxPool3d_4a_3x3"] = MaxPool3dSame((3, 3, 3), (2, 2, 2))
            if name == "Mixed_5b":
                s["MaxPool3d_5a_2x2"] = MaxPool3dSame((2, 2, 2), (2, 2, 2))
            block = InceptionModule(cin, tuple(c(w) for w in widths), bn_momentum)
            s[name] = block
            cin = block.out_channels
        self.feature_dim = cin
        self.feature_stages = tuple(n for n in s if not n.startswith("MaxPool"))
        self.dropout = SeededDropout(dropout)
        if checkpoint:
            self.load_weights(checkpoint)

    def checkpoint_key(self, key: str) -> str:
        """The reference's end-point names (``Mixed_3b.b0.conv3d.weight``) live under ``stages.``."""
        return key if key.startswith(("stages.", "dropout")) else f"stages.{key}"

    #: set by RuntimeOptions.prepare_model: feed the convolutions channels-last tensors

    def preprocess(self, x: Tensor) -> Tensor:
        x = x * 2.0 - 1.0
        return x.contiguous(memory_format=torch.channels_last_3d) if self.channels_last else x

    def pool(self, x: Tensor) -> Tensor:
        return x.mean(dim=(2, 3, 4))

    def head(self, x: Tensor) -> Tensor:
        return self.dropout(self.pool(x))

    def example_input(self, batch: int = 1) -> Tensor:
        return torch.zeros(batch, 3, self.frames, self.resolution, self.resolution)
