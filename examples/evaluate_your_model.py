"""Evaluate your own model on a robench leaderboard track, from Python.

The model is plain PyTorch, written as ``forward(rgb, skeleton)``; ``robench.TwoInputs`` lets robench
call it with its input dict. It is trained here for a few epochs on the track's own training split
(``robench.dataset``: the exact clips, units and label order the track evaluates on), then
``robench.evaluate`` runs the track's attacks on it and returns the record ``robench leaderboard add``
would write.

    python examples/evaluate_your_model.py                 # the synthetic track (a few minutes on a CPU)
    python examples/evaluate_your_model.py --track FILE --epochs 1
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import robench


class TinyTwoStream(nn.Module):
    """A small 3-D CNN on the video and an MLP on the joints, fused by concatenation."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.rgb = nn.Sequential(nn.Conv3d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool3d(2),
                                 nn.Conv3d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten())
        self.skeleton = nn.Sequential(nn.Flatten(), nn.LazyLinear(128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU())
        self.head = nn.Linear(32 + 64, classes)

    def forward(self, rgb: torch.Tensor, skeleton: torch.Tensor) -> torch.Tensor:
        # rgb: [B, 3, T, H, W] in [0, 1]; skeleton: [B, 3, T, 25, 2] in metres
        return self.head(torch.cat([self.rgb(rgb - 0.5), self.skeleton(skeleton)], dim=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--track", default="synthetic")
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)

    train = robench.dataset(args.track, split="train")
    model = robench.TwoInputs(TinyTwoStream(len(train.class_names)))
    model(next(train.batches(2))[0])  # materialise the lazy layer
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for epoch in range(args.epochs):
        for inputs, labels in train.batches(32, shuffle=True, seed=epoch):
            loss = nn.functional.cross_entropy(model(inputs), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"epoch {epoch + 1}: loss {loss.item():.3f}")

    result = robench.evaluate(model.eval(), track=args.track, name="Tiny two-stream (plain training)",
                              authors=["An Example"])
    for column in ("clean", "R", "S", "RS"):
        r = result.record["results"][column]
        print(f"{column:>5}: {r['accuracy']:6.2f}%  [{r['interval'][0]:.1f}, {r['interval'][1]:.1f}] of {r['n']} clips")
    print("flags:", [f["code"] for f in result.flags] or "none")
    print(f"clips robust under every attack on both inputs: {int(result.per_clip('RS').sum())}")


if __name__ == "__main__":
    main()
