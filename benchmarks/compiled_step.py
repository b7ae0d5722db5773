"""Eager against compiled: a PGD-10 adversarial-training step of the two-stream model, each variant against
the eager fp32 step measured in the same run.

A PGD-k adversarial-training step is k attack steps (forward, loss, gradient to the input, sign step,
projection onto the eps-ball and the valid range; model in eval mode) and one training step on the
adversarial clips. Variants:

- ``eager``: the step as robench runs it today (the baseline; channels-last 3D on the RGB stream);
- ``eager bf16``: the same under bfloat16 autocast (robench's ``--amp on``);
- ``compiled model``: ``torch.compile`` of the model (inductor), the attack and training loops eager;
- ``compiled attack step``: ``torch.compile`` of the whole attack step (forward, loss, input gradient by
  ``torch.func.grad``, sign step and projection in one graph) besides the compiled model for training;
- on CUDA also ``reduce-overhead`` (CUDA graphs for the fixed-shape inner loop) of the compiled attack step.

Each line gives milliseconds per step (median of ``--repeats`` after ``--warmup`` untimed steps, so the
compilation is not counted: its cost is printed apart), the speed-up over eager fp32, and the largest
difference of the adversarial RGB clip from the eager one after the same PGD-10 (0 = bit-identical;
one RGB grey level is 0.0039). A variant the installed torch cannot run prints its error instead.

    python benchmarks/compiled_step.py [--device auto] [--size quickstart] [--batch 16] [--steps 10]
"""

from __future__ import annotations

import argparse
import statistics
import time
import traceback
from collections.abc import Callable

import torch
import torch.nn.functional as F
from profile_step import EPS, SIZES, build, project

from robench.runtime import RuntimeOptions, device_name, select_device
from timing import recorded

Inputs = dict[str, torch.Tensor]
AttackStep = Callable[[Inputs, Inputs, torch.Tensor], Inputs]


def eager_step(model: torch.nn.Module, options: RuntimeOptions, device: torch.device) -> AttackStep:
    def step(adv: Inputs, x: Inputs, y: torch.Tensor) -> Inputs:
        leaves = {m: t.detach().requires_grad_(True) for m, t in adv.items()}
        with torch.enable_grad(), options.autocast(device):
            loss = F.cross_entropy(model(leaves).float(), y, reduction="sum")
        grads = torch.autograd.grad(loss, list(leaves.values()))
        with torch.no_grad():
            return project(adv, dict(zip(leaves, grads)), x)
    return step


def functional_step(model: torch.nn.Module, options: RuntimeOptions, device: torch.device) -> AttackStep:
    """The whole attack step as one function of tensors (``torch.func.grad``), which ``torch.compile`` can trace."""
    def loss_of(adv: Inputs, y: torch.Tensor) -> torch.Tensor:
        with options.autocast(device):
            return F.cross_entropy(model(adv).float(), y, reduction="sum")

    grad_of = torch.func.grad(loss_of)

    def step(adv: Inputs, x: Inputs, y: torch.Tensor) -> Inputs:
        return project(adv, grad_of(adv, y), x)
    return step


