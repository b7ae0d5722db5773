"""Where a training step goes: data loading, host-to-device copies, the attack's forward and backward
passes to the input, its projection, the training forward and backward, and the optimizer, for the
undefended, adversarially trained (PGD-10) and AMR models, from ``torch.profiler``.

A PGD-k adversarial-training step is k attack steps (forward, backward to the input, sign step and
projection onto the ball, model in eval mode) and one training step on the adversarial clips (forward,
backward to the weights, optimizer). This script runs that step the way robench's trainer does, with
each phase under a ``record_function`` label, and prints each phase's share of the step: CPU time on a
CPU, CUDA time on a GPU (the GPU's own clock: what bounds a GPU step). Sizes as in
``model_throughput.py``: ``quickstart`` (CPU-sized), ``mid`` (the paper's backbones at 16 x 112 x 112:
what fits a CPU run of a few minutes) and ``paper`` (I3D at 64 x 224 x 224, HCN at T = 32: for a GPU).

    python benchmarks/profile_step.py [--device auto] [--size mid] [--batch 4] [--steps 10] [--amp]
                                      [--channels-last] [--defenses none,at,amr] [--trace DIR]

``--trace DIR`` also writes a Chrome trace per defense (open it in chrome://tracing or Perfetto).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile, record_function
from torch.utils.data import DataLoader, TensorDataset

from robench.defenses.amr import AMR
from robench.models import HCN, I3D, TwoStreamModel
from robench.runtime import RuntimeOptions, device_name, select_device
from timing import recorded

SIZES = {  # name: (i3d width, frames, resolution, hcn width, skeleton frames, i3d stem overrides)
    "quickstart": (0.125, 8, 32, 0.5, 16, {"stem_stride": 1, "stem_temporal_stride": 1, "stem_kernel": 3}),
    "mid": (1.0, 16, 112, 1.0, 32, {}),
    "paper": (1.0, 64, 224, 1.0, 32, {}),
}
PHASES = ("data", "host-to-device", "attack forward", "attack backward", "attack projection", "train forward",
          "train backward", "optimizer")
EPS, STEP = 8 / 255, 2 / 255


def project(adv: dict[str, torch.Tensor], grads: dict[str, torch.Tensor],
            x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One signed-gradient step of size STEP, back into the L-inf ball of radius EPS around ``x`` and, for RGB,
    into [0, 1] (call it without gradients)."""
    out = {}
    for m, t in adv.items():
        moved = x[m] + (t + STEP * grads[m].sign() - x[m]).clamp(-EPS, EPS)
        out[m] = moved.clamp(0, 1) if m == "rgb" else moved
    return out


def build(size: str, defense: str, device: torch.device, options: RuntimeOptions) -> TwoStreamModel:
    rw, frames, res, sw, sframes, stem = SIZES[size]
    model = TwoStreamModel({"rgb": I3D(width=rw, frames=frames, resolution=res, **stem),
                            "skeleton": HCN(width=sw, frames=sframes, window=sframes)}, 60)
    if defense == "amr":
        AMR(count=3).prepare(model)
    model.to(device)
    options.prepare_model(model)
    return model


def batches(size: str, batch: int, device: torch.device) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
    """Clips from a DataLoader as the trainer gets them (uint8 RGB decoded to [0, 1] on the device)."""
    _, frames, res, _, sframes, _ = SIZES[size]
    n = 4 * batch
    data = TensorDataset(torch.randint(0, 256, (n, 3, frames, res, res), dtype=torch.uint8),
                         torch.randn(n, 3, sframes, 25, 2), torch.randint(0, 60, (n,)))
    loader = DataLoader(data, batch_size=batch, shuffle=True, num_workers=2, pin_memory=device.type == "cuda",
                        persistent_workers=True)
    while True:
        it = iter(loader)
        while True:
            with record_function("data"):
                item = next(it, None)
            if item is None:
                break
            rgb, skel, y = item
            with record_function("host-to-device"):
                x = {"rgb": rgb.to(device, non_blocking=True).float().div_(255),
                     "skeleton": skel.to(device, non_blocking=True)}
                y = y.to(device, non_blocking=True)
            yield x, y


def step(model: TwoStreamModel, opt: torch.optim.Optimizer, x: dict[str, torch.Tensor], y: torch.Tensor,
         defense: str, steps: int, options: RuntimeOptions, device: torch.device) -> None:
    """One training step: PGD-``steps`` on both inputs first for ``at`` and ``amr``."""
    if defense != "none":
        model.eval()
        adv = {m: (t + torch.empty_like(t).uniform_(-EPS, EPS)).detach() for m, t in x.items()}
        adv["rgb"].clamp_(0, 1)
        for _ in range(steps):
            leaves = {m: t.requires_grad_(True) for m, t in adv.items()}
            with record_function("attack forward"), options.autocast(device):
                loss = F.cross_entropy(model(leaves).float(), y)
            with record_function("attack backward"):
                grads = torch.autograd.grad(loss, list(leaves.values()))
            with record_function("attack projection"), torch.no_grad():
                adv = project(leaves, dict(zip(leaves, grads)), x)
        x = adv
    model.train()
    with record_function("train forward"), options.autocast(device):
        loss = F.cross_entropy(model(x).float(), y)
    with record_function("train backward"):
        opt.zero_grad(set_to_none=True)
        loss.backward()
    with record_function("optimizer"):
        opt.step()


def run(size: str, defense: str, device: torch.device, batch: int, steps: int, repeats: int,
        options: RuntimeOptions, trace: Path | None) -> None:
    model = build(size, defense, device, options)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    source = batches(size, batch, device)
    step(model, opt, *next(source), defense, steps, options, device)  # warm-up (allocations, autotuning)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(repeats):
            with record_function("step"):
                step(model, opt, *next(source), defense, steps, options, device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    if trace is not None:
        trace.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(trace / f"{size}-{defense}.json"))
    events = {e.key: e for e in prof.key_averages()}
    gpu = device.type == "cuda"

    def ms(name: str) -> float:
        e = events.get(name)
        if e is None:
            return 0.0
        total = e.device_time_total if gpu else e.cpu_time_total
        return total / 1000 / repeats

    whole = ms("step")
    clock = "CUDA" if gpu else "CPU"
    print(f"\n{size} / {defense}: {whole:.1f} ms per step ({clock} time, batch {batch}, "
          f"{steps if defense != 'none' else 0} attack steps, mean of {repeats})")
    for phase in PHASES:
        t = ms(phase)
        if t:
            print(f"  {phase:<20}{t:>10.1f} ms {100 * t / whole:>6.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", default="mid", choices=sorted(SIZES))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10, help="PGD steps of the adversarial-training attack")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--defenses", default="none,at,amr")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast")
    parser.add_argument("--channels-last", action="store_true", help="channels-last 3D for the RGB stream")
    parser.add_argument("--trace", type=Path, help="write a Chrome trace per defense into this folder")
    args = parser.parse_args()
    device = select_device(args.device)
    options = RuntimeOptions(channels_last=args.channels_last, amp=args.amp)
    print(f"device {device_name(device)}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{'bf16 autocast' if args.amp else 'fp32'}, {'channels-last' if args.channels_last else 'contiguous'}")
    for defense in args.defenses.split(","):
        run(args.size, defense, device, args.batch, args.steps, args.repeats, options, args.trace)


if __name__ == "__main__":
    with recorded("profile_step"):
        main()
