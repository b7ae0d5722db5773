"""HCN: Hierarchical Co-occurrence Network (Li et al., IJCAI 2018), as a staged backbone.

Layer table as in the public reference implementation (huguyuehuhu/HCN-pytorch).
Input ``[B, 3, T, V, M]`` in metres; each of the M persons goes through shared weights, a
position stream and a motion stream (frame differences resized back to T) run the same layers
with their own weights, their conv4 outputs are concatenated, conv5 and conv6 follow, the persons
are merged by an element-wise max and fc7 gives the pooled feature (512-d at width 1).

Persons are folded into the batch (``[B*M, C, T', W']``). From conv1 to conv4 each stage holds a
``position`` and a ``motion`` sub-network with their own weights; their outputs are kept side by
side on the channel axis (first half position, second half motion), so every stage output is one
tensor and defenses can reweight any stage. conv4's output is therefore the reference's
``cat(out_p, out_m)``. (Grouped convolutions would compute the same, but measured slower on CPU.)

The layout after conv2 follows the reference: the joints become channels (``permute``) and
conv2's channels (``window``, 32) become the last spatial axis.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robench.models.backbone import Backbone
from robench.models.sampling import SeededDropout
from robench.registry import register_backbone


class _JointsToChannels(nn.Module):
    """[N, C, T, V] -> [N, V, T, C]: the joints become channels (the reference's permute)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(0, 3, 2, 1).contiguous()


class _TwoStreams(nn.Module):
    """Position and motion streams side by side on the channel axis, each with its own layers.

    Input ``[N, Cp + Cm, ...]`` is split at ``split`` channels; the outputs are concatenated, so the
    stage output stays one tensor (first half position, second half motion).
    """

    def __init__(self, position: nn.Module, motion: nn.Module, split: int) -> None:
        super().__init__()
        self.position, self.motion, self.split = position, motion, split

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.position(x[:, : self.split]), self.motion(x[:, self.split :])], dim=1)


