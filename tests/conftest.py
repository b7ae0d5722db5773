"""Shared fixtures: tiny models and batches (tests must stay fast on 2 CPU cores)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
import torch

from robench.models import HCN, I3D, TwoStreamModel

os.environ.setdefault("ROBENCH_DEVICE", "cpu")
torch.set_num_threads(min(2, torch.get_num_threads()))

REPO = Path(__file__).resolve().parent.parent
TINY_PROTOCOL = REPO / "tests" / "data" / "tiny.yaml"


def tiny_model(num_classes: int = 4, seed: int = 0,
               modalities: tuple[str, ...] = ("rgb", "skeleton")) -> TwoStreamModel:
    """A two-stream I3D + HCN at the smallest sizes the architectures allow, in eval mode."""
    torch.manual_seed(seed)
    backbones = {}
    if "rgb" in modalities:
        backbones["rgb"] = I3D(width=0.0625, frames=8, resolution=32, bn_momentum=0.1)
    if "skeleton" in modalities:
        backbones["skeleton"] = HCN(width=0.125, frames=16, window=16)
    return TwoStreamModel(backbones, num_classes).eval()


def tiny_inputs(batch: int = 6, seed: int = 1) -> dict[str, torch.Tensor]:
    """RGB on the uint8 grid in [0, 1] (with exact 0s and 1s) and a skeleton in metres."""
    g = torch.Generator().manual_seed(seed)
    rgb = torch.randint(0, 256, (batch, 3, 8, 32, 32), generator=g).float() / 255
    skel = torch.randn(batch, 3, 16, 25, 2, generator=g) * 0.3 + torch.tensor([0.0, 0.0, 3.0]).view(1, 3, 1, 1, 1)
    return {"rgb": rgb, "skeleton": skel}


def fitted_model(inputs: dict[str, torch.Tensor], labels: torch.Tensor, steps: int = 60) -> TwoStreamModel:
    """A tiny model trained to fit ``labels`` on ``inputs``: its decisions depend on both modalities.

    An untrained model's logits are dominated by biases and barely move with the input, which
    would make any attack look weak; a fitted one is what attacks are meant for.
    """
    model = tiny_model()
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(inputs), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    for p in model.parameters():
        p.grad = None
    with torch.no_grad():
        assert bool((model(inputs).argmax(1) == labels).all()), "fixture model failed to fit its batch"
    return model


def store_with_schema(path: Path, version: int) -> Path:
    """A new results store at ``path`` that claims schema ``version`` (e.g. one written by a newer robench)."""
    from robench.store import ResultsStore

    ResultsStore(path)
    con = sqlite3.connect(path)
    con.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(version),))
    con.commit()
    con.close()
    return path


@pytest.fixture(scope="session")
def inputs() -> dict[str, torch.Tensor]:
    return tiny_inputs()


@pytest.fixture(scope="session")
def labels() -> torch.Tensor:
    return torch.tensor([0, 1, 2, 3, 0, 1])


@pytest.fixture(scope="session")
def model(inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> TwoStreamModel:
    """Fitted to (inputs, labels): clean accuracy is 100% by construction."""
    return fitted_model(inputs, labels)


def linear_probe(xtr: torch.Tensor, ytr: torch.Tensor, xte: torch.Tensor, yte: torch.Tensor, classes: int) -> float:
    """Test accuracy of an L2-regularised multinomial logistic regression on standardised features (L-BFGS)."""
    xtr, xte = xtr.double(), xte.double()
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    w = torch.zeros(xtr.shape[1], classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=100)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xtr @ w + b, ytr) + 1e-2 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)  # type: ignore[no-untyped-call]
    return ((xte @ w + b).argmax(1) == yte).double().mean().item()
