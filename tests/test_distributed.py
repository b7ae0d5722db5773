"""Data-parallel training and sharded evaluation under torchrun's protocol: two CPU processes, gloo.

Each test starts two ranks with :func:`torch.multiprocessing.spawn` and the environment torchrun
would set, and compares what they produce with one process:

- adversarial training on two ranks with half of every global batch each gives one process's
  parameters (up to floating-point summation order; tolerance below), on a model without BatchNorm
  and on the two-stream model with per-rank BatchNorm against its single-process equivalent;
- a sharded run evaluates an uneven number of clips and stores exactly the per-clip results one
  process computes on the same model; one row per cell; a re-run writes nothing; rank 1 never opens the
  store.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from robench.distributed import SINGLE, Ranks, joined
from robench.errors import RobenchError
from robench.evaluation import evaluate_cell
from robench.plan import make_plan
from robench.progress import Progress
from robench.protocol import load_protocol
from robench.registry import DATASETS
from robench.runner import Runner
from robench.store import ResultsStore, unpack_bits
from robench.train.cache import ModelCache
from robench.train.trainer import StepLoss, build_model, check_data_parallel, train_model

TINY = Path(__file__).parent / "data" / "tiny.yaml"

#: parameters after k steps on two ranks vs one process. The ranks average gradients in another order;
#: measured: no difference at all when both sides run one thread. Across thread counts the tiny I3D is
#: ill-conditioned (BatchNorm over 4 clips at 1x1 positions; sign-gradient training attacks): 1e-7
#: differences after one step grow to 1e-3 after three, so the references run one thread too.
RTOL, ATOL = 1e-5, 1e-7


@pytest.fixture
def one_thread() -> Any:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

NO_BN = """
name: ddp-hcn
seeds: [0]
dataset: {name: synthetic, classes: 3, train_clips_per_class: 5, test_clips_per_class: 2, frames_rgb: 8,
          frames_skeleton: 16, resolution: 32, train_performers: 3, test_performers: 2}
model:
  skeleton: {backbone: hcn, width: 0.125, window: 16, dropout: 0.0}
training:
  epochs: 1
  batch_size: 6
  lr: 0.05
  attack: {type: pgd, eps: 8/255, steps: 2, step_size: 4/255, random_start: false, early_stop: false}
defenses:
  at_s: {type: at, label: AT-S, modalities: [skeleton]}
attacks:
  pgd: {type: pgd, steps: 2, step_size: 4/255}
scenarios: [clean, S]
eps: [8/255]
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank_main(rank: int, fn: Callable[..., None], port: int, args: tuple[Any, ...]) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    with joined("cpu") as ranks:  # as robench run does: the group drained and destroyed on every way out
        fn(ranks, *args)


def _on_two_ranks(fn: Callable[..., None], *args: Any) -> None:
    mp.spawn(_rank_main, args=(fn, _free_port(), args), nprocs=2, join=True)


def _train(ranks: Ranks, protocol_path: Path, out: Path, overrides: tuple[str, ...] = (),
           work: Path | None = None) -> None:
    protocol = load_protocol(protocol_path, overrides)
    plan = make_plan(protocol, ranks=ranks.world)
    (job,) = plan.models.values()
    ds = protocol.variants[job.variant].dataset
    train = DATASETS.build(ds.type, cache_dir=None, **ds.params).split("train")
    work = work or out.parent / f"work-{out.name}-{ranks.rank}"
    trained = train_model(job, train, torch.device("cpu"), Progress("quiet"), work, ranks=ranks)
    torch.save({k: v.clone() for k, v in trained.model.state_dict().items()}, out.with_suffix(f".{ranks.rank}.pt"))
    out.with_suffix(f".{ranks.rank}.json").write_text(json.dumps(trained.history))


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)  # type: ignore[no-any-return]


def _assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=RTOL, atol=ATOL, msg=lambda m, k=k: f"{k}: {m}")


def test_two_ranks_reproduce_one_process_adversarial_training_without_batchnorm(tmp_path: Path,
                                                                                 one_thread: None) -> None:
    """Three adversarial training steps (one epoch): 15 clips in global batches of 6, shares 3 + 3,
    3 + 3 and, last, 2 + 1 (weighted by size)."""
    path = tmp_path / "hcn.yaml"
    path.write_text(NO_BN)
    _on_two_ranks(_train, path, tmp_path / "ddp")
    _train(SINGLE, path, tmp_path / "one")
    two, other, one = (_state(tmp_path / n) for n in ("ddp.0.pt", "ddp.1.pt", "one.0.pt"))
    for k in two:
        assert torch.equal(two[k], other[k]), k  # every rank ends with rank 0's weights
    _assert_same_state(two, one)
    assert any(not torch.equal(one[k], fresh) for k, fresh in _initial(path).items())  # it did train


