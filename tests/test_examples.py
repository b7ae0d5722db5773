"""Every example under ``examples/`` runs, on the tiny test track so that it takes seconds.

Each is run as a user would run it (``python examples/...``, from a temporary folder), with
``--track tests/data/tiny_track.yaml --epochs 1``; the assertions check what each example promises to
print or write, not only that it exits 0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
TRACK = REPO / "tests" / "data" / "tiny_track.yaml"
pytestmark = pytest.mark.slow


def _run(script: Path, cwd: Path, *args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ROBENCH_DEVICE": "cpu", "ROBENCH_CACHE": str(cwd / "cache")}
    done = subprocess.run([sys.executable, str(script), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_evaluate_your_model(tmp_path: Path) -> None:
    out = _run(EXAMPLES / "evaluate_your_model.py", tmp_path, "--track", str(TRACK), "--epochs", "1")
    for column in ("clean", "R", "S", "RS"):
        assert f"{column:>5}: " in out
    assert "of 12 clips" in out and "flags:" in out


def test_adversarial_training(tmp_path: Path) -> None:
    out = _run(EXAMPLES / "adversarial_training.py", tmp_path, "--track", str(TRACK), "--epochs", "1")
    assert "AT epoch 1" in out and "plain epoch 1" in out
    assert out.splitlines()[-2].startswith("None") and out.splitlines()[-1].startswith("AT with XRS")


def test_submission(tmp_path: Path) -> None:
    out = _run(EXAMPLES / "submission" / "submit.py", tmp_path, "--track", str(TRACK), "--epochs", "1",
               "--out", str(tmp_path / "board"))
    record = json.loads((tmp_path / "board" / "leaderboard" / "tiny" / "example-at.json").read_text())
    assert record["status"] == "verified" and record["results"]["clean"]["n"] == 12
    assert "Example two-stream model with adversarial training" in out  # the rendered board


def test_defense_plugin(tmp_path: Path) -> None:
    """The plugin defense runs as a row of a protocol (on the tiny protocol's data and sizes)."""
    protocol = tmp_path / "plugin.yaml"
    protocol.write_text(f"name: plugin-tiny\ninclude: {REPO / 'tests' / 'data' / 'tiny.yaml'}\n"
                        f"plugins: [{EXAMPLES / 'defense_plugin' / 'label_smoothing.py'}]\n"
                        "defenses:\n  ls_at: {type: label_smoothing_at, label: AT + label smoothing, smoothing: 0.1}\n"
                        "training: {epochs: 1}\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ROBENCH_DEVICE": "cpu"}
    done = subprocess.run([sys.executable, "-m", "robench", "run", str(protocol), "--progress", "plain"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = subprocess.run([sys.executable, "-m", "robench", "report", "--format", "csv"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert "AT + label smoothing" in report.stdout and "None" in report.stdout
    # the shipped protocol file validates as it is
    shipped = EXAMPLES / "defense_plugin" / "protocol.yaml"
    check = subprocess.run([sys.executable, "-m", "robench", "validate", str(shipped)], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=600)
    assert check.returncode == 0, check.stdout + check.stderr
