"""I3D and HCN against the reference layer tables; the two-stream model's extension points."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robench.models import HCN, I3D, TwoStreamModel
from robench.models.i3d import INCEPTION_TABLE

I3D_END_POINTS = [
    "Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3", "Mixed_3b", "Mixed_3c",
    "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f", "MaxPool3d_5a_2x2", "Mixed_5b",
    "Mixed_5c",
]
MIXED_OUT = {"Mixed_3b": 256, "Mixed_3c": 480, "Mixed_4b": 512, "Mixed_4c": 512, "Mixed_4d": 512, "Mixed_4e": 528,
             "Mixed_4f": 832, "Mixed_5b": 832, "Mixed_5c": 1024}


def _i3d_param_count() -> int:
    """Parameters of the full-width I3D feature extractor, from the layer table (no code shared)."""
    def unit(cin: int, cout: int, k: int) -> int:  # conv without bias + BN (weight, bias)
        return cin * cout * k + 2 * cout

    total = unit(3, 64, 343) + unit(64, 64, 1) + unit(64, 192, 27)
    cin = 192
    for b0, b1a, b1b, b2a, b2b, b3 in INCEPTION_TABLE.values():
        total += unit(cin, b0, 1) + unit(cin, b1a, 1) + unit(b1a, b1b, 27) + unit(cin, b2a, 1) + unit(b2a, b2b, 27)
        total += unit(cin, b3, 1)
        cin = b0 + b1b + b2b + b3
    return total


def test_i3d_full_size_matches_reference_table() -> None:
    net = I3D()
    assert net.stage_names == I3D_END_POINTS
    assert net.feature_dim == 1024
    assert sum(p.numel() for p in net.parameters()) == _i3d_param_count()
    for name, blk in net.stages.items():
        if name in MIXED_OUT:
            assert blk.out_channels == MIXED_OUT[name]
    bn = net.stages["Conv3d_1a_7x7"].bn
    assert bn.eps == 1e-3 and bn.momentum == 0.01


def test_i3d_full_size_forward_shapes() -> None:
    """Standard input 64 x 224 x 224 -> Mixed_5c [1024, 8, 7, 7] (TF 'same' padding arithmetic)."""
    net = I3D(width=1.0).eval().to("meta")  # shapes only: no arithmetic on the meta device
    with torch.no_grad():
        shapes = net.stage_shapes(torch.zeros(1, 3, 64, 224, 224, device="meta"))
    assert shapes["Conv3d_1a_7x7"] == (64, 32, 112, 112)
    assert shapes["MaxPool3d_2a_3x3"] == (64, 32, 56, 56)
    assert shapes["Mixed_3c"] == (480, 32, 28, 28)
    assert shapes["Mixed_4f"] == (832, 16, 14, 14)
    assert shapes["Mixed_5c"] == (1024, 8, 7, 7)


@pytest.mark.parametrize("frames, res, width", [(8, 32, 0.125), (16, 48, 0.25), (9, 40, 0.0625)])
def test_i3d_sizes(frames: int, res: int, width: float) -> None:
    net = I3D(width=width, frames=frames, resolution=res).eval()
    feats, rec = net(torch.rand(2, 3, frames, res, res), record=["Mixed_5c"])
    assert feats.shape == (2, net.feature_dim)
    assert rec["Mixed_5c"].shape[:2] == (2, net.feature_dim)
    assert net.last_feature_stages(3) == ["Mixed_5c", "Mixed_5b", "Mixed_4f"]


def test_i3d_rejects_too_small_inputs() -> None:
    with pytest.raises(ValueError):
        I3D(frames=4)


def test_i3d_stem_options_keep_small_frames() -> None:
    """The stem's strides and kernel change how much of a small clip reaches Mixed_5c, nothing else."""
    x = torch.rand(1, 3, 8, 32, 32)
    ref = I3D(width=0.0625, frames=8, resolution=32).eval()
    assert ref.stage_shapes(x)["Mixed_5c"][1:] == (1, 1, 1)
    fine = I3D(width=0.0625, frames=8, resolution=32, stem_stride=1).eval()
    assert fine.stage_shapes(x)["Conv3d_1a_7x7"][1:] == (4, 32, 32)
    assert fine.stage_shapes(x)["Mixed_5c"][1:] == (1, 2, 2)
    small = I3D(width=0.0625, frames=8, resolution=32, stem_stride=1, stem_temporal_stride=1, stem_kernel=3).eval()
    assert small.stage_shapes(x)["Mixed_5c"][1:] == (2, 2, 2)
    assert small.stages["Conv3d_1a_7x7"].conv3d.weight.shape[2:] == (3, 3, 3)
    # the strides do not change any weight: a reference checkpoint fits a stride-1 stem
    assert {k: v.shape for k, v in ref.state_dict().items()} == {k: v.shape for k, v in fine.state_dict().items()}
    for bad in ({"stem_stride": 4}, {"stem_temporal_stride": 0}, {"stem_kernel": 4}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            I3D(width=0.0625, frames=8, resolution=32, **bad)


def test_hcn_full_size_matches_reference() -> None:
    net = HCN()
    s = net.stages
    # per stream: conv1 1x1 (3->64), conv2 (3,1) (64->32), conv3 3x3 (25->32), conv4 3x3 (32->64)
    for stream in ("position", "motion"):
        assert getattr(s["conv1"], stream)[0].weight.shape == (64, 3, 1, 1)
        assert getattr(s["conv2"], stream).weight.shape == (32, 64, 3, 1)
        assert getattr(s["conv3"], stream)[1].weight.shape == (32, 25, 3, 3)
        assert getattr(s["conv4"], stream)[0].weight.shape == (64, 32, 3, 3)
    assert s["conv5"][0].weight.shape == (128, 128, 3, 3)
    assert s["conv6"][0].weight.shape == (256, 128, 3, 3)
    assert net.fc7[0].weight.shape == (512, 256 * 2 * 2)  # 256 * (T/16)^2 with T = 32
    assert net.feature_dim == 512
    assert net.last_feature_stages(3) == ["conv6", "conv5", "conv4"]


def test_hcn_shapes_and_person_merge() -> None:
    net = HCN(width=0.25, frames=32).eval()
    x = torch.randn(3, 3, 32, 25, 2)
    shapes = net.stage_shapes(x)
    assert shapes["conv4"] == (2 * 16, 8, 8)  # position + motion streams side by side
    assert shapes["conv6"] == (64, 2, 2)
    feats, rec = net(x, record=["conv6"])
    assert feats.shape == (3, 128)
    # pool: mean over the feature axes, then max over the two persons
    per_person = rec["conv6"].mean(dim=(2, 3)).view(3, 2, -1)
    assert torch.equal(net.pool(rec["conv6"]), per_person.amax(dim=1))


def test_hcn_persons_are_symmetric() -> None:
    """Swapping the two bodies does not change the output (shared weights, max merge)."""
    net = HCN(width=0.25, frames=16, window=16).eval()
    x = torch.randn(2, 3, 16, 25, 2)
    with torch.no_grad():
        a, _ = net(x)
        b, _ = net(x.flip(-1))
    assert torch.allclose(a, b, atol=1e-6)


def test_two_stream_concat_fusion_and_record() -> None:
    model = TwoStreamModel({"rgb": I3D(width=0.0625, frames=8, resolution=32),
                            "skeleton": HCN(width=0.125, frames=16, window=16)}, 5).eval()
    x = {"rgb": torch.rand(2, 3, 8, 32, 32), "skeleton": torch.randn(2, 3, 16, 25, 2)}
    out = model.run(x, record=[("rgb", "Mixed_5c"), ("skeleton", "conv6")])
    assert out.logits.shape == (2, 5)
    fused = torch.cat([out.features["rgb"], out.features["skeleton"]], 1)
    assert torch.allclose(out.logits, model.fusion(fused))
    assert set(out.stages) == {("rgb", "Mixed_5c"), ("skeleton", "conv6")}
    assert torch.equal(model(x), out.logits)


class Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def test_insert_between_stages_and_feature_transform() -> None:
    model = TwoStreamModel({"skeleton": HCN(width=0.125, frames=16, window=16, dropout=0.0)}, 3).eval()
    x = {"skeleton": torch.randn(2, 3, 16, 25, 2)}
    before = model.run(x, record=[("skeleton", "conv5")])
    model.backbones["skeleton"].insert("conv5", Scale(0.0))
    after = model.run(x, record=[("skeleton", "conv5")])
    assert torch.equal(after.stages[("skeleton", "conv5")], torch.zeros_like(before.stages[("skeleton", "conv5")]))
    bypass = model.run(x, use_taps=False)
    assert torch.allclose(bypass.logits, before.logits)
    model.feature_transforms["skeleton"] = Scale(2.0)
    out = model.run(x)
    assert torch.allclose(out.features["skeleton"], 2 * out.raw_features["skeleton"])
    with pytest.raises(KeyError, match="no stage"):
        model.backbones["skeleton"].insert("conv9", Scale(1.0))
    with pytest.raises(ValueError, match="already"):
        model.backbones["skeleton"].insert("conv5", Scale(1.0))


def test_unimodal_model_and_missing_input() -> None:
    model = TwoStreamModel({"rgb": I3D(width=0.0625, frames=8, resolution=32)}, 4).eval()
    assert model.modalities == ("rgb",)
    assert model({"rgb": torch.rand(1, 3, 8, 32, 32)}).shape == (1, 4)
    with pytest.raises(KeyError, match="needs input 'rgb'"):
        model({"skeleton": torch.zeros(1, 3, 16, 25, 2)})
    with pytest.raises(ValueError):
        TwoStreamModel({"depth": I3D(width=0.0625)}, 4)  # type: ignore[dict-item]
