"""Stores and caches written before the identity rule (format 1) keep working: adopted once, under new ids.

``tests/data/legacy_format1`` holds the store and model cache that robench at identity format 1
(commit d350c9c, before code versions and precision were part of ids) wrote for
``tests/data/tiny.yaml`` on the CPU: 2 models, 8 cells. The fixture is valid while the tiny protocol
and every built-in it uses stay at ``version`` 1; bumping one of them rightly stops the adoption.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from conftest import TINY_PROTOCOL
from robench.cli import main
from robench.store import ResultsStore

FIXTURE = Path(__file__).resolve().parent / "data" / "legacy_format1"


def run(store: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    assert main(["run", str(TINY_PROTOCOL), "--store", str(store), "--progress", "quiet", *extra]) == 0
    return capsys.readouterr().out


@pytest.fixture
def legacy(tmp_path: Path) -> Path:
    shutil.copytree(FIXTURE, tmp_path / "legacy")
    return tmp_path / "legacy" / "store.sqlite"


def test_format1_results_are_adopted_once(legacy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = {k: (r["accuracy"], r["per_sample"]) for k, r in ResultsStore(legacy).cells().items()}
    out = run(legacy, capsys)
    assert "adopted 2 cached model(s) and 8 stored cell(s)" in out
    assert "0 cell(s) written, 8 already stored; 0 model(s) trained" in out
    cells = ResultsStore(legacy).cells()
    assert len(cells) == 16  # the old rows stay; each has a copy under its new id with the same per-sample results
    new = {r["spec"]: (r["accuracy"], r["per_sample"]) for k, r in cells.items() if k not in old}
    assert sorted(new.values()) == sorted(old.values())
    again = run(legacy, capsys)
    assert "adopted" not in again and "0 cell(s) written" in again


def test_gpu_results_are_never_adopted(legacy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Format 1 did not record precision: a CUDA result may be bf16, so it is recomputed."""
    with sqlite3.connect(legacy) as con:
        con.execute("UPDATE results SET device='cuda:NVIDIA H100' WHERE scenario='clean'")
    con.close()
    out = run(legacy, capsys)
    assert "adopted 2 cached model(s) and 6 stored cell(s)" in out
    assert "2 cell(s) written, 6 already stored" in out


@pytest.mark.parametrize("setting", ["model.rgb.stem_stride=1", "dataset.scenes=3"])
def test_parameters_added_since_format1_are_adopted_only_at_their_old_values(
        legacy: Path, capsys: pytest.CaptureFixture[str], setting: str) -> None:
    """synthetic's ``scenes`` and i3d's stem options did not exist in format 1: at other values than
    the ones that run format 1's code, nothing old is reused."""
    out = run(legacy, capsys, "--set", setting)
    assert "adopted" not in out and "8 cell(s) written, 0 already stored" in out
