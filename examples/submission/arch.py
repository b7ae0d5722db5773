"""The architecture of an outside leaderboard entry: one backbone per modality, registered by name.

robench puts the two backbones under its late-fusion head (``robench.TwoStreamModel``: the pooled
features are concatenated and classified by one linear layer). A backbone is a sequence of named
stages (``self.stages``) ending in a pooled feature vector of ``feature_dim`` values; ``feature_stages``
names the stages whose outputs a defense such as AMR may reweight. The entry file lists this file
under ``model.plugins``, so robench imports it before building the model.
"""

from __future__ import annotations

from torch import Tensor, nn

import robench
from robench.models import Backbone


@robench.register_backbone("example_rgb")
class ExampleRGB(Backbone):
    """Two 3-D convolutions on the video (``inputs["rgb"]``: ``[B, 3, T, H, W]`` in [0, 1])."""

    modality = "rgb"

    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        self.stages["conv1"] = nn.Sequential(nn.Conv3d(3, channels, 3, padding=1), nn.ReLU(), nn.MaxPool3d(2))
        self.stages["conv2"] = nn.Sequential(nn.Conv3d(channels, 2 * channels, 3, padding=1), nn.ReLU())
        self.feature_dim, self.feature_stages = 2 * channels, ("conv1", "conv2")

    def preprocess(self, x: Tensor) -> Tensor:
        return x - 0.5  # normalisation lives inside the model; attacks see [0, 1]

    def pool(self, x: Tensor) -> Tensor:
        return x.mean(dim=(2, 3, 4))

    def head(self, x: Tensor) -> Tensor:
        return self.pool(x)


@robench.register_backbone("example_skeleton")
class ExampleSkeleton(Backbone):
    """Temporal convolutions over the joints (``inputs["skeleton"]``: ``[B, 3, T, 25, 2]`` in metres)."""

    modality = "skeleton"

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        self.stages["joints"] = nn.Sequential(nn.Conv2d(3 * 2, channels, (3, 1), padding=(1, 0)), nn.ReLU())
        self.stages["time"] = nn.Sequential(nn.Conv2d(channels, channels, (3, 1), padding=(1, 0)), nn.ReLU())
        self.feature_dim, self.feature_stages = channels, ("joints", "time")

    def preprocess(self, x: Tensor) -> Tensor:
        b, c, t, v, m = x.shape  # persons become channels: [B, 3 * M, T, V]
        return x.permute(0, 1, 4, 2, 3).reshape(b, c * m, t, v)

    def pool(self, x: Tensor) -> Tensor:
        return x.mean(dim=(2, 3))

    def head(self, x: Tensor) -> Tensor:
        return self.pool(x)
