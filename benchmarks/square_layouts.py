"""Which window layout makes Square strongest on video? The layouts side by side on the same clips.

Square (Andriushchenko et al., ECCV 2020) was designed for images: each query sets a random square
window of the image to +-eps, one sign per colour channel. A video clip [C, T, H, W] admits several
carry-overs; this script runs each on the same clips, model, budget and query count, RGB only (the
paper's XR), and prints the robust accuracy each leaves (lower = stronger attack) with the clips that
one layout breaks and another does not:

* ``frames`` (robench's default): a square over (H, W), one sign per channel *and frame*; starting
  stripes one sign per channel, frame and column;
* ``cuboids`` (robench 0.1): a cuboid over (T, H, W), one sign per channel; stripes constant over T and H;
* ``reference``: torchattacks' port of the reference implementation, run on the clip's frames stacked
  as channels ([B, C*T, H, W]), when ``torchattacks`` is installed (``pip install torchattacks scipy``;
  not a robench dependency). The reference draws one window position per batch and has no per-clip
  seeds, so it matches ``frames`` in distribution, not clip for clip. As in AutoAttack, its window
  schedule is not rescaled to the query budget.

    python benchmarks/square_layouts.py [--protocol quickstart] [--defense none] [--clips 64]
                                        [--queries 500] [--eps 8/255]

The model is the protocol's row as ``robench run`` trains it (loaded from the default cache, trained
there if missing); the clips are the first ``--clips`` of its evaluation split.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from timing import recorded


def _reference(model: nn.Module, rgb: Tensor, skeleton: Tensor, labels: Tensor, eps: float, queries: int,
               seed: int) -> Tensor | None:
    """torchattacks' Square on the frames stacked as channels; None without torchattacks."""
    try:
        import torchattacks
    except ImportError:
        return None
    b, c, t, h, w = rgb.shape

    class Frames(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return model({"rgb": x.view(-1, c, t, h, w), "skeleton": skeleton[: x.shape[0]]})

    frames = Frames().eval()
    with contextlib.redirect_stdout(io.StringIO()):  # (torchattacks prints its device guess)
        attack = torchattacks.Square(frames, norm="Linf", eps=eps, n_queries=queries, n_restarts=1, p_init=0.8,
                                     loss="margin", resc_schedule=False, seed=seed)
    out = []
    for i in range(b):  # one clip at a time: the skeleton goes with its clip
        x = rgb[i : i + 1].reshape(1, c * t, h, w)

        def one(z: Tensor, i: int = i) -> Tensor:
            return model({"rgb": z.view(-1, c, t, h, w), "skeleton": skeleton[i : i + 1].expand(len(z), -1, -1, -1,
                                                                                                 -1)})

        frames.forward = one  # type: ignore[method-assign]
        out.append(attack(x, labels[i : i + 1]).view(1, c, t, h, w))
    return torch.cat(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="quickstart")
    parser.add_argument("--defense", default="none")
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--eps", default="8/255")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import robench
    from robench.params import parse_number

    eps = parse_number(args.eps)
    model = robench.load_model(protocol=args.protocol, defense=args.defense, progress="quiet")
    data = robench.dataset(protocol=args.protocol, split="test")
    n = min(args.clips, len(data))
    items = [data[i] for i in range(n)]
    inputs = {m: torch.stack([x[m] for x, _ in items]) for m in ("rgb", "skeleton")}
    labels = torch.tensor([y for _, y in items])
    seeds = torch.arange(n, dtype=torch.int64) + 1000 * args.seed
    with torch.no_grad():
        clean = model(inputs).argmax(1) == labels

    def robust(adv_rgb: Tensor) -> Tensor:
        with torch.no_grad():
            return model({"rgb": adv_rgb, "skeleton": inputs["skeleton"]}).argmax(1) == labels

    runs: dict[str, Callable[[], Tensor | None]] = {}
    for layout in ("frames", "cuboids"):
        def run(layout: str = layout) -> Tensor:
            attack = robench.attack("square", "R", eps, queries=args.queries, video_windows=layout)
            return attack(model, inputs, labels, sample_seeds=seeds)["rgb"]
        runs[layout] = run
    runs["reference"] = lambda: _reference(model, inputs["rgb"], inputs["skeleton"], labels, eps, args.queries,
                                           args.seed)

    with recorded("square_layouts"):
        print(f"Square, RGB only (XR), eps {args.eps}, {args.queries} queries, {n} clips of {args.protocol}'s "
              f"'{args.defense}' model; clean accuracy {100 * clean.float().mean():.2f}%\n")
        results: dict[str, Tensor] = {}
        print(f"{'layout':<12}{'robust %':>10}{'seconds':>10}")
        for name, fn in runs.items():
            t0 = time.perf_counter()
            adv = fn()
            if adv is None:
                print(f"{name:<12}{'(torchattacks not installed)':>30}")
                continue
            assert (adv - inputs["rgb"]).abs().max() <= eps + 1e-6 and adv.min() >= 0 and adv.max() <= 1
            results[name] = robust(adv) & clean
            print(f"{name:<12}{100 * results[name].float().mean():>10.2f}{time.perf_counter() - t0:>10.1f}")
        print("\nclips broken by the row's layout and not by the column's:")
        names = list(results)
        print(f"{'':<12}" + "".join(f"{c:>12}" for c in names))
        for a in names:
            print(f"{a:<12}" + "".join(f"{int((~results[a] & results[b]).sum()):>12}" for b in names))


if __name__ == "__main__":
    main()
