"""AMR: the Attention-based Modality Reweighter (Liu et al., IJCB 2024, Section 3.3; the paper robench reproduces).

At each of S insertion points AMR holds two learnable element-wise weight tensors shaped like the
RGB and the skeleton feature maps at that stage (batch excluded; paper Eq. 8): ``W_R`` of shape
``[1, C_R, T_R, H, W]`` and ``W_S`` of shape ``[1, C_S, T_S, V]`` (for HCN the stage output's own
axes). They multiply the features, and the reweighted features continue forward, so the weights
are part of the network every input goes through, attacks included. Each AMR also has an
auxiliary head: global average pooling of each reweighted modality (Eq. 9-10), concatenation and
a fully connected layer giving auxiliary logits.

Training (Eq. 11-12), with x' the training attack's adversarial example (PGD-10 on both
modalities at eps 8/255 in the paper, made with the model in eval mode)::

    L_total = CE(f(x), y) + lambda * ( CE(f(x'), y) + 1/S * sum_i CE(aux_i(x'), y) )

What the paper leaves open is a parameter with a stated default (docs/defenses.md): the insertion stages (the
last S feature stages of each branch counted back from the head: I3D Mixed_5c, Mixed_5b, Mixed_4f;
HCN conv6, conv5, conv4), the weights' initial value (1.0), and whether clean samples pass through
the AMR weights during training (yes: one network at test time). AMR number 1 is the one nearest
the head.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robench.data.base import MODALITIES
from robench.defenses.base import Defense, Inputs, LossOutput
from robench.models.two_stream import TwoStreamModel
from robench.registry import register_defense
from robench.report.contrib import SummaryRow, SummaryTable
from robench.train.context import TrainContext

if TYPE_CHECKING:  # matplotlib is imported only where Figure 4 is drawn
    from matplotlib.figure import Figure


class Reweight(nn.Module):
    """Learnable element-wise weights ``W`` of one feature map's shape: ``x -> x * W`` (paper Eq. 8)."""

    def __init__(self, shape: tuple[int, ...], init: float = 1.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((1, *shape), float(init)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.weight

    def channel_means(self) -> Tensor:
        """Mean weight of each channel (Figure 4): ``[C]``."""
        dims = [d for d in range(self.weight.dim()) if d != 1]
        return self.weight.detach().mean(dim=dims)


@register_defense("amr")
@dataclass
class AMR(Defense):
    """Attention-based Modality Reweighter: element-wise weights on both modalities' features with auxiliary heads.

    Args:
        count: S, the number of AMR modules (paper: 3 on NTU, 1 on iMiGUE; 0 = no module).
        lam: lambda, the weight of the adversarial and auxiliary terms (paper: 1).
        rgb_stages: I3D stages to insert after, nearest the head first (default: the last
            ``count`` feature stages: Mixed_5c, Mixed_5b, Mixed_4f).
        skeleton_stages: HCN stages to insert after (default: conv6, conv5, conv4).
        init: initial value of every weight.
        clean_through_amr: clean samples also pass the AMR weights during training (default);
            off = clean samples take the plain network and only adversarial ones are reweighted.
        clean_weight: weight of the clean cross-entropy (the paper's 1; 0 with ``count`` 0 is
            exactly adversarial training on the attacked modalities).
        modalities: what the training attack perturbs (paper: both).
    """

    count: int = 3
    lam: float = 1.0
    rgb_stages: list[str] | None = None
    skeleton_stages: list[str] | None = None
    init: float = 1.0
    clean_through_amr: bool = True
    clean_weight: float = 1.0
    modalities: list[str] = field(default_factory=lambda: ["rgb", "skeleton"])
    uses_training_attack: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"count must be >= 0, got {self.count}")
        for name in ("rgb_stages", "skeleton_stages"):
            stages = getattr(self, name)
            if stages is not None and (len(stages) != self.count or len(set(stages)) != len(stages)):
                raise ValueError(f"{name} must list {self.count} distinct stages (one per AMR), got {stages}")
        bad = [m for m in self.modalities if m not in MODALITIES]
        if not self.modalities or bad:
            raise ValueError(f"modalities must be a non-empty subset of {list(MODALITIES)}, got {self.modalities}")
        self.modalities = [m for m in MODALITIES if m in self.modalities]
        if self.lam < 0 or self.clean_weight < 0:
            raise ValueError("lam and clean_weight must be >= 0")

    # -- structure -------------------------------------------------------------------------------
    def points(self, model: TwoStreamModel) -> list[tuple[str, str]]:
        """``(rgb stage, skeleton stage)`` of each AMR, AMR 1 first."""
        if self.count == 0:
            return []
        missing = [m for m in MODALITIES if m not in model.backbones]
        if missing:
            raise ValueError(f"AMR needs both an RGB and a skeleton backbone; the model lacks {missing}")
        rgb = self.rgb_stages or model.backbone("rgb").last_feature_stages(self.count)
        skel = self.skeleton_stages or model.backbone("skeleton").last_feature_stages(self.count)
        return list(zip(rgb, skel))

    def prepare(self, model: TwoStreamModel) -> None:
        heads = nn.ModuleList()
        model.extras["amr_heads"] = heads
        points = self.points(model)
        if not points:
            return
        rgb_bb, skel_bb = model.backbone("rgb"), model.backbone("skeleton")
        rgb_shapes, skel_shapes = rgb_bb.stage_shapes(), skel_bb.stage_shapes()
        for rgb_stage, skel_stage in points:
            for bb, stage, shapes in ((rgb_bb, rgb_stage, rgb_shapes), (skel_bb, skel_stage, skel_shapes)):
                if stage not in shapes:
                    raise ValueError(f"{type(bb).__name__} has no stage {stage!r}; stages: {', '.join(shapes)}")
                bb.insert(stage, Reweight(shapes[stage], self.init))
            heads.append(nn.Linear(rgb_shapes[rgb_stage][0] + skel_shapes[skel_stage][0], model.num_classes))

    def weights(self, model: TwoStreamModel) -> list[tuple[Reweight, Reweight]]:
        """The ``(W_R, W_S)`` modules of each AMR, AMR 1 first."""
        out = []
        for r, s in self.points(model):
            w_r, w_s = model.backbone("rgb").taps[r], model.backbone("skeleton").taps[s]
            if not isinstance(w_r, Reweight) or not isinstance(w_s, Reweight):
                raise TypeError(f"AMR's stages {r} / {s} hold {type(w_r).__name__} / {type(w_s).__name__}, "
                                "not Reweight")
            out.append((w_r, w_s))
        return out

    # -- training --------------------------------------------------------------------------------
    def aux_logits(self, model: TwoStreamModel, stages: dict[tuple[str, str], Tensor]) -> list[Tensor]:
        """Auxiliary predictions of each AMR from recorded (reweighted) stage outputs (Eq. 9-10 + FC)."""
        heads = model.extras["amr_heads"]
        if not isinstance(heads, nn.ModuleList):
            raise TypeError(f"model.extras['amr_heads'] is a {type(heads).__name__}, not the ModuleList AMR adds")
        out = []
        for head, (r, s) in zip(heads, self.points(model)):
            z = torch.cat([model.backbone("rgb").pool(stages[("rgb", r)]),
                           model.backbone("skeleton").pool(stages[("skeleton", s)])], dim=1)
            out.append(head(z))
        return out

    def loss(self, model: TwoStreamModel, inputs: Inputs, labels: Tensor, ctx: TrainContext) -> LossOutput:
        adv = ctx.adversarial(model, inputs, labels, self.modalities)
        points = self.points(model)
        record = [("rgb", r) for r, _ in points] + [("skeleton", s) for _, s in points]
        clean_logits = model.run(inputs, use_taps=self.clean_through_amr).logits
        adv_out = model.run(adv, record=record)
        l_clean = F.cross_entropy(clean_logits, labels)
        l_adv = F.cross_entropy(adv_out.logits, labels)
        aux = self.aux_logits(model, adv_out.stages)
        l_aux = torch.stack([F.cross_entropy(a, labels) for a in aux]).mean() if aux else l_adv.new_zeros(())
        loss = self.clean_weight * l_clean + self.lam * (l_adv + l_aux)
        return LossOutput(loss, adv_out.logits, {"loss_clean": float(l_clean.detach()),
                                                  "loss_adv": float(l_adv.detach()),
                                                  "loss_aux": float(l_aux.detach())})

    # -- reporting -------------------------------------------------------------------------------
    def summary(self, model: TwoStreamModel) -> dict[str, Any]:
        """Per AMR: its stages, the mean weight per modality (Table 3), per-channel means (Figure 4)."""
        amrs = []
        for i, ((r, s), (w_r, w_s)) in enumerate(zip(self.points(model), self.weights(model)), start=1):
            amrs.append({
                "index": i, "rgb_stage": r, "skeleton_stage": s,
                "rgb_shape": list(w_r.weight.shape[1:]), "skeleton_shape": list(w_s.weight.shape[1:]),
                "mean_rgb": float(w_r.weight.detach().mean()), "mean_skeleton": float(w_s.weight.detach().mean()),
                "channel_means_rgb": [round(float(v), 6) for v in w_r.channel_means()],
                "channel_means_skeleton": [round(float(v), 6) for v in w_s.channel_means()],
            })
        return {"amr": amrs}

    # -- report contributions: the paper's Table 3 and Figure 4 ----------------------------------
    report_tables: ClassVar[tuple[str, ...]] = ("amr_weights",)
    report_figures: ClassVar[tuple[str, ...]] = ("amr_weights",)

    @classmethod
    def summary_table(cls, kind: str, params: dict[str, Any], summaries: list[dict[str, Any]]) -> SummaryTable:
        """``amr_weights`` (Table 3): the mean of W_R and of W_S in each AMR, averaged over seeds (4 decimals).

        Rows ``rgb`` and ``skeleton``; columns ``AMR 1`` ... ``AMR count`` (AMR 1 nearest the head).
        """
        if kind not in cls.report_tables:
            return super().summary_table(kind, params, summaries)
        count = int(params.get("count", cls.count))
        amrs = [s.get("amr", []) for s in summaries]
        columns = [f"AMR {i + 1}" for i in range(count)]
        rows = []
        for modality, label in (("rgb", "Mean value of W_R"), ("skeleton", "Mean value of W_S")):
            values: dict[str, float | None] = {}
            for i, column in enumerate(columns):
                found = [float(a[i][f"mean_{modality}"]) for a in amrs if len(a) > i]
                values[column] = sum(found) / len(found) if found else None
            rows.append(SummaryRow(modality, label, values))
        return SummaryTable(columns, rows, digits=4)

    @classmethod
    def summary_figure(cls, kind: str, panels: list[tuple[str, dict[str, Any]]], title: str) -> Figure:
        """``amr_weights`` (Figure 4): the mean weight of every channel of every AMR, RGB and skeleton side by
        side; one row of panels per dataset, one panel per AMR (x: channel index, y: mean weight)."""
        if kind not in cls.report_figures:
            return super().summary_figure(kind, panels, title)
        import matplotlib.pyplot as plt

        rows = [(label, summary.get("amr") or []) for label, summary in panels]
        ncols = max([len(a) for _, a in rows] + [1])
        fig, axes = plt.subplots(len(rows), ncols, figsize=(4.2 * ncols, 3.0 * len(rows)), squeeze=False)
        for r, (label, amrs) in enumerate(rows):
            for c in range(ncols):
                ax = axes[r][c]
                if c >= len(amrs):
                    ax.axis("off")
                    continue
                a = amrs[c]
                for modality, color, name in (("rgb", "C0", "RGB (W_R)"), ("skeleton", "C3", "skeleton (W_S)")):
                    means = a[f"channel_means_{modality}"]
                    ax.plot(range(len(means)), means, ".", markersize=3, color=color, label=name)
                ax.set_title(f"{label}: AMR {a['index']}", fontsize=9)
                ax.set_xlabel("channel")
                ax.set_ylabel("mean weight")
                ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=7)
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        return fig
