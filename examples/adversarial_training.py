"""Adversarially train your own model with robench's two-input PGD, in your own training loop.

``robench.attack("pgd", "RS", ...)`` builds the same attack robench's adversarial-training defenses
use, perturbing the video and the skeleton jointly inside their L-inf balls (RGB in [0, 1] units, the
skeleton in metres); every adversarial batch it returns is checked against that threat model. The
loop below is Madry et al.'s: attack the current model, then take a step on the adversarial batch.
The model is then evaluated on the track, with and without the defense, so the gain is measured on
the same clips.

    python examples/adversarial_training.py                # the synthetic track (several minutes on a CPU)
    python examples/adversarial_training.py --track FILE --epochs 1
"""

from __future__ import annotations

import argparse

import torch
from evaluate_your_model import TinyTwoStream
from torch import nn

import robench


def train(track: str, epochs: int, adversarial: bool) -> nn.Module:
    torch.manual_seed(0)
    data = robench.dataset(track, split="train")
    model = robench.TwoInputs(TinyTwoStream(len(data.class_names)))
    model(next(data.batches(2))[0])
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    # PGD-5 on both inputs at the paper's eps, the last iterate (no early stop), as for training
    pgd = robench.attack("pgd", "RS", eps="8/255", steps=5, step_size="2/255", early_stop=False)
    for epoch in range(epochs):
        for inputs, labels in data.batches(32, shuffle=True, seed=epoch):
            if adversarial:
                model.eval()  # attack the deterministic forward pass
                inputs = pgd(model, inputs, labels)
                model.train()
            loss = nn.functional.cross_entropy(model(inputs), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"{'AT' if adversarial else 'plain'} epoch {epoch + 1}: loss {loss.item():.3f}")
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--track", default="synthetic")
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    rows = {}
    for adversarial in (False, True):
        model = train(args.track, args.epochs, adversarial)
        result = robench.evaluate(model, track=args.track, name="adversarial training" if adversarial else "plain")
        rows["AT with XRS" if adversarial else "None"] = result
    print(f"{'model':<12} {'clean':>7} {'XR':>7} {'XS':>7} {'XRS':>7}")
    for name, result in rows.items():
        print(f"{name:<12} " + " ".join(f"{result.accuracy(c):7.2f}" for c in ("clean", "R", "S", "RS")))


if __name__ == "__main__":
    main()