def _initial(path: Path) -> dict[str, torch.Tensor]:
    (job,) = make_plan(load_protocol(path)).models.values()
    return build_model(job)[0].state_dict()


def _ghost_forward(self: StepLoss, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """One process doing what two ranks with per-rank BatchNorm do: each half of the batch through the
    defense's loss on its own (its own batch statistics; the training attack sees the running statistics
    of the step's start), the halves' losses weighted by size, and the running statistics rank 0 keeps."""
    from robench import LossOutput

    halves = torch.arange(len(labels)).tensor_split(2)
    norms = [m for m in self.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    names = ("running_mean", "running_var", "num_batches_tracked")
    start = [{k: m._buffers[k] for k in names} for m in norms]
    kept: list[dict[str, torch.Tensor | None]] = []
    total, logits = torch.zeros(()), []
    for h, idx in enumerate(halves):
        for m, bufs in zip(norms, start):  # fresh copies: tensors a half saved for backward stay untouched
            m._buffers.update({k: v.clone() for k, v in bufs.items() if v is not None})
        out = self.loss_fn(self.model, {m: x[idx] for m, x in inputs.items()}, labels[idx], self.ctx)
        if h == 0:
            kept = [{k: m._buffers[k] for k in names} for m in norms]
        total = total + out.loss * (len(idx) / len(labels))
        logits.append(out.logits)
    for m, bufs in zip(norms, kept):
        m._buffers.update(bufs)
    self.last = LossOutput(total, torch.cat(logits))
    return total


def _tiny_with(tmp_path: Path, defenses: str) -> Path:
    """The tiny protocol with only ``defenses`` (a YAML block)."""
    text = TINY.read_text()
    path = tmp_path / "tiny.yaml"
    path.write_text(text[: text.index("defenses:")] + defenses + text[text.index("attacks:"):])
    return path


def test_two_ranks_with_per_rank_batchnorm_equal_their_single_process_equivalent(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None) -> None:
    """Six adversarial training steps of the two-stream model (I3D has BatchNorm): from step 2 on, rank 1's
    training attack uses rank 0's running statistics, as DDP broadcasts them at every forward."""
    path = _tiny_with(tmp_path, "defenses:\n  at_rs: {type: at, label: AT-RS, modalities: [rgb, skeleton]}\n")
    sets = ("model.rgb.dropout=0.0", "training.batchnorm=per-rank", "training.attack.random_start=false",
            "training.optimizer=sgd", "training.lr=0.01")
    _on_two_ranks(_train, path, tmp_path / "ddp", sets)
    monkeypatch.setattr(StepLoss, "forward", _ghost_forward)
    _train(SINGLE, path, tmp_path / "one", sets)
    two, one = _state(tmp_path / "ddp.0.pt"), _state(tmp_path / "one.0.pt")
    assert any(k.endswith("running_mean") for k in two)
    _assert_same_state(two, one)
    monkeypatch.undo()
    _train(SINGLE, path, tmp_path / "plain", sets)  # statistics over the whole batch: another model
    key = "backbones.rgb.stages.Conv3d_1a_7x7.bn.running_mean"
    assert not torch.allclose(_state(tmp_path / "plain.0.pt")[key], two[key])


def test_data_parallel_training_refuses_what_it_cannot_reproduce(tmp_path: Path) -> None:
    path = tmp_path / "hcn.yaml"
    path.write_text(NO_BN)
    two = Ranks(0, 2)
    for sets, message in ((("training.batch_size=5",), "does not divide into 2 equal shares"),
                          (("training.batch_size=14",), "last batch of 1 clip(s), fewer than the ranks")):
        (job,) = make_plan(load_protocol(path, sets), ranks=2).models.values()
        with pytest.raises(RobenchError, match=re.escape(message)):
            check_data_parallel(job, build_model(job)[0], 15, torch.device("cpu"), two)
    job = next(iter(make_plan(load_protocol(TINY), ranks=2).models.values()))
    with pytest.raises(RobenchError, match=r"'sync'.*needs CUDA.*'per-rank'"):
        check_data_parallel(job, build_model(job)[0], 24, torch.device("cpu"), two)


def test_ranks_and_batchnorm_enter_the_model_id_only_with_several_ranks() -> None:
    one, also_one = make_plan(load_protocol(TINY)), make_plan(load_protocol(TINY, ("training.batchnorm=per-rank",)))
    assert set(one.models) == set(also_one.models)  # one process: the option changes nothing
    two = make_plan(load_protocol(TINY), ranks=2)
    two_per_rank = make_plan(load_protocol(TINY, ("training.batchnorm=per-rank",)), ranks=2)
    assert len({*one.models, *two.models, *two_per_rank.models}) == 3 * len(one.models)
    job = next(iter(two.models.values()))
    assert job.spec["training"]["data_parallel"] == {"ranks": 2, "batchnorm": "sync"}


def _run(ranks: Ranks, protocol_path: Path, store: Path, cache: Path, overrides: tuple[str, ...]) -> None:
    runner = Runner(ResultsStore(store) if ranks.main else None, ModelCache(cache), torch.device("cpu"),
                    Progress("quiet"), cache / "data", ranks=ranks)  # as robench run: only rank 0 opens the store
    runner.run(load_protocol(protocol_path, overrides))


def test_sharded_evaluation_stores_exactly_one_process_results_once(tmp_path: Path) -> None:
    path = TINY
    # 12 test clips in batches of 5, 5, 2: rank 0 evaluates the first and the last, rank 1 the second
    sets = ("evaluation.batch_size=5", "training.epochs=1", "training.batchnorm=per-rank")
    store, cache = tmp_path / "r.sqlite", tmp_path / "cache"
    _on_two_ranks(_run, path, store, cache, sets)
    results = ResultsStore(store)
    plan = make_plan(load_protocol(path, sets), ranks=2)
    rows = results.cells()
    assert set(rows) == set(plan.cells) and results.count() == len(plan.cells) == 8
    # one process, same models: the same per-clip outcomes, bit for bit
    models = ModelCache(cache)
    for job in plan.models.values():
        trained = models.load(job, torch.device("cpu"))
        ds = plan.protocol.variants[job.variant].dataset
        test = DATASETS.build(ds.type, cache_dir=None, **ds.params).split("test")
        for cell in plan.cells_of(job.id):
            single = evaluate_cell(trained.model, test, cell, torch.device("cpu"), Progress("quiet"))
            stored = unpack_bits(rows[cell.id]["per_sample"], rows[cell.id]["n"])
            assert single.n == 12
            np.testing.assert_array_equal(stored, single.correct, err_msg=f"{cell.scenario} {cell.attack_type}")
    # a re-run finds everything: no row is written twice
    _on_two_ranks(_run, path, store, cache, sets)
    assert results.count() == 8 and len(results.runs()) == 2


def test_only_rank_zero_has_a_results_store(tmp_path: Path) -> None:
    second = Runner(None, ModelCache(tmp_path / "cache"), torch.device("cpu"), Progress("quiet"), tmp_path / "data",
                    ranks=Ranks(1, 2))
    with pytest.raises(RobenchError, match="rank 1 of 2 has no results store"):
        _ = second.store
    with pytest.raises(RobenchError, match="needs a results store"):
        Runner(None, ModelCache(tmp_path / "cache"), torch.device("cpu"), Progress("quiet"), tmp_path / "data")


def test_a_setting_torchrun_cannot_honour_stops_the_run_before_any_work(tmp_path: Path) -> None:
    store, cache = tmp_path / "r.sqlite", tmp_path / "cache"
    with pytest.raises(mp.ProcessRaisedException, match=re.escape("training.batchnorm 'sync'")):
        _on_two_ranks(_run, TINY, store, cache, ("training.epochs=1",))  # BatchNorm in I3D, sync on the CPU
    assert ResultsStore(store).runs() == [] and not list(cache.glob("models/*/partial.pt"))


def test_with_sample_seeds_two_ranks_train_the_one_process_model_with_dropout_and_random_starts(
        tmp_path: Path, one_thread: None) -> None:
    """HCN with dropout 0.5 and a random-start training attack: with per-clip seeds the weights are one
    process's, so the model id leaves the number of ranks out."""
    path = tmp_path / "hcn.yaml"
    path.write_text(NO_BN.replace("dropout: 0.0", "dropout: 0.5").replace("random_start: false", "random_start: true"))
    sets = ("training.sample_seeds=true",)
    (one_id,), (two_id,) = (make_plan(load_protocol(path, sets), ranks=r).models for r in (1, 2))
    assert one_id == two_id
    _on_two_ranks(_train, path, tmp_path / "ddp", sets)
    _train(SINGLE, path, tmp_path / "one", sets)
    _assert_same_state(_state(tmp_path / "ddp.0.pt"), _state(tmp_path / "one.0.pt"))
    _train(SINGLE, path, tmp_path / "stream")  # the default draws from the stream: another model
    stream = _state(tmp_path / "stream.0.pt")
    assert any(not torch.equal(stream[k], v) for k, v in _state(tmp_path / "one.0.pt").items())


def test_two_ranks_resume_from_the_state_one_process_left(tmp_path: Path, one_thread: None,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A run killed after its first epoch leaves ``partial.pt``; two ranks started on it (rank 0 reads it,
    every rank resumes from that reading) end with the weights of an uninterrupted run."""
    import robench.train.trainer as trainer

    path = tmp_path / "hcn.yaml"
    path.write_text(NO_BN.replace("epochs: 1", "epochs: 2").replace("dropout: 0.0", "dropout: 0.5"))
    sets = ("training.sample_seeds=true",)  # the same model id on one rank and on two
    _train(SINGLE, path, tmp_path / "whole", sets)
    real_save = trainer.save_resume_state

    def save_then_die(*args: Any) -> None:
        real_save(*args)
        raise KeyboardInterrupt  # killed right after the first epoch's state is on disk

    monkeypatch.setattr(trainer, "save_resume_state", save_then_die)
    work = tmp_path / "shared-work"
    with pytest.raises(KeyboardInterrupt):
        _train(SINGLE, path, tmp_path / "killed", sets, work)
    monkeypatch.undo()
    assert (work / "partial.pt").is_file()
    meta = json.loads((work / "partial.json").read_text())
    meta["history"][0]["marker"] = 1  # shows which run's first epoch the resumed model carries
    (work / "partial.json").write_text(json.dumps(meta))
    _on_two_ranks(_train, path, tmp_path / "resumed", sets, work)
    _assert_same_state(_state(tmp_path / "resumed.0.pt"), _state(tmp_path / "whole.0.pt"))
    for rank in (0, 1):  # both ranks resumed (from rank 0's reading) rather than training from the start
        history = json.loads((tmp_path / f"resumed.{rank}.json").read_text())
        assert len(history) == 2 and history[0].get("marker") == 1


def test_torchrun_ranks_exit_cleanly_after_a_run(tmp_path: Path) -> None:
    """A real ``torchrun --nproc_per_node=2 -m robench run`` on the tiny protocol (training, evaluation,
    store writes): torchrun exits 0, its agent reports the worker group SUCCEEDED (which it does only
    when every rank's exit status is 0; a rank that aborts at exit shows up there as exitcode -6), no
    rank printed ``terminate called`` (the abort of a gloo thread at interpreter shutdown), and the
    store holds every cell once."""
    import subprocess
    import sys

    torchrun = Path(sys.executable).with_name("torchrun")
    logs, store = tmp_path / "logs", tmp_path / "r.sqlite"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LOGLEVEL": "INFO"}
    sets = ("training.epochs=1", "training.batchnorm=per-rank")
    done = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", "--log-dir", str(logs),
                           "--redirects", "3", "-m", "robench", "run", str(TINY), "--store", str(store),
                           "--cache", str(tmp_path / "cache"), "--progress", "plain",
                           *(a for s in sets for a in ("--set", s))],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    rank_logs = {p.parent.name: p.read_text() for p in logs.rglob("stderr.log")}
    assert done.returncode == 0, done.stderr[-3000:] + "\n".join(rank_logs.values())[-3000:]
    assert "(WorkerState.SUCCEEDED)" in done.stderr
    assert set(rank_logs) == {"0", "1"}
    for rank, text in rank_logs.items():
        assert "terminate called" not in text, f"rank {rank}: {text[-2000:]}"
    plan = make_plan(load_protocol(TINY, sets), ranks=2)
    assert set(ResultsStore(store).cells()) == set(plan.cells)
