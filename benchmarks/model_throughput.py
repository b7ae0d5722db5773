"""Throughput of the two-stream model: training steps and attack steps, in clips per second.

An attack step (one forward and one backward to the input, model in eval mode) is the unit of
cost of every gradient attack: PGD-k costs about k of them per clip, PGD-k adversarial training
about k + 1 training-step equivalents. Sizes: the quickstart's, and the paper's full size
(I3D at 64 x 224 x 224, HCN at T = 32) at a small batch.

Each size is measured in both memory layouts of the RGB stream (contiguous and channels-last 3D),
one after the other in the same run, and the ratio is printed. ``--amp`` adds both layouts again
under bfloat16 autocast (robench's ``--amp on``; the default on CUDA) and prints its ratio to fp32.

    python benchmarks/model_throughput.py [--device auto] [--sizes quickstart,paper] [--batch 16] [--amp]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from robench.models import HCN, I3D, TwoStreamModel
from robench.runtime import RuntimeOptions, device_name, select_device
from timing import recorded, seconds_per_call

SIZES = {
    # name: (i3d width, frames, resolution, hcn width, skeleton frames, window, i3d stem overrides)
    "quickstart": (0.125, 8, 32, 0.5, 16, 16, {"stem_stride": 1, "stem_temporal_stride": 1, "stem_kernel": 3}),
    "quickstart-reference-stem": (0.125, 8, 32, 0.5, 16, 16, {}),
    "paper": (1.0, 64, 224, 1.0, 32, 32, {}),
}


def bench(size: str, device: torch.device, batch: int, repeats: int, channels_last: bool, amp: bool = False) -> float:
    """Print and return the seconds per training step of one size in one memory layout."""
    rw, frames, res, sw, sframes, window, stem = SIZES[size]
    model = TwoStreamModel({"rgb": I3D(width=rw, frames=frames, resolution=res, **stem),
                            "skeleton": HCN(width=sw, frames=sframes, window=window)}, 60).to(device)
    options = RuntimeOptions(channels_last=channels_last, amp=amp)
    options.prepare_model(model)
    x = {"rgb": torch.rand(batch, 3, frames, res, res, device=device),
         "skeleton": torch.randn(batch, 3, sframes, 25, 2, device=device)}
    y = torch.randint(0, 60, (batch,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def train_step() -> None:
        model.train()
        with options.autocast(device):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def attack_step() -> None:
        model.eval()
        leaves = {m: t.clone().requires_grad_(True) for m, t in x.items()}
        with options.autocast(device):
            logits = model(leaves).float()
        torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), list(leaves.values()))

    layout = ("channels-last" if channels_last else "contiguous") + (" bf16" if amp else "")
    times = {}
    for name, fn in (("train step", train_step), ("attack step", attack_step)):
        dt = times[name] = seconds_per_call(fn, device, repeats)
        print(f"{size:26s} {layout:13s} {name:11s} batch {batch:3d}: {1000 * dt:8.1f} ms/batch "
              f"{batch / dt:8.1f} clips/s")
    print(f"{size:26s} parameters: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M")
    return times["train step"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--sizes", default="quickstart,paper")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--amp", action="store_true", help="also measure bfloat16 autocast")
    args = parser.parse_args()
    device = select_device(args.device)
    print(f"device {device_name(device)}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    for size in args.sizes.split(","):
        batch = args.batch if size != "paper" or device.type != "cpu" else min(args.batch, 2)
        repeats = args.repeats if size != "paper" or device.type != "cpu" else 1
        contiguous = bench(size, device, batch, repeats, channels_last=False)
        last = bench(size, device, batch, repeats, channels_last=True)
        print(f"{size:26s} channels-last speed-up of a training step: {contiguous / last:.2f}x")
        if args.amp:
            amp_contiguous = bench(size, device, batch, repeats, channels_last=False, amp=True)
            amp_last = bench(size, device, batch, repeats, channels_last=True, amp=True)
            print(f"{size:26s} bf16 speed-up of a training step over fp32: {contiguous / amp_contiguous:.2f}x "
                  f"(contiguous), {last / amp_last:.2f}x (channels-last)")


if __name__ == "__main__":
    with recorded("model_throughput"):
        main()
