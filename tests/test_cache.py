"""The model cache and resume states: tensors only through torch.load(weights_only=True), JSON beside them."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from conftest import TINY_PROTOCOL
from robench.errors import RobenchError
from robench.plan import ModelJob, make_plan
from robench.protocol import load_protocol
from robench.train.cache import ModelCache
from robench.train.trainer import TrainedModel, build_model, load_resume_state


@pytest.fixture(scope="module")
def job() -> ModelJob:
    plan = make_plan(load_protocol(TINY_PROTOCOL))
    return next(j for j in plan.models.values() if j.defense.type == "none")


def saved(tmp_path: Path, job: ModelJob) -> ModelCache:
    cache = ModelCache(tmp_path)
    model, defense = build_model(job)
    cache.save(job, TrainedModel(model, defense, {"note": 1}, [{"epoch": 1}], 2.5), "cpu:test")
    return cache


def test_round_trip_files_are_tensors_and_json(tmp_path: Path, job: ModelJob) -> None:
    cache = saved(tmp_path, job)
    d = cache.dir(job.id)
    state = torch.load(d / "model.pt", weights_only=True)
    assert state and all(isinstance(v, torch.Tensor) for v in state.values())
    meta = json.loads((d / "model.json").read_text())
    assert meta["model_id"] == job.id and meta["spec"] == json.loads(json.dumps(job.spec))
    assert meta["precision"] == "fp32"
    loaded = cache.load(job, torch.device("cpu"))
    assert loaded.summary == {"note": 1} and loaded.history == [{"epoch": 1}] and loaded.loaded_from_cache
    reference, _ = build_model(job)
    assert all(torch.equal(a, b) for a, b in zip(reference.state_dict().values(), loaded.model.state_dict().values()))


class _Boom:
    """Unpickling this runs a command: the cache must never do it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("damage", ["garbage", "truncated", "code", "foreign", "json", "other_id"])
def test_unreadable_cache_entry_names_the_file_and_the_fix(tmp_path: Path, job: ModelJob, damage: str) -> None:
    cache = saved(tmp_path, job)
    d = cache.dir(job.id)
    marker = tmp_path / "pwned"
    if damage == "garbage":
        (d / "model.pt").write_bytes(os.urandom(256))
    elif damage == "truncated":
        data = (d / "model.pt").read_bytes()
        (d / "model.pt").write_bytes(data[: len(data) // 2])
    elif damage == "code":
        with open(d / "model.pt", "wb") as fh:
            pickle.dump({"x": _Boom(marker)}, fh)
    elif damage == "foreign":
        torch.save({"conv.weight": torch.zeros(3, 3)}, d / "model.pt")
    elif damage == "json":
        (d / "model.json").write_text("{not json")
    else:
        meta = json.loads((d / "model.json").read_text())
        (d / "model.json").write_text(json.dumps({**meta, "model_id": "0" * 16}))
    with pytest.raises(RobenchError) as info:
        cache.load(job, torch.device("cpu"))
    msg = str(info.value)
    assert str(d) in msg and "delete the folder" in msg and "retrain" in msg, msg
    assert not marker.exists()


def test_resume_state_is_checked_and_never_half_used(tmp_path: Path, job: ModelJob) -> None:
    from robench.train.trainer import make_optimizer, make_scheduler, save_resume_state

    model, _ = build_model(job)
    opt = make_optimizer(list(model.parameters()), job.entry.training)
    sched = make_scheduler(opt, job.entry.training, 2)
    save_resume_state(tmp_path, job, 0, model, opt, sched, [{"epoch": 1}], 1.0)
    logs: list[str] = []
    resumed = load_resume_state(tmp_path, job, logs.append)
    assert resumed is not None and resumed[0]["epoch"] == 0 and not logs
    # the two files disagree (a crash between the two renames): ignored with a warning naming the file
    meta = json.loads((tmp_path / "partial.json").read_text())
    (tmp_path / "partial.json").write_text(json.dumps({**meta, "epoch": 1}))
    assert load_resume_state(tmp_path, job, logs.append) is None and "partial.pt" in logs[-1]
    (tmp_path / "partial.pt").write_bytes(b"\x80\x04garbage")
    assert load_resume_state(tmp_path, job, logs.append) is None and "restarts from epoch 1" in logs[-1]
