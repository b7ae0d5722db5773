"""Data parallelism across processes: the ranks of a ``torchrun`` launch, as one :class:`Ranks` value.

``torchrun --nproc_per_node=N -m robench run ...`` starts N processes with ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK`` set; :meth:`Ranks.from_env` joins them into one process group (NCCL on CUDA, gloo on
the CPU) and gives each its device. Everything else in robench sees only a :class:`Ranks`:

- training (:mod:`robench.train.trainer`) splits every global batch of the single-process run into
  ``world`` contiguous shares (:meth:`Ranks.share`) and averages gradients with
  DistributedDataParallel;
- evaluation (:mod:`robench.evaluation`) gives rank r the batches ``r, r + world, ...`` of the
  single-process batch list (:meth:`Ranks.strided`) and gathers the per-clip results
  (:meth:`Ranks.gather`), so every rank ends with the whole cell;
- the runner lets rank 0 decide (which model to train, which cell to claim) and broadcasts the
  decision (:meth:`Ranks.broadcast`); only rank 0 writes the store and the model cache.

A single process is ``Ranks()`` (rank 0 of 1): every method is then a no-op, so the code paths are
the same with and without ``torchrun``.

Leaving the group is part of the contract. :func:`joined` is how a process takes part: it joins the
group, and on every way out (return, exception, signal turned into an exception) collects the
DistributedDataParallel wrappers still waiting in reference cycles, drains the group (a barrier, on
success only) and destroys it, so that gloo's worker threads are joined while the interpreter is fully
alive. Without this a rank could abort at exit with ``terminate called without an active exception``:
a DDP wrapper left to the interpreter's final garbage collection keeps the group alive until then,
and a gloo worker thread that drops its last all-reduce in that moment needs the GIL to release a
Python object its work captured; a thread asking for the GIL during finalisation is ended with
``pthread_exit``, whose unwinding through a C++ destructor calls ``std::terminate``.
"""

from __future__ import annotations

import gc
import os
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from robench.errors import RobenchError

T = TypeVar("T")

#: the environment variables torchrun sets for every process it starts
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Ranks:
    """This process's place among the data-parallel processes of one run.

    Attributes:
        rank: this process's index, 0 .. world - 1 (rank 0 writes results and checkpoints).
        world: the number of processes (1: no process group, every method is a no-op).
        local_rank: the index on this host (which GPU it drives).
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes: rank 0."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world > 1

    @classmethod
    def from_env(cls, device_type: str, timeout_s: float = 1800.0) -> Ranks:
        """The ranks torchrun described in the environment, with the process group started; ``Ranks()``
        when ``WORLD_SIZE`` is unset or 1 (a plain ``robench run``).

        ``device_type`` picks the backend: NCCL for "cuda", gloo otherwise. ``timeout_s`` bounds how long
        a collective waits for a slow rank (training one model can take hours on rank 0 while the
        others wait only at the next collective, so the default is generous).
        """
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        if world <= 1:
            return cls()
        missing = [v for v in TORCHRUN_VARIABLES if v not in os.environ]
        if missing:
            raise RobenchError(f"WORLD_SIZE={world} but {', '.join(missing)} unset: start data-parallel runs with "
                               "torchrun --nproc_per_node=N -m robench run ... (it sets all of "
                               f"{', '.join(TORCHRUN_VARIABLES)})")
        ranks = cls(int(os.environ["RANK"]), world, int(os.environ["LOCAL_RANK"]))
        if not dist.is_initialized():
            backend = "nccl" if device_type == "cuda" else "gloo"
            dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
        return ranks

    def device(self, device: torch.device) -> torch.device:
        """This rank's device: ``cuda:LOCAL_RANK`` when ``device`` is CUDA, else ``device`` itself."""
        if self.parallel and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def close(self, drain: bool = True) -> None:
        """Leave the process group: ``drain`` (the run finished here) waits at a barrier until every rank
        has finished too, then the group is destroyed on every path.

        Before the group goes, garbage that still holds it (a DistributedDataParallel wrapper in a
        reference cycle, and through it the group and its last work items) is collected, so the group's
        worker threads are joined here rather than during interpreter shutdown (see the module's
        docstring). A rank that finished while another failed gets a :class:`RobenchError` from the
        barrier; the group is destroyed all the same.
        """
        if not (self.parallel and dist.is_initialized()):
            return
        try:
            if drain:
                try:
                    dist.barrier()
                except RuntimeError as exc:
                    raise RobenchError(f"rank {self.rank} of {self.world}: finished, but another rank left the run "
                                       f"before finishing ({str(exc).splitlines()[0] if str(exc) else exc!r}); see "
                                       "that rank's error") from None
        finally:
            self.release()
            dist.destroy_process_group()
            gc.collect()

    def release(self) -> None:
        """Free DistributedDataParallel wrappers that are garbage but wait in reference cycles (several
        ranks only): their reducers hold the process group and its last all-reduce. Called when a
        training phase ends and before the group is destroyed."""
        if self.parallel:
            gc.collect()

    @property
    def stream_key(self) -> tuple[int, ...]:
        """What a rank adds to a seed for its own random stream: ``(rank,)``, nothing in one process (so
        single-process seeds stay what they were)."""
        return (self.rank,) if self.parallel else ()

    # -- splitting work --------------------------------------------------------------------------
    def share(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous share of one global batch (sizes differ by at most one clip)."""
        if not self.parallel:
            return batch
        return torch.tensor_split(batch, self.world)[self.rank]

    def strided(self, items: Sequence[T]) -> list[T]:
        """Items ``rank, rank + world, ...`` of ``items`` (evaluation batches; nothing is padded)."""
        return list(items[self.rank :: self.world])

    # -- collectives -----------------------------------------------------------------------------
    def broadcast(self, value: T) -> T:
        """Rank 0's ``value`` on every rank (any picklable object)."""
        if not self.parallel:
            return value
        box: list[Any] = [value if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: T) -> list[T]:
        """Every rank's ``value``, in rank order, on every rank."""
        if not self.parallel:
            return [value]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, value)
        return out

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sums of ``values`` over the ranks (float64; e.g. an epoch's loss totals)."""
        if not self.parallel:
            return list(values)
        t = torch.tensor(list(values), dtype=torch.float64)
        if dist.get_backend() == "nccl":
            t = t.cuda()
        dist.all_reduce(t)
        return [float(x) for x in t.cpu()]

    def sync_state(self, module: torch.nn.Module) -> None:
        """Overwrite every rank's parameters and buffers with rank 0's, in place."""
        if not self.parallel:
            return
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)

    def barrier(self) -> None:
        if self.parallel:
            dist.barrier()


#: a single process: rank 0 of 1
SINGLE = Ranks()


@contextmanager
def joined(device_type: str, timeout_s: float = 1800.0) -> Iterator[Ranks]:
    """This process's :class:`Ranks` (:meth:`Ranks.from_env`) for the duration of a ``with`` block, and the
    group left cleanly on every way out: drained and destroyed after the block finishes; destroyed without
    waiting for the others when it raises (a failed or interrupted rank must not wait at a barrier the
    others may never reach). The frames of the exception's traceback are cleared first, so objects
    they held (a DistributedDataParallel wrapper) are freed before the group goes."""
    ranks = Ranks.from_env(device_type, timeout_s)
    try:
        yield ranks
    except BaseException as exc:
        traceback.clear_frames(exc.__traceback__)
        ranks.close(drain=False)
        raise
    ranks.close()
