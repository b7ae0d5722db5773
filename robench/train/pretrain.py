"""Pretrain the synthetic I3D on actions no benchmark uses: robench's stand-in for Kinetics pretraining.

The paper's I3D starts from ImageNet/Kinetics weights (AMR paper, Sec. 4.1); trained from scratch on the
quickstart's 640 clips for three epochs, the same network learns almost nothing from RGB (14% on 8
classes). This module makes the committed weights ``builtin:i3d-synthetic`` (see
:mod:`robench.models.weights`) in the same spirit as Kinetics: other actions, other people, other rooms.

What it trains on:
- the synthetic actions from :data:`FIRST_PRETRAIN_ACTION` on (twist torso, arm circles, handshake,
  push, hug, walk towards each other); every bundled protocol uses synthetic classes 0-9 only, so the
  pretraining never sees a benchmark class;
- a dataset seed (:attr:`PretrainConfig.seed`) of its own: other performers and rooms than any bundled
  protocol (seed 0), and a new room for every clip;
- two targets: the action (cross-entropy on the pooled feature) and, per RGB frame, the 2-D image
  position of every joint of every person (squared error in units of the frame size, from a linear
  layer on ``Mixed_5c``'s map). Pose is what a clip's class lives in, so the second target teaches the
  stream where the limbs are; both heads are dropped, only the backbone's weights are written.

Run it (about 4 minutes on one H100, hours on 2 CPU cores; bits differ between devices)::

    python -m robench.train.pretrain --out robench/models/weights/i3d-synthetic.pt

It writes the weights and, beside them, a JSON record of the configuration, the losses per epoch, the
held-out accuracy and pose error, the device, torch version and git commit.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robench.data.synthetic.actions import ACTIONS
from robench.data.synthetic.generate import SyntheticConfig, generate_split
from robench.data.synthetic.render import project
from robench.files import atomic_file, atomic_write
from robench.models.i3d import I3D
from robench.runtime import configure, device_name, git_commit, select_device

#: the first synthetic action used for pretraining; bundled protocols use classes below it
FIRST_PRETRAIN_ACTION = 10
#: the I3D stage whose map the pose head reads
POSE_STAGE = "Mixed_5c"
#: skeleton joints per person
JOINTS = 25


@dataclass(frozen=True)
class PretrainConfig:
    """What the pretrained weights depend on (all recorded beside them).

    Attributes:
        clips_per_action: training clips of each pretraining action (held-out: a tenth of it).
        epochs: passes over the training clips.
        batch_size: clips per optimiser step.
        lr: Adam's peak learning rate (one-cycle schedule, 5% warm-up, cosine decay).
        pose_weight: weight of the pose loss (frame-size units squared) against the cross-entropy.
        seed: dataset and initialisation seed (bundled protocols use 0).
        frames, resolution: clip size in frames and pixels (the synthetic profiles' 8 x 32).
        style_noise: per-clip posture noise in degrees (the dataset's default is 4).
        width, stem_stride, stem_temporal_stride, stem_kernel: the I3D the weights are for.
    """

    clips_per_action: int = 4000
    epochs: int = 12
    batch_size: int = 64
    lr: float = 1e-3
    pose_weight: float = 10.0
    seed: int = 777
    frames: int = 8
    resolution: int = 32
    style_noise: float = 8.0
    width: float = 0.125
    stem_stride: int = 1
    stem_temporal_stride: int = 1
    stem_kernel: int = 3

    @property
    def actions(self) -> int:
        return len(ACTIONS) - FIRST_PRETRAIN_ACTION

    def backbone(self) -> I3D:
        return I3D(width=self.width, frames=self.frames, resolution=self.resolution, dropout=0.0,
                   bn_momentum=0.1, stem_stride=self.stem_stride, stem_temporal_stride=self.stem_temporal_stride,
                   stem_kernel=self.stem_kernel)


@dataclass
class PoseClips:
    """Pretraining clips: RGB ``uint8 [N, 3, T, H, W]``, action ``[N]`` (0-based among the pretraining
    actions), joint image positions ``[N, 2, T, 25, 2]`` (fractions of the frame, centred on 0) and
    which of the two persons is present ``[N, 2]`` (0/1)."""

    rgb: Tensor
    action: Tensor
    pose: Tensor
    present: Tensor


def pose_clips(cfg: PretrainConfig, split: str) -> PoseClips:
    """Generate a split of the pretraining actions with per-frame 2-D joint targets.

    The skeleton is sampled at the RGB frames' times (``frames_skeleton = frames``) and projected with
    each clip's camera, so a target is where the joint is drawn in that frame.
    """
    per_action = cfg.clips_per_action if split == "train" else max(1, cfg.clips_per_action // 10)
    wanted = cfg.actions * per_action
    # the generator draws classes x clips_per_class clips; the labels hook makes them all pretraining actions
    per_class = -(-wanted // len(ACTIONS))
    data_cfg = SyntheticConfig(classes=len(ACTIONS), train_clips_per_class=per_class, test_clips_per_class=per_class,
                               frames_rgb=cfg.frames, frames_skeleton=cfg.frames, resolution=cfg.resolution,
                               seed=cfg.seed, style_noise=cfg.style_noise, scenes=0)
    labels = FIRST_PRETRAIN_ACTION + torch.arange(len(ACTIONS) * per_class) % cfg.actions
    ds = generate_split(data_cfg, split, labels=labels)
    points = ds.skeleton[:wanted].permute(0, 4, 2, 3, 1)  # [N, 2, T, 25, 3] camera coordinates, metres
    pose = project(points, ds.meta["camera"][:wanted]) / cfg.resolution - 0.5
    present = (ds.meta["persons"][:wanted, None] > torch.arange(2)[None]).float()
    return PoseClips(ds.rgb[:wanted], ds.labels[:wanted] - FIRST_PRETRAIN_ACTION, pose, present)


class PretrainHeads(nn.Module):
    """The two throw-away heads: action logits from the pooled feature, joints from ``Mixed_5c``'s map."""

    def __init__(self, backbone: I3D, cfg: PretrainConfig) -> None:
        super().__init__()
        with torch.no_grad():
            _, rec = backbone(backbone.example_input(1), record=[POSE_STAGE])
        self.frames = cfg.frames
        self.action = nn.Linear(backbone.feature_dim, cfg.actions)
        self.pose = nn.Linear(rec[POSE_STAGE][0].numel(), 2 * cfg.frames * JOINTS * 2)

    def forward(self, feature: Tensor, stage_map: Tensor) -> tuple[Tensor, Tensor]:
        return self.action(feature), self.pose(stage_map.flatten(1)).view(-1, 2, self.frames, JOINTS, 2)


def losses(backbone: I3D, heads: PretrainHeads, clips: PoseClips, idx: Tensor,
           device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """(cross-entropy, pose mean squared error over present persons, number of correct actions)."""
    x = clips.rgb[idx].to(device).float().div_(255.0)
    feature, rec = backbone(x, record=[POSE_STAGE])
    logits, pose = heads(feature, rec[POSE_STAGE])
    target = clips.action[idx].to(device)
    mask = clips.present[idx].to(device).view(-1, 2, 1, 1, 1)
    err = ((pose - clips.pose[idx].to(device)) ** 2 * mask).sum() / (mask.sum() * pose[0, 0].numel())
    return F.cross_entropy(logits, target), err, (logits.argmax(1) == target).sum()


def save_weights(backbone: I3D, out: Path) -> None:
    """Write the backbone's state dict to ``out`` atomically (a temporary file, fsynced, then a rename)."""
    with atomic_file(out) as tmp:
        torch.save({k: v.detach().cpu() for k, v in backbone.state_dict().items()}, tmp)


def pretrain(cfg: PretrainConfig, out: Path, device: torch.device, max_minutes: float | None = None) -> dict:
    """Train, evaluate on held-out clips, write ``out`` (backbone weights) and ``out.json``; return the record."""
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    train, test = pose_clips(cfg, "train"), pose_clips(cfg, "test")
    data_s = time.perf_counter() - t0
    backbone = cfg.backbone()
    heads = PretrainHeads(backbone, cfg)
    backbone.to(device)
    heads.to(device)
    params = list(backbone.parameters()) + list(heads.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr)
    per_epoch = len(train.action) // cfg.batch_size
    if per_epoch == 0:
        raise ValueError(f"{len(train.action)} training clips make no batch of {cfg.batch_size}; "
                         "raise clips_per_action or lower batch_size")
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.epochs * per_epoch, pct_start=0.05)
    gen = torch.Generator().manual_seed(cfg.seed)
    history = []
    for epoch in range(cfg.epochs):
        backbone.train()
        heads.train()
        perm = torch.randperm(len(train.action), generator=gen)
        sums = torch.zeros(2, device=device)
        for i in range(per_epoch):
            ce, pose, _ = losses(backbone, heads, train, perm[i * cfg.batch_size:(i + 1) * cfg.batch_size], device)
            opt.zero_grad(set_to_none=True)
            (ce + cfg.pose_weight * pose).backward()
            opt.step()
            sched.step()
            sums += torch.stack([ce.detach(), pose.detach()])
        ce_mean, pose_mean = (sums / per_epoch).tolist()
        history.append({"epoch": epoch + 1, "cross_entropy": ce_mean,
                        "pose_rmse_px": math.sqrt(pose_mean) * cfg.resolution,
                        "seconds": time.perf_counter() - t0})
        print(json.dumps(history[-1]), flush=True)
        save_weights(backbone, out)  # every epoch: a run stopped from outside still leaves weights
        if max_minutes is not None and time.perf_counter() - t0 > 60 * max_minutes:
            break
    backbone.eval()
    heads.eval()
    correct, err, n = 0, 0.0, len(test.action)
    with torch.no_grad():
        for i in range(0, n, cfg.batch_size):
            idx = torch.arange(i, min(i + cfg.batch_size, n))
            _, pose, ok = losses(backbone, heads, test, idx, device)
            correct += int(ok)
            err += float(pose) * len(idx)
    record = {
        "config": asdict(cfg),
        "actions": [a.name for a in ACTIONS[FIRST_PRETRAIN_ACTION:]],
        "epochs_done": len(history),
        "history": history,
        "held_out": {"clips": n, "action_accuracy": correct / n,
                     "pose_rmse_px": math.sqrt(err / n) * cfg.resolution},
        "data_seconds": data_s,
        "seconds": time.perf_counter() - t0,
        "device": device_name(device),
        "torch": torch.__version__,
        "git_commit": git_commit(),
    }
    save_weights(backbone, out)
    atomic_write(out.with_suffix(".json"), json.dumps(record, indent=2) + "\n")
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="weights file to write (a .json record goes beside)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: the best available)")
    parser.add_argument("--max-minutes", type=float, default=None, help="stop after the epoch that passes this")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a PretrainConfig field, e.g. --set epochs=4")
    args = parser.parse_args(argv)
    fields = {k: type(v) for k, v in asdict(PretrainConfig()).items()}
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in fields:
            parser.error(f"--set {item}: unknown field {key!r}; allowed: {', '.join(fields)}")
        overrides[key] = fields[key](value)
    device = select_device(args.device)
    configure(device, tf32=True)
    record = pretrain(PretrainConfig(**overrides), args.out, device, args.max_minutes)
    print(json.dumps(record["held_out"]))


if __name__ == "__main__":
    main()
