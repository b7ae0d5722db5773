"""MinSim: minimise the similarity of the two modalities' features (Tian & Xu, CVPR 2021).

The paper describes it as a dissimilarity constraint ("multimodal dispersion and unimodal
compactness"); the official code (YapengTian/AV-Robustness-CVPR21) is one term, added to the
cross-entropy on clean inputs, with no adversarial examples (docs/defenses.md)::

    loss = CE(f(x), y) + w * mean_b cos(f_R(x_b), f_S(x_b))

on the per-modality pooled features that enter the fusion layer, same sample, w = 1. The two
features must have the same width; where the backbones differ (I3D 1024 vs HCN 512) the wider one
is mapped to the narrower width by a linear projection used only in this term.

A *learned* projection (the default) is trained with the rest of the network and can
lower the cosine by itself, without changing the features the classifier uses; ``projection:
fixed`` uses a random orthonormal map that is not trained, so only the features can move the term.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch.nn.functional as F
from torch import Tensor, nn

from robench.data.base import MODALITIES
from robench.defenses.base import Defense, Inputs, LossOutput
from robench.models.two_stream import ModelOutput, TwoStreamModel
from robench.registry import register_defense
from robench.train.context import TrainContext

PROJECTION_KEY = "minsim_projection"


@register_defense("minsim")
@dataclass
class MinSim(Defense):
    """Cross-entropy plus w times the mean cosine similarity of the RGB and skeleton features (Tian & Xu 2021).

    Args:
        weight: w, the weight of the similarity term (official code: 1.0).
        projection: how the wider feature is mapped to the narrower width when they differ:
            "learned" (a trained linear layer) or "fixed" (a random orthonormal map, not trained).
    """

    weight: float = 1.0
    projection: Literal["learned", "fixed"] = "learned"

    def prepare(self, model: TwoStreamModel) -> None:
        missing = [m for m in MODALITIES if m not in model.backbones]
        if missing:
            raise ValueError(f"MinSim needs both an RGB and a skeleton backbone; the model lacks {missing}")
        d_rgb, d_skel = (model.backbone(m).feature_dim for m in MODALITIES)
        if d_rgb == d_skel:
            return  # equal widths: compare the features directly, as the official code does
        proj = nn.Linear(max(d_rgb, d_skel), min(d_rgb, d_skel), bias=False)
        if self.projection == "fixed":
            nn.init.orthogonal_(proj.weight)
            proj.weight.requires_grad_(False)
        model.extras[PROJECTION_KEY] = proj

    @staticmethod
    def projected_modality(model: TwoStreamModel) -> str | None:
        """The modality whose feature is projected (the wider one), or None if widths agree."""
        if PROJECTION_KEY not in model.extras:
            return None
        return "rgb" if model.backbone("rgb").feature_dim > model.backbone("skeleton").feature_dim else "skeleton"

    def similarity(self, model: TwoStreamModel, out: ModelOutput) -> Tensor:
        """Per-sample cosine similarity ``[B]`` of the fused features (after the projection)."""
        f = dict(out.features)
        m = self.projected_modality(model)
        if m is not None:
            f[m] = model.extras[PROJECTION_KEY](f[m])
        return F.cosine_similarity(f["rgb"], f["skeleton"], dim=1)

    def loss(self, model: TwoStreamModel, inputs: Inputs, labels: Tensor, ctx: TrainContext) -> LossOutput:
        out = model.run(inputs)
        ce = F.cross_entropy(out.logits, labels)
        cos = self.similarity(model, out).mean()
        return LossOutput(ce + self.weight * cos, out.logits,
                          {"loss_ce": float(ce.detach()), "cosine": float(cos.detach())})

    def summary(self, model: TwoStreamModel) -> dict[str, Any]:
        return {"minsim": {"weight": self.weight, "projected": self.projected_modality(model),
                           "projection": self.projection if self.projected_modality(model) else None}}
