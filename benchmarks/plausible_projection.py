"""What the plausible-skeleton threat model costs: the projection against the model pass it follows.

Every step of an attack under ``threat.skeleton.plausible`` projects the skeleton onto the limits
(:func:`robench.attacks.plausible.project_plausible`). This script times, on one batch of a
protocol's test clips (default: the quickstart's), the projection of a PGD-like sign step, the
plain L-inf projection, and one forward + backward pass of the protocol's two-stream model to the
input (what a gradient attack step costs anyway), and prints their ratios, measured in the same run.

    python benchmarks/plausible_projection.py [--protocol quickstart] [--batch 32] [--repeats 5]
"""

from __future__ import annotations

import argparse

import torch

from timing import recorded, seconds_per_call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="quickstart")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import robench
    from robench.attacks.plausible import SkeletonLimits, project_plausible, violations

    data = robench.dataset(protocol=args.protocol, split="test")
    items = [data[i] for i in range(min(args.batch, len(data)))]
    x = {m: torch.stack([it[0][m] for it in items]) for m in ("rgb", "skeleton")}
    labels = torch.tensor([it[1] for it in items])
    model = robench.build_model(protocol=args.protocol, defense="none").eval()
    eps, limits, cpu = 8 / 255, SkeletonLimits(), torch.device("cpu")
    g = torch.Generator().manual_seed(0)
    step = x["skeleton"] + eps * torch.sign(torch.randn(x["skeleton"].shape, generator=g))

    def model_pass() -> None:
        inputs = {m: t.clone().requires_grad_(True) for m, t in x.items()}
        torch.nn.functional.cross_entropy(model(inputs), labels).backward()

    def linf() -> None:
        (x["skeleton"] + (step - x["skeleton"]).clamp(-eps, eps))

    def plausible() -> None:
        project_plausible(step, x["skeleton"], limits)

    out = project_plausible(step, x["skeleton"], limits)
    assert not any(bool(v.any()) for v in violations(out, x["skeleton"], limits).values())
    with recorded("plausible_projection"):
        t_model = seconds_per_call(model_pass, cpu, args.repeats)
        t_linf = seconds_per_call(linf, cpu, args.repeats)
        t_plaus = seconds_per_call(plausible, cpu, args.repeats)
        shape = "x".join(str(s) for s in x["skeleton"].shape)
        print(f"{len(labels)} clips of {args.protocol} (skeleton {shape}), defaults {limits.as_params()}\n")
        print(f"{'step':<42}{'ms / batch':>12}{'x model pass':>14}")
        for name, t in (("forward + backward to the input (model)", t_model), ("L-inf projection", t_linf),
                        ("plausible-skeleton projection", t_plaus)):
            print(f"{name:<42}{1000 * t:>12.1f}{t / t_model:>14.3f}")
        kept = float((out - x["skeleton"]).abs().sum() / (step - x["skeleton"]).abs().sum())
        print(f"\na random sign step of eps keeps {100 * kept:.2f}% of its L1 size under the limits")


if __name__ == "__main__":
    main()
