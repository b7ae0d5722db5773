"""Cluster runs without a cluster: the plan's shards, and the Slurm job scripts, checked and then executed
here task by task (no Slurm on this machine: each array task is the script run with its
``SLURM_ARRAY_TASK_ID``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY_PROTOCOL
from robench.cli import main
from robench.cluster.shard import Shard
from robench.errors import RobenchError
from robench.plan import make_plan
from robench.protocol import load_protocol
from robench.store import ResultsStore


def test_shards_split_a_plan_into_disjoint_parts_with_families_together() -> None:
    plan = make_plan(load_protocol("table2", (), "synthetic"))
    derived = [j for j in plan.models.values() if j.base]
    assert derived  # ExFMem's variants derive from a base model
    for count in (1, 3, 4):
        shards = [Shard(i, count) for i in range(count)]
        models = [s.models(plan) for s in shards]
        cells = [s.cells(plan) for s in shards]
        assert sorted(m for part in models for m in part) == sorted(plan.models)  # each model in exactly one
        assert sorted(c for part in cells for c in part) == sorted(plan.cells)
        for job in derived:
            assert [job.base in part for part in models] == [job.id in part for part in models]
    assert all(Shard(i, 4).cells(plan) for i in range(4))  # 64 cells over 4: none empty
    assert Shard.parse(" 3/8 ") == Shard(3, 8)
    for bad in ("8/8", "-1/4", "1", "a/b", "0/0"):
        with pytest.raises(RobenchError, match="allowed: I/N"):
            Shard.parse(bad)


#: a shell function the jobs' setup defines: ``torchrun ... -m robench`` runs as ``python -m robench`` under PLAIN=1
PLAIN_SHIM = 'torchrun() { if [ -n "${PLAIN:-}" ]; then python "${@:3}"; else command torchrun "$@"; fi; }'


def _slurm(tmp_path: Path, *extra: str) -> Path:
    out = tmp_path / "jobs"
    bin_dir = Path(sys.executable).parent
    assert main(["slurm", str(TINY_PROTOCOL), "--out", str(out), "--store", str(tmp_path / "results.sqlite"),
                 "--cache", str(tmp_path / "cache"), "--tasks", "2", "--max-concurrent", "1", "--partition", "gpu",
                 "--time", "01:00:00", "--sbatch=--account=abc", "--set", "training.epochs=1",
                 "--setup", f"export PATH={bin_dir}:$PATH OMP_NUM_THREADS=1",
                 # with PLAIN=1 a task runs robench without torchrun (one process either way; torchrun's own
                 # start costs 4 s a task): the training tasks use the real torchrun, the others skip it
                 "--setup", PLAIN_SHIM,
                 *extra]) == 0
    return out


def test_slurm_scripts_chain_training_evaluation_and_merge(tmp_path: Path) -> None:
    out = _slurm(tmp_path)
    train, evaluate, merge, submit = ((out / n).read_text() for n in ("train.sbatch", "eval.sbatch", "merge.sbatch",
                                                                       "submit.sh"))
    for text in (train, evaluate, merge, submit):
        assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0
    for text in (train, evaluate):
        assert "#SBATCH --array=0-1%1" in text and "#SBATCH --gres=gpu:1" in text
        assert "#SBATCH --partition=gpu" in text and "#SBATCH --time=01:00:00" in text
        assert "#SBATCH --account=abc" in text
        assert "torchrun --standalone --nproc_per_node=1 -m robench run" in text
        assert '--shard "$SLURM_ARRAY_TASK_ID/2"' in text and "--set training.epochs=1" in text
    assert "--train-only" in train and "--train-only" not in evaluate
    assert "shards/train-$SLURM_ARRAY_TASK_ID.sqlite" in train and "shards/eval-$SLURM_ARRAY_TASK_ID.sqlite" in evaluate
    assert re.search(r"robench store merge .*/shards/\*\.sqlite --into .*results\.sqlite", merge)
    assert "--dependency=afterok:${train%%;*}" in submit and "--dependency=afterok:${evaluate%%;*}" in submit


def test_slurm_submit_calls_sbatch_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    log = tmp_path / "sbatch.log"
    (fake / "sbatch").write_text(f'#!/bin/bash\necho "$@" >> {log}\necho $(( $(wc -l < {log}) + 100 ))\n')
    (fake / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    _slurm(tmp_path, "--submit")
    calls = log.read_text().splitlines()
    assert calls[0].endswith("train.sbatch") and "--parsable" in calls[0]
    assert "--dependency=afterok:101" in calls[1] and calls[1].endswith("eval.sbatch")
    assert "--dependency=afterok:102" in calls[2] and calls[2].endswith("merge.sbatch")


def _task(script: Path, index: int | None = None, torchrun: bool = True) -> str:
    env = {**os.environ, **({"SLURM_ARRAY_TASK_ID": str(index)} if index is not None else {}),
           **({} if torchrun else {"PLAIN": "1"})}
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_slurm_arrays_run_task_by_task_compute_each_cell_once_and_resubmission_skips(tmp_path: Path) -> None:
    out = _slurm(tmp_path)
    trained = [_task(out / "train.sbatch", i) for i in (0, 1)]
    counts = [int(m) for text in trained for m in re.findall(r"(\d+) model\(s\) trained", text)]
    assert sum(counts) == 2, trained  # the tiny plan's two models, each by one task
    evaluated = [_task(out / "eval.sbatch", i, torchrun=False) for i in (0, 1)]
    written = [int(m) for text in evaluated for m in re.findall(r"(\d+) cell\(s\) written", text)]
    assert sum(written) == 8 and all(written), evaluated  # split, and nothing twice
    assert not any(re.search(r"[1-9]\d* model\(s\) trained", text) for text in evaluated)  # models from the cache
    _task(out / "merge.sbatch")
    merged = ResultsStore(tmp_path / "results.sqlite")
    plan = make_plan(load_protocol(TINY_PROTOCOL, ("training.epochs=1",)))
    assert set(merged.cells()) == set(plan.cells) and merged.count() == 8
    # re-submitted (one task of each array, to keep the suite short): it finds its work done
    again = _task(out / "train.sbatch", 1, torchrun=False) + _task(out / "eval.sbatch", 1, torchrun=False)
    assert "0 model(s) trained" in again and "0 cell(s) written" in again, again
