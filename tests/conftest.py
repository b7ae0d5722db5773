"""Shared fixtures: tiny models and batches (tests must stay fast on 2 CPU cores)."""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from robench.models import HCN, I3D, TwoStreamModel

os.environ.setdefault("ROBENCH_DEVICE", "cpu")
# One thread, here and in every process a test starts (they inherit OMP_NUM_THREADS): the test command runs
# two pytest-xdist workers on two cores, and a test that compares numbers computed in two processes needs
# one thread count on both sides (the count changes the last bits of a training run).
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _one_thread_after() -> Iterator[None]:
    """Fail a test that leaves torch with another thread count (and restore one thread): the worker's later tests
    would run two threads each on a core the other worker is using, several times slower."""
    yield
    threads = torch.get_num_threads()
    if threads != 1:
        torch.set_num_threads(1)
        pytest.fail(f"the test left torch with {threads} CPU threads (the suite runs one per worker)")

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


def fit(model: torch.nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor,
        steps: int) -> torch.nn.Module:
    """``model`` after ``steps`` full-batch Adam steps (lr 3e-3) on ``inputs``, in eval mode."""
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(inputs), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def fitted_model(inputs: dict[str, torch.Tensor], labels: torch.Tensor, steps: int = 60) -> TwoStreamModel:
    """A tiny model trained to fit ``labels`` on ``inputs``: its decisions depend on both modalities.

    An untrained model's logits are dominated by biases and barely move with the input, which
    would make any attack look weak; a fitted one is what attacks are meant for.
    """
    model = tiny_model()
    fit(model, inputs, labels, steps)
    for p in model.parameters():
        p.grad = None
    with torch.no_grad():
        assert bool((model(inputs).argmax(1) == labels).all()), "fixture model failed to fit its batch"
    return model



TINY_TRACK = Path(__file__).parent / "data" / "tiny_track.yaml"


def tiny_entry(folder: Path, name: str, entry_id: str | None = None) -> torch.nn.Module:
    """Write ``entry.yaml`` for the untrained tiny model of the tiny track, with its weights, into `folder`;
    return the model."""
    import robench

    model = robench.build_model(TINY_TRACK, rgb={"backbone": "i3d", "width": 0.0625},
                                skeleton={"backbone": "hcn", "width": 0.125})
    torch.save(model.state_dict(), folder / "model.pt")
    line = f"id: {entry_id}\n" if entry_id else ""
    (folder / "entry.yaml").write_text(
        f"schema: 1\n{line}name: {name}\nauthors: [A. Author]\narchitecture: I3D + HCN\ndefense: none\n"
        "model: {rgb: {backbone: i3d, width: 0.0625}, skeleton: {backbone: hcn, width: 0.125}, weights: model.pt}\n")
    return model


#: a leaderboard track on the tiny protocol's data with attacks most clips survive (the challenge and transfer
#: tests); :func:`weak_track` writes it with the test's own ``attacks`` section
WEAK_TRACK = """\
name: weak
title: A track with a weak attack (tests)
version: 1
description: the tiny protocol's data with weak attacks, which most clips survive
dataset: {{name: synthetic, classes: 4, train_clips_per_class: 6, test_clips_per_class: 3, frames_rgb: 8,
          frames_skeleton: 16, resolution: 32, train_performers: 3, test_performers: 2}}
evaluation: {{split: test, max_samples: null, batch_size: 16, seed: 0}}
clips: {{count: 12, digest: null}}
threat: {{rgb: {{scale: 1.0, bounds: [0, 1]}}, skeleton: {{scale: 1.0, bounds: null}}}}
eps: 8/255
scenarios: [clean, R, S, RS]
attacks:
{attacks}
rank_by: RS
"""
#: the backbones of the weak track's entries
WEAK_BACKBONES = {"rgb": {"backbone": "i3d", "width": 0.0625, "bn_momentum": 0.1},
                  "skeleton": {"backbone": "hcn", "width": 0.125, "window": 16, "dropout": 0.0}}


def weak_track(folder: Path, attacks: str) -> Path:
    """Write the weak track with ``attacks`` (YAML lines, indented under ``attacks:``) as ``folder/weak.yaml``."""
    path = folder / "weak.yaml"
    path.write_text(WEAK_TRACK.format(attacks=attacks))
    return path


def weak_entry(folder: Path, entry_id: str, model: torch.nn.Module) -> Path:
    """Write an outside entry ``entry_id`` of ``model`` (its weights and ``entry.yaml``, the weak track's backbones)
    into ``folder``, created; returns the entry file."""
    import json
    import textwrap

    folder.mkdir(parents=True)
    torch.save(model.state_dict(), folder / "model.pt")
    (folder / "entry.yaml").write_text(textwrap.dedent(f"""\
        schema: 1
        id: {entry_id}
        name: Model {entry_id}
        authors: [A. Author]
        architecture: I3D + HCN
        defense: none
        model: {{rgb: {json.dumps(WEAK_BACKBONES['rgb'])}, skeleton: {json.dumps(WEAK_BACKBONES['skeleton'])},
                 weights: model.pt}}
        """))
    return folder / "entry.yaml"


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


def admin_engine(url: str) -> Any:
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    parsed = sa.engine.make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return sa.create_engine(parsed, isolation_level="AUTOCOMMIT", poolclass=NullPool)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh database on the test server (``$ROBENCH_TEST_POSTGRES``, a CREATEDB role), as a URL; the test skips
    without a server, and fails instead when ``$ROBENCH_REQUIRE_POSTGRES`` is 1 (as in CI)."""
    import sqlalchemy as sa

    base = os.environ.get("ROBENCH_TEST_POSTGRES")
    if not base:
        message = "no PostgreSQL server: set ROBENCH_TEST_POSTGRES=postgresql://user:password@host/db (a CREATEDB role)"
        if os.environ.get("ROBENCH_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    name = f"robench_test_{uuid.uuid4().hex[:12]}"
    admin = admin_engine(base)
    with admin.connect() as con:
        con.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield sa.engine.make_url(base).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as con:
        con.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
