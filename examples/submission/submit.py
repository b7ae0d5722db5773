"""Train an outside model, describe it in an entry file, and submit it to a leaderboard track.

1. ``arch.py`` registers the model's two backbones; ``robench.build_model`` puts them under robench's
   late-fusion head with the track's clip sizes and classes.
2. The model is trained here, adversarially on both inputs with robench's PGD, on the track's training
   split, and its weights are saved with ``torch.save(model.state_dict(), ...)``.
3. ``entry.yaml`` says who made it and how (the leaderboard's entry schema), and points at ``arch.py``
   and the weights.
4. ``robench leaderboard add`` evaluates it on the track (its attacks, its clips, fp32) and writes the
   record; ``robench leaderboard render`` draws the board.

    python examples/submission/submit.py --out my-board                    # the synthetic track
    python examples/submission/submit.py --out my-board --track FILE --epochs 1
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

import robench
from robench.cli import main as robench_cli

HERE = Path(__file__).resolve().parent

ENTRY = """\
schema: 1
id: example-at
name: Example two-stream model with adversarial training
authors: [An Example]
paper: null
venue: null
architecture: 3-D CNN (RGB) + temporal CNN (skeleton), late fusion
defense: adversarial training, PGD-5 on both inputs at 8/255
extra_data: none
forward_passes: 1
model:
  plugins: [{arch}]
  rgb: {{backbone: example_rgb, channels: 16}}
  skeleton: {{backbone: example_skeleton, channels: 32}}
  weights: model.pt
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--track", default="synthetic")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--out", default="my-board", help="folder for the weights, the entry and the board")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    model = robench.build_model(args.track, rgb={"backbone": "example_rgb", "channels": 16},
                                skeleton={"backbone": "example_skeleton", "channels": 32}, plugins=[HERE / "arch.py"])
    data = robench.dataset(args.track, split="train")
    pgd = robench.attack("pgd", "RS", eps="8/255", steps=5, step_size="2/255", early_stop=False)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for epoch in range(args.epochs):
        for inputs, labels in data.batches(32, shuffle=True, seed=epoch):
            model.eval()
            adv = pgd(model, inputs, labels)
            model.train()
            loss = nn.functional.cross_entropy(model(adv), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"epoch {epoch + 1}: adversarial loss {loss.item():.3f}")
    torch.save(model.state_dict(), out / "model.pt")
    (out / "entry.yaml").write_text(ENTRY.format(arch=HERE / "arch.py"))

    root = out / "leaderboard"
    for command in (["leaderboard", "add", str(out / "entry.yaml"), "--track", args.track, "--root", str(root)],
                    ["leaderboard", "render", "--format", "markdown", "--track", args.track, "--root", str(root)]):
        print("$ robench", " ".join(command))
        if robench_cli(command) != 0:
            raise SystemExit(2)
    print((root / robench.load_track(args.track).name / "README.md").read_text())


if __name__ == "__main__":
    main()
