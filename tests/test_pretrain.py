"""The synthetic-pretrained I3D (``builtin:i3d-synthetic``) and the module that makes it.

The weights are the synthetic stand-in for the paper's Kinetics-pretrained I3D. What must hold: they
never saw a benchmark class, they load into the synthetic profiles' I3D, they are part of model ids by
content, and what they carry is the body, not the room: a linear probe on their features learns the
class from clips with bodies and is at chance on the same clips with the bodies removed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import linear_probe
from robench.data.synthetic import SyntheticConfig, generate_split
from robench.data.synthetic.actions import ACTIONS
from robench.errors import RobenchError
from robench.identity import file_digest, identity_params
from robench.models.i3d import I3D
from robench.models.weights import BUILTIN_PREFIX, builtin_weights, weights_path
from robench.protocol.load import bundled_protocols
from robench.protocol.schema import load_protocol
from robench.train.pretrain import FIRST_PRETRAIN_ACTION, PretrainConfig, pose_clips, pretrain

BUILTIN = "builtin:i3d-synthetic"
#: the synthetic profiles' I3D (robench/protocols/quickstart.yaml)
SYNTHETIC_I3D = {"width": 0.125, "frames": 8, "resolution": 32, "dropout": 0.0, "bn_momentum": 0.1,
                 "stem_stride": 1, "stem_temporal_stride": 1, "stem_kernel": 3}


def test_builtin_weights_are_shipped_with_their_record() -> None:
    path = weights_path(BUILTIN)
    assert path == builtin_weights()["i3d-synthetic"] and path.is_file()
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["actions"] == [a.name for a in ACTIONS[FIRST_PRETRAIN_ACTION:]]
    assert record["config"]["seed"] != 0  # other performers and rooms than the bundled protocols' seed 0
    assert record["held_out"]["action_accuracy"] > 0.9
    assert weights_path("~/w.pt") == Path.home() / "w.pt"  # a path stays a path


def test_builtin_weights_load_into_the_synthetic_i3d_and_enter_its_identity() -> None:
    fresh = I3D(**SYNTHETIC_I3D)  # type: ignore[arg-type]
    loaded = I3D(**SYNTHETIC_I3D, checkpoint=BUILTIN)  # type: ignore[arg-type]
    w = "stages.Conv3d_1a_7x7.conv3d.weight"
    assert not torch.equal(fresh.state_dict()[w], loaded.state_dict()[w])
    assert torch.equal(loaded.state_dict()[w], torch.load(weights_path(BUILTIN), weights_only=True)[w])
    params = identity_params(I3D, {**SYNTHETIC_I3D, "checkpoint": BUILTIN})
    assert params["checkpoint"] == file_digest(weights_path(BUILTIN))


def test_no_bundled_protocol_benchmarks_a_pretraining_action() -> None:
    """Every bundled protocol that starts from the built-in weights evaluates synthetic classes below
    the first pretraining action only."""
    users = 0
    for name, path in bundled_protocols().items():
        if BUILTIN not in path.read_text():
            continue
        for profile in (None, "synthetic"):
            try:
                protocol = load_protocol(path, profile=profile)
            except RobenchError:  # a protocol without that profile, or real data that is not here
                continue
            for variant in protocol.variants.values():
                for entry in variant.defenses.values():
                    rgb = entry.model.get("rgb")
                    if rgb is None or rgb.params.get("checkpoint") != BUILTIN:
                        continue
                    users += 1
                    assert variant.dataset.type == "synthetic", name
                    assert int(variant.dataset.params["classes"]) <= FIRST_PRETRAIN_ACTION, name
    assert users >= 3  # quickstart, synthetic/units and the paper's synthetic profile


def test_pose_targets_are_the_pretraining_actions_projected_into_the_frame() -> None:
    cfg = PretrainConfig(clips_per_action=4, frames=8, resolution=32)
    clips = pose_clips(cfg, "train")
    assert len(clips.action) == cfg.actions * 4
    assert set(clips.action.tolist()) == set(range(cfg.actions))
    assert clips.rgb.shape == (len(clips.action), 3, 8, 32, 32) and clips.rgb.dtype == torch.uint8
    # joints of present persons are in the frame (fractions of it, centred on 0); absent persons masked
    inside = clips.pose.abs() <= 0.5
    present = clips.present.bool()
    assert inside[present].float().mean() > 0.95
    two_person = clips.present[:, 1] == 1
    assert two_person.any() and (~two_person).any()


def test_a_tiny_pretraining_run_writes_loadable_weights_and_its_record(tmp_path: Path) -> None:
    cfg = PretrainConfig(clips_per_action=3, epochs=1, batch_size=6, width=0.0625)
    out = tmp_path / "w.pt"
    record = pretrain(cfg, out, torch.device("cpu"))
    assert record["epochs_done"] == 1 and record["config"]["width"] == 0.0625
    assert json.loads(out.with_suffix(".json").read_text())["held_out"]["clips"] == record["held_out"]["clips"]
    I3D(**{**SYNTHETIC_I3D, "width": 0.0625}, checkpoint=str(out))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no batch"):
        pretrain(PretrainConfig(clips_per_action=1, batch_size=64), tmp_path / "x.pt", torch.device("cpu"))


def test_pretrained_features_see_bodies_not_rooms() -> None:
    """A linear probe on the frozen built-in features: well above chance on the quickstart's data, at
    chance on the same clips with the bodies removed (backgrounds, lighting and noise only)."""
    cfg = SyntheticConfig(classes=8, train_clips_per_class=24, test_clips_per_class=16, frames_rgb=8,
                          frames_skeleton=16, resolution=32, scenes=17)
    net = I3D(**SYNTHETIC_I3D, checkpoint=BUILTIN).eval()  # type: ignore[arg-type]

    def features(split: str, bodies: bool) -> tuple[torch.Tensor, torch.Tensor]:
        ds = generate_split(cfg, split, draw_bodies=bodies)
        with torch.no_grad():
            feats = torch.cat([net(ds.rgb[i:i + 64].float() / 255)[0] for i in range(0, len(ds.label), 64)])
        return feats.double(), ds.label

    with_bodies = linear_probe(*features("train", True), *features("test", True), cfg.classes)
    without = linear_probe(*features("train", False), *features("test", False), cfg.classes)
    # 128 test clips, chance 1/8: 29 or more right (> 0.22) happens by luck with probability 0.1% (binomial)
    assert without < 0.22, without
    assert with_bodies > 0.5, with_bodies


def test_builtin_prefix_is_documented_in_the_weights_module() -> None:
    import robench.models.weights as mod

    assert BUILTIN_PREFIX + "i3d-synthetic" in (mod.__doc__ or "")