@register_backbone("hcn")
class HCN(Backbone):
    """HCN skeleton backbone (two persons, position + motion streams); ``width`` scales channels.

    Args:
        width: channel multiplier (1.0 = the paper's HCN: conv channels 64/32/32/64/128/256, fc7 512).
        frames: input length T (32 in the paper); fc7's input size follows from it.
        joints: V, number of joints (25 for NTU).
        persons: M, bodies per clip (2 for NTU).
        window: conv2's output channels, which become the last spatial axis (32 in the reference).
        dropout: dropout probability (conv4, conv5, conv6, fc7), 0.5 in the reference.
        center: subtract each clip's first-frame SpineMid of body 1 before the network
            (off by default: the reference feeds raw metres).
        checkpoint: a local weights file to start from (HCN-pytorch's format or a robench
            checkpoint); its classifier fc8 is ignored.
    """

    modality = "skeleton"
    head_keys = ("fc8.",)
    file_params = ("checkpoint",)
    #: parameters filled from the dataset's skeleton clip shape (3, T, V, M) when a protocol leaves them out
    input_size_params: ClassVar[dict[str, int]] = {"frames": 1, "joints": 2, "persons": 3}

    def __init__(self, width: float = 1.0, frames: int = 32, joints: int = 25, persons: int = 2, window: int = 32,
                 dropout: float = 0.5, center: bool = False, checkpoint: str | None = None) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"hcn width must be > 0, got {width}")
        if frames < 16 or window < 16:
            raise ValueError(f"hcn needs frames >= 16 and window >= 16 (four 2x poolings), got {frames}, {window}")
        self.width, self.frames, self.joints, self.persons, self.window = width, frames, joints, persons, window
        self.center = center

        def c(n: int) -> int:
            return max(4, math.floor(n * width + 0.5))

        c1, c3, c4, c5, c6, f7 = c(64), c(32), c(64), c(128), c(256), c(512)
        s = self.stages

        def streams(make: Callable[[], nn.Module], split: int) -> _TwoStreams:
            return _TwoStreams(make(), make(), split)

        s["conv1"] = streams(lambda: nn.Sequential(nn.Conv2d(3, c1, 1), nn.ReLU()), 3)
        s["conv2"] = streams(lambda: nn.Conv2d(c1, window, (3, 1), padding=(1, 0)), c1)
        s["conv3"] = streams(
            lambda: nn.Sequential(_JointsToChannels(), nn.Conv2d(joints, c3, 3, padding=1), nn.MaxPool2d(2)), window
        )
        def maps_dropout() -> SeededDropout:
            return SeededDropout(dropout, channels=True)  # whole feature maps, as nn.Dropout2d

        s["conv4"] = streams(
            lambda: nn.Sequential(nn.Conv2d(c3, c4, 3, padding=1), maps_dropout(), nn.MaxPool2d(2)), c3
        )
        s["conv5"] = nn.Sequential(nn.Conv2d(2 * c4, c5, 3, padding=1), nn.ReLU(), maps_dropout(), nn.MaxPool2d(2))
        s["conv6"] = nn.Sequential(nn.Conv2d(c5, c6, 3, padding=1), nn.ReLU(), maps_dropout(), nn.MaxPool2d(2))
        self.feature_stages = ("conv1", "conv2", "conv3", "conv4", "conv5", "conv6")
        t_out, w_out = frames // 16, window // 16
        self.fc7 = nn.Sequential(nn.Linear(c6 * t_out * w_out, f7), nn.ReLU(), SeededDropout(dropout))
        self.feature_dim = f7
        for module in self.modules():  # as the reference: Glorot-uniform weights, zero biases
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:  # every layer here has one
                    nn.init.zeros_(module.bias)
        if checkpoint:
            self.load_weights(checkpoint)

    #: HCN-pytorch's layer names -> ours (position stream conv1-conv4, motion stream conv1m-conv4m)
    _REFERENCE: ClassVar[dict[str, str]] = {
        "conv1.": "stages.conv1.position.", "conv1m.": "stages.conv1.motion.",
        "conv2.": "stages.conv2.position.", "conv2m.": "stages.conv2.motion.",
        "conv3.0.": "stages.conv3.position.1.", "conv3m.0.": "stages.conv3.motion.1.",
        "conv4.": "stages.conv4.position.", "conv4m.": "stages.conv4.motion.",
        "conv5.": "stages.conv5.", "conv6.": "stages.conv6."}

    def checkpoint_key(self, key: str) -> str:
        if key.startswith(("stages.", "fc7.")):
            return key
        for ref, ours in self._REFERENCE.items():
            if key.startswith(ref):
                return ours + key[len(ref):]
        return key

    def preprocess(self, x: Tensor) -> Tensor:
        """[B, 3, T, V, M] -> [B*M, 6, T, V]: position and motion streams stacked on channels."""
        b, c, t, v, m = x.shape
        if (c, v, m) != (3, self.joints, self.persons):
            raise ValueError(f"hcn expects [B, 3, T, {self.joints}, {self.persons}], got {tuple(x.shape)}")
        if self.center:
            x = x - x[:, :, :1, 1:2, :1]  # SpineMid (joint 2) of body 1 in frame 1
        motion = x[:, :, 1:] - x[:, :, :-1]
        motion = motion.permute(0, 1, 4, 2, 3).reshape(b, c * m, t - 1, v)
        motion = F.interpolate(motion, size=(t, v), mode="bilinear", align_corners=False)
        motion = motion.view(b, c, m, t, v)
        pos = x.permute(0, 1, 4, 2, 3)  # [B, 3, M, T, V]
        both = torch.cat([pos, motion], dim=1)  # [B, 6, M, T, V]
        return both.permute(0, 2, 1, 3, 4).reshape(b * m, 2 * c, t, v)

    def _per_clip(self, x: Tensor) -> Tensor:
        return x.view(-1, self.persons, *x.shape[1:])

    def pool(self, x: Tensor) -> Tensor:
        """Average over the two feature axes, then max over persons (HCN's person merge)."""
        return self._per_clip(x.mean(dim=(2, 3))).amax(dim=1)

    def head(self, x: Tensor) -> Tensor:
        merged = self._per_clip(x).amax(dim=1)
        return self.fc7(merged.flatten(1))

    def example_input(self, batch: int = 1) -> Tensor:
        return torch.zeros(batch, 3, self.frames, self.joints, self.persons)
