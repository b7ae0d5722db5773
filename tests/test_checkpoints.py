"""Backbone weights from local checkpoint files: reference key names, robench files, clear errors, model ids."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import TINY_PROTOCOL, tiny_model
from robench.errors import ProtocolError, RobenchError
from robench.models import HCN, I3D
from robench.plan import make_plan
from robench.protocol import load_protocol

I3D_SIZE = {"width": 0.0625, "frames": 8, "resolution": 32, "bn_momentum": 0.1}
HCN_SIZE = {"width": 0.125, "frames": 16, "window": 16}

#: HCN-pytorch's module names for ours (model/HCN.py of the reference: conv1..conv4 and their motion twins)
HCN_REFERENCE = {"stages.conv1.position.": "conv1.", "stages.conv1.motion.": "conv1m.",
                 "stages.conv2.position.": "conv2.", "stages.conv2.motion.": "conv2m.",
                 "stages.conv3.position.1.": "conv3.0.", "stages.conv3.motion.1.": "conv3m.0.",
                 "stages.conv4.position.": "conv4.", "stages.conv4.motion.": "conv4m.",
                 "stages.conv5.": "conv5.", "stages.conv6.": "conv6."}


def _randomised(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: (torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone())
            for k, v in module.state_dict().items()}


def _hcn_reference_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for ours, ref in HCN_REFERENCE.items():
            if key.startswith(ours):
                key = ref + key[len(ours):]
                break
        out[key] = value
    return out


def _assert_loaded(module: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    got = module.state_dict()
    for key, value in expected.items():
        assert torch.equal(got[key], value), key


def test_hcn_loads_hcn_pytorch_checkpoint_ignoring_its_classifier(tmp_path: Path) -> None:
    weights = _randomised(HCN(**HCN_SIZE), seed=3)
    reference = _hcn_reference_names(weights)
    assert "conv1m.0.weight" in reference and "conv3.0.weight" in reference
    reference["fc8.weight"], reference["fc8.bias"] = torch.randn(60, 512), torch.randn(60)
    # saved from nn.DataParallel, wrapped the way training scripts usually save
    path = tmp_path / "hcn.pth.tar"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in reference.items()}}, path)
    _assert_loaded(HCN(**HCN_SIZE, checkpoint=str(path)), weights)


def test_i3d_loads_reference_end_point_names(tmp_path: Path) -> None:
    weights = _randomised(I3D(**I3D_SIZE), seed=4)
    reference = {k.removeprefix("stages."): v for k, v in weights.items()}
    assert "Mixed_3b.b1b.conv3d.weight" in reference
    reference["logits.conv3d.weight"] = torch.randn(400, 64, 1, 1, 1)  # Kinetics head, ignored
    path = tmp_path / "rgb_imagenet.pt"
    torch.save(reference, path)
    _assert_loaded(I3D(**I3D_SIZE, checkpoint=str(path)), weights)


def test_backbone_loads_from_a_robench_model_checkpoint(tmp_path: Path) -> None:
    model = tiny_model(seed=7)
    path = tmp_path / "model.pt"
    torch.save({"format": 1, "state_dict": model.state_dict()}, path)  # the model cache's layout
    rgb = I3D(**I3D_SIZE, checkpoint=str(path))
    _assert_loaded(rgb, model.backbones["rgb"].state_dict())
    skel = HCN(**HCN_SIZE, checkpoint=str(path))
    _assert_loaded(skel, model.backbones["skeleton"].state_dict())


def test_mismatched_checkpoints_are_refused_with_the_keys_named(tmp_path: Path) -> None:
    wide = tmp_path / "wide.pt"
    torch.save(HCN(**{**HCN_SIZE, "width": 0.25}).state_dict(), wide)
    with pytest.raises(RobenchError, match=r"does not fit HCN\(width=0.125\).*other shapes.*stages\.conv1"):
        HCN(**HCN_SIZE, checkpoint=str(wide))

    partial = tmp_path / "partial.pt"
    state = HCN(**HCN_SIZE).state_dict()
    del state["stages.conv6.0.weight"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, partial)
    with pytest.raises(RobenchError, match=r"1 missing \(stages\.conv6\.0\.weight\).*1 unexpected \(extra\.weight\)"):
        HCN(**HCN_SIZE, checkpoint=str(partial))

    i3d_into_hcn = tmp_path / "i3d.pt"
    torch.save(I3D(**I3D_SIZE).state_dict(), i3d_into_hcn)
    with pytest.raises(RobenchError, match=r"missing.*unexpected"):
        HCN(**HCN_SIZE, checkpoint=str(i3d_into_hcn))

    not_weights = tmp_path / "notes.pt"
    torch.save({"lr": 0.1}, not_weights)
    with pytest.raises(RobenchError, match="no state dict of tensors"):
        HCN(**HCN_SIZE, checkpoint=str(not_weights))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(RobenchError, match=f"cannot read checkpoint {garbage}"):
        HCN(**HCN_SIZE, checkpoint=str(garbage))
    with pytest.raises(RobenchError, match="not found"):
        HCN(**HCN_SIZE, checkpoint=str(tmp_path / "absent.pt"))


def _skeleton_model_id(*overrides: str) -> str:
    plan = make_plan(load_protocol(TINY_PROTOCOL, list(overrides)))
    return plan.model_index[("synthetic", "none", 0)]


def test_model_id_follows_checkpoint_content_not_path(tmp_path: Path) -> None:
    plain = _skeleton_model_id()
    assert _skeleton_model_id("model.skeleton.checkpoint=null") == plain  # unset: ids of older runs still hold
    weights = HCN(width=0.125, frames=16, window=16, dropout=0.0).state_dict()
    a, b = tmp_path / "a.pt", tmp_path / "copy" / "b.pt"
    b.parent.mkdir()
    torch.save(weights, a)
    b.write_bytes(a.read_bytes())
    with_a = _skeleton_model_id(f"model.skeleton.checkpoint={a}")
    assert with_a != plain
    assert _skeleton_model_id(f"model.skeleton.checkpoint={b}") == with_a  # same bytes elsewhere: same model
    torch.save({k: v + 1 if v.is_floating_point() else v for k, v in weights.items()}, b)
    assert _skeleton_model_id(f"model.skeleton.checkpoint={b}") != with_a
    with pytest.raises(ProtocolError, match=r"tiny.yaml: key .model.skeleton.checkpoint.*an existing file"):
        _skeleton_model_id(f"model.skeleton.checkpoint={tmp_path / 'absent.pt'}")
