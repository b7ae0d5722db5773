"""The two-stream RGB + skeleton action recogniser (the paper's Figure 1 without AMR).

``TwoStreamModel`` takes a dict of inputs ``{"rgb": [B, 3, T, H, W] in [0, 1], "skeleton":
[B, 3, T, V, M] in metres}``, runs one backbone per modality to a pooled feature vector,
concatenates the vectors and classifies them with one linear layer (late fusion by concatenation,
as in the paper). A model with a single backbone is a unimodal model (Table 1's baselines).

Extension points for defenses, none of which needs a subclass:

* ``backbones[m].insert(stage, module)``: a module applied after a stage (AMR);
* ``run(inputs, record=...)``: any stage's output, and the pooled features entering the fusion
  layer (MinSim, ExFMem, AMR's auxiliary heads);
* ``feature_transforms[m]``: a module applied to modality m's pooled feature before fusion (ExFMem);
* ``extras``: a ModuleDict for parameters a defense owns (projections, auxiliary heads), so they
  are trained by the optimiser and saved in the checkpoint with the model.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from robench.data.base import MODALITIES
from robench.models.backbone import Backbone


@dataclass
class ModelOutput:
    """Everything one forward pass exposes.

    Attributes:
        logits: ``[B, classes]`` fused prediction.
        features: pooled per-modality features as they enter the fusion layer, ``{m: [B, D_m]}``.
        raw_features: the same before ``feature_transforms`` (equal to ``features`` without one).
        stages: recorded stage outputs, ``{(modality, stage): tensor}`` (after any inserted module).
    """

    logits: Tensor
    features: dict[str, Tensor]
    raw_features: dict[str, Tensor]
    stages: dict[tuple[str, str], Tensor] = field(default_factory=dict)


class TwoStreamModel(nn.Module):
    """Late-fusion classifier over one backbone per modality.

    Args:
        backbones: ``{"rgb": Backbone, "skeleton": Backbone}`` (one or both).
        num_classes: output classes.
    """

    def __init__(self, backbones: Mapping[str, Backbone], num_classes: int) -> None:
        super().__init__()
        unknown = set(backbones) - set(MODALITIES)
        if unknown or not backbones:
            raise ValueError(f"backbones must be a non-empty subset of {MODALITIES}, got {sorted(backbones)}")
        self.backbones = nn.ModuleDict({m: backbones[m] for m in MODALITIES if m in backbones})
        self.num_classes = num_classes
        self.fusion = nn.Linear(sum(backbones[m].feature_dim for m in self.backbones), num_classes)
        self.feature_transforms = nn.ModuleDict()
        self.extras = nn.ModuleDict()

    @property
    def modalities(self) -> tuple[str, ...]:
        """The input keys this model reads, in fusion order."""
        return tuple(self.backbones.keys())

    def backbone(self, modality: str) -> Backbone:
        """``backbones[modality]``, typed (to a type checker a ModuleDict holds plain Modules)."""
        backbone = self.backbones[modality]
        if not isinstance(backbone, Backbone):
            raise TypeError(f"backbones[{modality!r}] is a {type(backbone).__name__}, not a Backbone")
        return backbone

    def run(
        self,
        inputs: Mapping[str, Tensor],
        record: Collection[tuple[str, str]] = (),
        use_taps: bool = True,
        use_transforms: bool = True,
    ) -> ModelOutput:
        """Full forward pass; ``record`` names ``(modality, stage)`` outputs to return."""
        raw, feats, stages = {}, {}, {}
        for m, backbone in self.backbones.items():
            if m not in inputs:
                raise KeyError(f"model needs input {m!r}; got {sorted(inputs)}")
            wanted = {s for (mm, s) in record if mm == m}
            f, rec = backbone(inputs[m], record=wanted, use_taps=use_taps)
            raw[m] = f
            feats[m] = self.feature_transforms[m](f) if use_transforms and m in self.feature_transforms else f
            stages.update({(m, s): v for s, v in rec.items()})
        logits = self.fusion(torch.cat([feats[m] for m in self.backbones], dim=1))
        return ModelOutput(logits, feats, raw, stages)

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """Logits ``[B, classes]`` (what attacks differentiate)."""
        return self.run(inputs).logits
