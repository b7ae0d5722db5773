"""Slurm job arrays for one plan: ``robench slurm``.

Writes four files into a folder and, with ``--submit``, submits them:

``train.sbatch``
    an array of ``tasks`` jobs (at most ``max_concurrent`` at once, ``--array=0-(N-1)%K``); task i is
    one ``torchrun`` job on one node with ``gpus`` GPUs that trains the model families of shard i/N
    (``robench run ... --train-only --shard i/N``) into the shared model cache;
``eval.sbatch``
    the same array shape, started when every training task has succeeded (``afterok``); task i
    evaluates the cells of shard i/N into its own store ``shards/eval-i.sqlite``;
``merge.sbatch``
    one job after the evaluation: ``robench store merge`` of every shard into the results store;
``submit.sh``
    ``sbatch --parsable`` of the three, chained by ``--dependency=afterok``.

Each task writes its own SQLite store (one file per task on the shared filesystem, never shared
between hosts), so nothing needs a database server; merging is by content key and idempotent.
Re-submitting finds the models in the cache and each task's cells in its own shard, so finished
work is skipped (keep ``tasks`` unchanged: the split is by content id modulo N). The model cache
folder must be on a filesystem every node sees.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from robench.errors import RobenchError
from robench.files import atomic_write


@dataclass
class SlurmJob:
    """What ``robench slurm`` writes: the plan to run and the shape of the arrays.

    Attributes:
        protocols: protocol names or paths, as ``robench run`` takes them.
        options: further ``robench run`` options (``--profile``, ``--set``, ``--amp``, ...), verbatim.
        store: the results store every shard is merged into (a file path or a database URL).
        cache: the model cache folder (shared by all nodes).
        folder: where the scripts, the shard stores (``shards/``) and the logs (``logs/``) go.
        tasks: array tasks per phase (N in ``--shard i/N``).
        gpus: GPUs per task: ``torchrun --nproc_per_node``, ``--gres=gpu:G``.
        max_concurrent: most tasks of an array running at once (``%K``).
        partition, time, cpus_per_task, mem: the usual ``#SBATCH`` settings (None: the cluster's default).
        sbatch: further ``#SBATCH`` options, verbatim (e.g. ``--account=abc``).
        workdir: the folder the jobs run in (the repository or the project folder).
        setup: shell lines run before robench in every job (e.g. ``source .venv/bin/activate``).
    """

    protocols: list[str]
    folder: Path
    store: str
    cache: Path
    workdir: Path
    options: list[str] = field(default_factory=list)
    tasks: int = 4
    gpus: int = 1
    max_concurrent: int | None = None
    partition: str | None = None
    time: str | None = None
    cpus_per_task: int | None = None
    mem: str | None = None
    sbatch: list[str] = field(default_factory=list)
    setup: list[str] = field(default_factory=list)

    def check(self) -> None:
        for name, value, least in (("--tasks", self.tasks, 1), ("--gpus", self.gpus, 1),
                                   ("--max-concurrent", self.max_concurrent, 1), ("--cpus", self.cpus_per_task, 1)):
            if value is not None and value < least:
                raise RobenchError(f"slurm {name} {value}: allowed: an integer >= {least}")
        if any(c in str(self.folder) for c in '"$`\\\n'):
            raise RobenchError(f"slurm --out {self.folder}: allowed: a folder name without \", $, ` or \\")
        for line in self.sbatch:
            if not line.startswith("--") or "\n" in line:
                raise RobenchError(f"slurm --sbatch {line!r}: allowed: one option starting with --, "
                                   "e.g. --account=abc")

    # -- the scripts -----------------------------------------------------------------------------
    def _header(self, name: str, array: bool) -> list[str]:
        logs = self.folder / "logs"
        lines = ["#!/bin/bash", f"#SBATCH --job-name=robench-{name}",
                 f"#SBATCH --output={logs}/{name}-%A_%a.out" if array else f"#SBATCH --output={logs}/{name}-%j.out"]
        if array:
            cap = f"%{self.max_concurrent}" if self.max_concurrent else ""
            lines += [f"#SBATCH --array=0-{self.tasks - 1}{cap}", "#SBATCH --nodes=1", "#SBATCH --ntasks=1",
                      f"#SBATCH --gres=gpu:{self.gpus}"]
        for key, value in (("partition", self.partition), ("time", self.time), ("cpus-per-task", self.cpus_per_task),
                           ("mem", self.mem)):
            if value is not None:
                lines.append(f"#SBATCH --{key}={value}")
        lines += [f"#SBATCH {s}" for s in self.sbatch]
        lines += ["set -euo pipefail", f"cd {shlex.quote(str(self.workdir))}", *self.setup]
        return lines

    def run_command(self, phase: str) -> str:
        """The torchrun line of one array task of ``phase`` ("train" or "eval"): ``$SLURM_ARRAY_TASK_ID``
        picks its shard and its store ``shards/<phase>-<task>.sqlite``."""
        args = ["torchrun", "--standalone", f"--nproc_per_node={self.gpus}", "-m", "robench", "run",
                *self.protocols, *self.options, "--cache", str(self.cache), "--progress", "plain"]
        if phase == "train":
            args.append("--train-only")
        store = f"{self.folder}/shards/{phase}-$SLURM_ARRAY_TASK_ID.sqlite"  # in double quotes: the variable expands
        return (" ".join(shlex.quote(a) for a in args)
                + f' --store "{store}" --shard "$SLURM_ARRAY_TASK_ID/{self.tasks}"')

    def scripts(self) -> dict[str, str]:
        """File name -> content of the four files."""
        shards = self.folder / "shards"
        train = [*self._header("train", True), self.run_command("train")]
        evaluate = [*self._header("eval", True), self.run_command("eval")]
        merge = [*self._header("merge", False),
                 f"robench store merge {shlex.quote(str(shards))}/*.sqlite --into {shlex.quote(self.store)}"]
        here = shlex.quote(str(self.folder))
        submit = ["#!/bin/bash", "# submits the plan: training array, then evaluation array, then the merge",
                  "set -euo pipefail", f"mkdir -p {here}/logs {here}/shards",
                  f"train=$(sbatch --parsable {here}/train.sbatch)",
                  f"evaluate=$(sbatch --parsable --dependency=afterok:${{train%%;*}} {here}/eval.sbatch)",
                  f"merge=$(sbatch --parsable --dependency=afterok:${{evaluate%%;*}} {here}/merge.sbatch)",
                  'echo "submitted: training $train, evaluation $evaluate, merge $merge"']
        return {"train.sbatch": "\n".join(train) + "\n", "eval.sbatch": "\n".join(evaluate) + "\n",
                "merge.sbatch": "\n".join(merge) + "\n", "submit.sh": "\n".join(submit) + "\n"}

    def write(self) -> list[Path]:
        """Write the scripts (executable) and the ``logs`` and ``shards`` folders; returns the script paths."""
        self.check()
        try:
            for sub in ("logs", "shards"):
                (self.folder / sub).mkdir(parents=True, exist_ok=True)
            paths = []
            for name, text in self.scripts().items():
                path = self.folder / name
                atomic_write(path, text)
                path.chmod(0o755)
                paths.append(path)
        except OSError as exc:
            raise RobenchError(f"slurm: cannot write the job scripts into {self.folder}: {exc.strerror or exc}; "
                               "pass --out a folder that can be written") from None
        return paths