def at_step(model: torch.nn.Module, train_model: torch.nn.Module, attack: AttackStep, opt: torch.optim.Optimizer,
            x: Inputs, y: torch.Tensor, steps: int, options: RuntimeOptions, device: torch.device) -> Inputs:
    """PGD-``steps`` from a seeded random start (model in eval mode), then a training step; returns the clips."""
    g = torch.Generator(device="cpu").manual_seed(0)
    adv = {m: (t + (torch.rand(t.shape, generator=g) * 2 - 1).to(device) * EPS) for m, t in x.items()}
    adv["rgb"] = adv["rgb"].clamp(0, 1)
    model.eval()
    for _ in range(steps):
        adv = {m: t.detach() for m, t in attack(adv, x, y).items()}
    train_model.train()
    with options.autocast(device):
        loss = F.cross_entropy(train_model(adv).float(), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    train_model.eval()
    return adv


def measure(name: str, make: Callable[[torch.nn.Module], tuple[torch.nn.Module, AttackStep]], args: argparse.Namespace,
            options: RuntimeOptions, device: torch.device, reference: Inputs | None) -> tuple[float, Inputs] | None:
    """Print and return (ms per step, the first step's adversarial clips) of one variant; None if it fails."""
    torch.manual_seed(0)
    model = build(args.size, "at", device, options)
    _, frames, res, _, sframes, _ = SIZES[args.size]
    g = torch.Generator().manual_seed(1)
    x = {"rgb": torch.randint(0, 256, (args.batch, 3, frames, res, res), generator=g).float().div(255).to(device),
         "skeleton": torch.randn(args.batch, 3, sframes, 25, 2, generator=g).to(device)}
    y = torch.randint(0, 60, (args.batch,), generator=g).to(device)
    try:
        train_model, attack = make(model)
        opt = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.0)  # lr 0: the same weights every step
        t0 = time.perf_counter()
        first = at_step(model, train_model, attack, opt, x, y, args.steps, options, device)
        sync(device)
        warm = time.perf_counter() - t0
        for _ in range(args.warmup - 1):
            at_step(model, train_model, attack, opt, x, y, args.steps, options, device)
        times = []
        for _ in range(args.repeats):
            sync(device)
            t0 = time.perf_counter()
            at_step(model, train_model, attack, opt, x, y, args.steps, options, device)
            sync(device)
            times.append(time.perf_counter() - t0)
    except Exception as exc:  # a variant this torch or device cannot run is a finding, not a crash
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        print(f"{name:28s} failed: {last[:160]}")
        return None
    ms = 1000 * statistics.median(times)
    diff = "" if reference is None else \
        f"  max |adv - eager| RGB {float((first['rgb'].float() - reference['rgb'].float()).abs().max()):.2e}"
    print(f"{name:28s} {ms:9.1f} ms per step   first step {warm:6.1f} s{diff}")
    return ms, first


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", default="quickstart", choices=sorted(SIZES))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10, help="PGD steps per adversarial-training step")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation happens here)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip", default="", help="comma-separated variants to leave out (e.g. 'compiled model')")
    return parser.parse_args()


def main(args: argparse.Namespace) -> None:
    device = select_device(args.device)
    fp32 = RuntimeOptions(channels_last=True)
    bf16 = RuntimeOptions(channels_last=True, amp=True)
    print(f"device {device_name(device)}, torch {torch.__version__}, {torch.get_num_threads()} threads; size "
          f"{args.size}, batch {args.batch}, PGD-{args.steps} adversarial-training step, channels-last 3D")

    def eager(options: RuntimeOptions) -> Callable[[torch.nn.Module], tuple[torch.nn.Module, AttackStep]]:
        return lambda model: (model, eager_step(model, options, device))

    def compiled_model(options: RuntimeOptions) -> Callable[[torch.nn.Module], tuple[torch.nn.Module, AttackStep]]:
        def make(model: torch.nn.Module) -> tuple[torch.nn.Module, AttackStep]:
            fast = torch.compile(model)
            return fast, eager_step(fast, options, device)
        return make

    def compiled_attack(options: RuntimeOptions, mode: str | None = None,
                        ) -> Callable[[torch.nn.Module], tuple[torch.nn.Module, AttackStep]]:
        def make(model: torch.nn.Module) -> tuple[torch.nn.Module, AttackStep]:
            return torch.compile(model), torch.compile(functional_step(model, options, device), mode=mode)
        return make

    variants = [("eager", eager(fp32), fp32), ("eager bf16", eager(bf16), bf16),
                ("compiled model", compiled_model(fp32), fp32), ("compiled attack step", compiled_attack(fp32), fp32),
                ("compiled attack step bf16", compiled_attack(bf16), bf16)]
    if device.type == "cuda":
        variants.append(("reduce-overhead (graphs)", compiled_attack(fp32, "reduce-overhead"), fp32))
    skipped = {v.strip() for v in args.skip.split(",") if v.strip()}
    results: dict[str, float] = {}
    reference: Inputs | None = None
    for name, make, options in variants:
        if name in skipped:
            continue
        torch._dynamo.reset()
        got = measure(name, make, args, options, device, reference)
        if got is not None:
            results[name] = got[0]
            if reference is None:
                reference = got[1]
    base = results.get("eager")
    if base:
        print("\nspeed-up over eager fp32 (same run): " +
              ", ".join(f"{name} {base / ms:.2f}x" for name, ms in results.items() if name != "eager"))


if __name__ == "__main__":
    arguments = parse()
    with recorded(f"compiled_step-{arguments.size}"):
        main(arguments)
