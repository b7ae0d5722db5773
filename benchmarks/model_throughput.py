"""Throughput of the two-stream model: training steps and attack steps, in clips per second.

An attack step (one forward and one backward to the input, model in eval mode) is the unit of
cost of every gradient attack: PGD-k costs about k of them per clip, PGD-k adversarial training
about k + 1 training-step equivalents. Sizes: the quickstart's, and the paper's full size
(I3D at 64 x 224 x 224, HCN at T = 32) at a small batch.

    python benchmarks/model_throughput.py [--device auto] [--sizes quickstart,paper] [--batch 16]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from robench.models import HCN, I3D, TwoStreamModel
from robench.runtime import device_name, select_device
from timing import seconds_per_call

SIZES = {
    # name: (i3d width, frames, resolution, hcn width, skeleton frames, window)
    "quickstart": (0.125, 8, 32, 0.5, 16, 16),
    "paper": (1.0, 64, 224, 1.0, 32, 32),
}


def bench(size: str, device: torch.device, batch: int, repeats: int) -> None:
    rw, frames, res, sw, sframes, window = SIZES[size]
    model = TwoStreamModel({"rgb": I3D(width=rw, frames=frames, resolution=res),
                            "skeleton": HCN(width=sw, frames=sframes, window=window)}, 60).to(device)
    x = {"rgb": torch.rand(batch, 3, frames, res, res, device=device),
         "skeleton": torch.randn(batch, 3, sframes, 25, 2, device=device)}
    y = torch.randint(0, 60, (batch,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def train_step() -> None:
        model.train()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def attack_step() -> None:
        model.eval()
        leaves = {m: t.clone().requires_grad_(True) for m, t in x.items()}
        torch.autograd.grad(F.cross_entropy(model(leaves), y, reduction="sum"), list(leaves.values()))

    for name, fn in (("train step", train_step), ("attack step", attack_step)):
        dt = seconds_per_call(fn, device, repeats)
        print(f"{size:10s} {name:11s} batch {batch:3d}: {1000 * dt:8.1f} ms/batch  {batch / dt:8.1f} clips/s")
    params = sum(p.numel() for p in model.parameters())
    print(f"{size:10s} parameters: {params / 1e6:.2f} M")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--sizes", default="quickstart,paper")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = select_device(args.device)
    print(f"device {device_name(device)}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    for size in args.sizes.split(","):
        batch = args.batch if size != "paper" or device.type != "cpu" else min(args.batch, 2)
        bench(size, device, batch, args.repeats if size != "paper" or device.type != "cpu" else 1)


if __name__ == "__main__":
    main()
