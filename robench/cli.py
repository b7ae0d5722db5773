"""The ``robench`` command line.

::

    robench run PROTOCOL... [--profile NAME] [--set KEY=VALUE ...] [--store PATH] [--dry-run]
    robench report [--format markdown|html|latex|csv] [--protocol NAME] [--out PATH]
    robench list defenses|attacks|datasets|backbones|protocols
    robench validate PROTOCOL... [--profile NAME] [--set KEY=VALUE ...]
    robench prepare ntu60|ntu120|imigue|pyskl|manifest --out DIR [--root DIR ...]
    robench store merge STORE... --into STORE
    robench leaderboard add ENTRY --track NAME [--reported-only] [--root leaderboard]
    robench leaderboard verify RECORD
    robench leaderboard challenge RECORD --adversarial FILE
    robench leaderboard transfer --track NAME
    robench leaderboard render --format html|markdown|latex|csv|bibtex [--track NAME] [--out PATH]
    robench leaderboard get TRACK ENTRY [--out FILE]
    robench leaderboard site --out DIR [--root leaderboard]

The results store is ``--store``, else ``$ROBENCH_STORE``, else ``results/robench.sqlite``; trained
models and generated data are cached under ``--cache``, else ``$ROBENCH_CACHE``, else a ``cache``
folder beside the store. Errors in the input exit with status 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from robench import __version__
from robench.errors import RobenchError
from robench.locations import DEFAULT_STORE

if TYPE_CHECKING:  # the commands import these where they use them, so that the command line starts fast
    import torch

    from robench.cluster.shard import Shard
    from robench.distributed import Ranks
    from robench.plan import Cell, ModelJob
    from robench.protocol import Protocol
    from robench.runner import PlanStatus
    from robench.runtime import RuntimeOptions
    from robench.store import ResultsStore
    from robench.train.cache import ModelCache


LIST_KINDS = ("defenses", "attacks", "datasets", "backbones", "corruptions", "protocols", "tracks")

# wide tables when writing to a file or pipe; the terminal's width otherwise
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)  # never wrap an error line


def _store_path(args: argparse.Namespace) -> Path | str:
    """``--store``: a file path (SQLite), or a database URL kept as it is (``postgresql://...``)."""
    from robench.locations import store_location

    return store_location(args.store)


def _cache_dir(args: argparse.Namespace) -> Path:
    """``--cache``, else ``$ROBENCH_CACHE``, else ``cache`` beside the store file (``results/cache`` for a URL)."""
    from robench.locations import default_cache

    explicit: str | None = args.cache if "cache" in vars(args) else None
    return Path(explicit) if explicit else default_cache(_store_path(args))


def _load_all(args: argparse.Namespace) -> list[Protocol]:
    from robench.protocol import load_protocol

    return [load_protocol(p, args.set or [], args.profile) for p in args.protocol]


def cmd_validate(args: argparse.Namespace) -> int:
    from robench.plan import make_plan

    for protocol in _load_all(args):
        plan = make_plan(protocol)
        out.print(f"[green]ok[/]: {protocol.path}: protocol '{protocol.name}' with "
                  f"{len(protocol.variants)} dataset(s), {len(plan.models)} model(s) to train, "
                  f"{len(plan.cells)} cell(s), {len(protocol.tables)} table(s), "
                  f"{len(protocol.figures)} figure(s), {len(protocol.claims)} claim(s)")
    return 0


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """torch's CPU thread count set to ``count`` inside the block (unchanged for None), the caller's count restored
    after: ``main`` also runs inside other programs (the tests, notebooks), whose later work must not inherit it."""
    if not count:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cmd_run(args: argparse.Namespace) -> int:
    from robench.cluster.shard import Shard
    from robench.distributed import joined
    from robench.plan import make_plan
    from robench.runner import plan_status
    from robench.runtime import RuntimeOptions, select_device
    from robench.store import ResultsStore
    from robench.store.engines import display
    from robench.train.cache import ModelCache

    for flag, value, least in (("--threads", args.threads, 1), ("--workers", args.workers, 0)):
        if value is not None and value < least:
            raise RobenchError(f"run {flag} {value}: allowed: an integer >= {least}")
    if _cache_dir(args).exists() and not _cache_dir(args).is_dir():
        raise RobenchError(f"model cache {_cache_dir(args)} is a file, not a folder; pass --cache a folder")
    shard = Shard.parse(args.shard) if args.shard is not None else None
    protocols = _load_all(args)
    device = select_device(args.device)
    with torch_threads(args.threads), joined(device.type) as ranks:  # several ranks under torchrun; left cleanly
        device = ranks.device(device)
        runtime = RuntimeOptions.for_device(device, args.amp, args.channels_last, args.workers, args.tf32)
        # only rank 0 opens the store: ranks creating one SQLite file together would find it locked
        store = ResultsStore(_store_path(args)) if ranks.main else None
        cache = ModelCache(_cache_dir(args))
        if args.dry_run:
            if store is not None:
                _print_plans([plan_status(make_plan(p, runtime.precision, ranks.world), store, cache)
                              for p in protocols], store)
            return 0
        _run_protocols(args, protocols, store, cache, device, runtime, ranks, shard)
    if ranks.main:
        shown = display(args.store) if args.store else ""
        out.print("Render with: robench report --format markdown" + (f" --store {escape(shown)}" if shown else "")
                  + (" (password hidden)" if shown != (args.store or "") else ""))
    return 0


def _run_protocols(args: argparse.Namespace, protocols: list[Protocol], store: ResultsStore | None, cache: ModelCache,
                   device: torch.device, runtime: RuntimeOptions, ranks: Ranks, shard: Shard | None) -> None:
    """Run each protocol in turn (on this rank; only rank 0 prints and writes)."""
    from robench.progress import Progress
    from robench.runner import Runner

    with Progress(args.progress if ranks.main else "quiet") as progress:
        runner = Runner(store, cache, device, progress, _cache_dir(args) / "data", runtime, ranks)
        for protocol in protocols:
            where = (f"{device}" + (f", rank {ranks.rank} of {ranks.world}" if ranks.parallel else "")
                     + (f", task {shard.index} of {shard.count}" if shard else "")
                     + (", training only" if args.train_only else ""))
            if ranks.main:
                progress.log(f"robench {__version__}: protocol '{protocol.name}' on {where}; store "
                             f"{runner.store.location}")
            summary = runner.run(protocol, args.set or [], shard, args.train_only)
            if not ranks.main:
                continue
            out.print(f"[green]done[/] {protocol.name}: {summary.cells_written} cell(s) written, "
                      f"{summary.cells_skipped} already stored; {len(summary.models_trained)} model(s) trained, "
                      f"{len(summary.models_loaded)} loaded from cache; {summary.seconds:.1f}s."
                      + (f" {summary.cells_left} cell(s) were being computed by other runs of this plan."
                         if summary.cells_left else ""))


def _print_plans(statuses: list[PlanStatus], store: ResultsStore) -> None:
    """The union of several plans: each model and cell once, with the protocols that need it."""
    users: dict[str, list[str]] = {}
    jobs: dict[str, ModelJob] = {}
    cells: dict[str, Cell] = {}
    needed: set[str] = set()
    cached: set[str] = set()
    stored: set[str] = set()
    for st in statuses:
        for mid, job in st.plan.models.items():
            jobs.setdefault(mid, job)
            users.setdefault(mid, []).append(st.plan.protocol.name)
        cells.update(st.plan.cells)
        needed |= {j.id for j in st.needed}
        cached |= st.cached
        stored |= st.stored
    title = "plan of " + ", ".join(f"'{st.plan.protocol.name}'" for st in statuses) + f" (store {store.location})"
    table = Table(title=title)
    for col in ("dataset", "rows (defense ids)", "seed", "model id", "model", "cells stored", "cells to run",
                "protocols"):
        table.add_column(col)
    for mid, job in jobs.items():
        mine = [c for c in cells.values() if c.model_id == mid]
        pending = [c for c in mine if c.id not in stored]
        state = "cached" if mid in cached else ("train" if mid in needed else "not needed")
        if job.base:
            state += f" (from {job.base[:8]})"
        table.add_row(job.variant, ", ".join(job.defense_ids) or f"({job.defense.type}: base model)", str(job.seed),
                      mid[:12], state, str(len(mine) - len(pending)), str(len(pending)), ", ".join(users[mid]))
    out.print(table)
    total_models = sum(len(st.plan.models) for st in statuses)
    total_cells = sum(len(st.plan.cells) for st in statuses)
    out.print(f"{len(jobs)} model(s): {len([m for m in jobs if m in needed and m not in cached])} to train, "
              f"{len([m for m in jobs if m in cached])} cached; "
              f"{len(cells)} cell(s): {len([c for c in cells if c in stored])} in the store, "
              f"{len([c for c in cells if c not in stored])} to evaluate")
    if len(statuses) > 1:
        out.print(f"shared work: the {len(statuses)} protocols list {total_models} models and {total_cells} cells; "
                  f"{len(jobs)} models and {len(cells)} cells are distinct")


def cmd_report(args: argparse.Namespace) -> int:
    from robench.report.output import render_report

    target = Path(args.out) if args.out else None
    done = render_report(_store_path(args), args.format, list(args.protocol or []), target)
    if target is None:
        sys.stdout.write(done.text)
    else:
        err.print(f"wrote {target}" + (f" and {done.figure_files} figure files in {done.figure_dir}"
                                       if done.figure_files else ""))
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from robench.data.prepare import Settings, prepare

    settings = Settings(args.frames_rgb, args.resolution, args.frames_skeleton, args.crop, shard_size=args.shard_size)
    workers = args.workers or os.cpu_count() or 1
    with Progress(TextColumn(f"prepare {args.format}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("eta"), TimeRemainingColumn(), console=err, disable=not err.is_terminal) as bar:
        task = bar.add_task("prepare", total=None)
        summary = prepare(args.format, args.out, settings, workers=workers, root=args.root,
                          missing_skeletons=args.missing_skeletons, pickle=args.pickle, videos=args.videos,
                          dataset=args.dataset, manifest=args.manifest, label_base=args.label_base, limit=args.limit,
                          progress=lambda done, total: bar.update(task, completed=done, total=total))
    named = f"; skipped clips are named in {Path(args.out) / 'prepare-skipped.csv'}" if summary.skipped_clips else ""
    out.print(f"[green]prepared[/] {escape(str(args.out))}: {escape(summary.line())}; {summary.seconds:.1f}s with "
              f"{workers} worker(s){escape(named)}")
    for clip, reason in summary.failed[:20]:
        out.print(f"  failed: {escape(clip)}: {escape(reason)}")
    if len(summary.failed) > 20:
        out.print(f"  ... {len(summary.failed) - 20} more in {Path(args.out) / 'prepare-failures.csv'}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    if args.kind == "protocols":
        from robench.protocol import bundled_protocols

        table = Table(title="protocols (bundled; run by name or path)")
        table.add_column("name")
        table.add_column("description")
        import yaml

        for name, path in bundled_protocols().items():
            try:
                desc = str((yaml.safe_load(path.read_text()) or {}).get("description", "")).strip().splitlines()
            except yaml.YAMLError:
                desc = ["(unreadable YAML)"]
            table.add_row(name, desc[0] if desc else "")
        out.print(table)
        return 0
    if args.kind == "tracks":
        from robench.leaderboard.tracks import bundled_tracks, load_track

        table = Table(title="leaderboard tracks (bundled; name them with --track)")
        table.add_column("name")
        table.add_column("title")
        for name in bundled_tracks():
            table.add_row(name, load_track(name).title)
        out.print(table)
        return 0
    from robench.registry import REGISTRIES, load_builtins

    load_builtins()
    registry = REGISTRIES[args.kind]
    table = Table(title=args.kind)
    table.add_column("name")
    table.add_column("description")
    table.add_column("source")
    for name in registry.names():
        entry = registry.entry(name)
        table.add_row(name, entry.description, entry.source)
    out.print(table)
    return 0


def cmd_slurm(args: argparse.Namespace) -> int:
    import shutil
    import subprocess

    from robench.cluster.slurm import SlurmJob
    from robench.plan import make_plan

    plans = [make_plan(p) for p in _load_all(args)]  # a bad protocol fails here, not on the cluster
    options = [*(["--profile", args.profile] if args.profile else []),
               *(a for value in args.set or [] for a in ("--set", value)),
               *(["--amp", args.amp] if args.amp else []), *(["--tf32", args.tf32] if args.tf32 else [])]
    folder = Path(args.out).resolve()
    store = _store_path(args)
    job = SlurmJob(list(args.protocol), folder, str(store.resolve() if isinstance(store, Path) else store),
                   _cache_dir(args).resolve(), Path.cwd(),
                   options, args.tasks, args.gpus, args.max_concurrent, args.partition, args.time, args.cpus,
                   args.mem, list(args.sbatch), list(args.setup))
    paths = job.write()
    models = len({m for plan in plans for m in plan.models})
    cells = len({c for plan in plans for c in plan.cells})
    out.print(f"[green]wrote[/] {', '.join(escape(str(p)) for p in paths)}: {models} model(s) and {cells} cell(s) "
              f"in {args.tasks} shard(s) of {args.gpus} GPU(s) each")
    if not args.submit:
        out.print(f"Submit with: bash {escape(str(folder / 'submit.sh'))}")
        return 0
    if shutil.which("sbatch") is None:
        raise RobenchError("slurm --submit: sbatch is not on PATH (run on a Slurm login node, or submit later with "
                           f"bash {folder / 'submit.sh'})")
    done = subprocess.run(["bash", str(folder / "submit.sh")], capture_output=True, text=True)
    if done.returncode:
        raise RobenchError(f"slurm --submit: {folder / 'submit.sh'} failed: "
                           f"{done.stderr.strip() or done.stdout.strip()}")
    out.print(done.stdout.strip())
    return 0


def cmd_store(args: argparse.Namespace) -> int:
    from robench.locations import is_url
    from robench.store import ResultsStore
    from robench.store.merge import merge_into

    missing = [p for p in args.sources if not is_url(p) and not Path(p).is_file()]
    if missing:
        raise RobenchError(f"store merge: {', '.join(missing)} does not exist; give existing results stores")
    sources = [ResultsStore(p, read_only=True) for p in args.sources]
    target = ResultsStore(args.into)
    summary = merge_into(target, sources)
    out.print(f"[green]merged[/] into {escape(target.location)}: {escape(summary.line())}")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from robench.leaderboard import commands
    from robench.runtime import select_device

    if args.action == "get":
        from robench.zoo.get import get

        fetched = get(args.track, args.entry, _cache_dir(args), Path(args.out) if args.out else None, args.zoo)
        for line in fetched.lines():
            out.print(escape(line))
        return 0
    if args.action == "challenge":
        from robench.leaderboard.challenge import challenge

        outcome = challenge(args.record, args.adversarial, _cache_dir(args), select_device(args.device), args.track,
                            args.progress)
        for line in outcome.lines():
            out.print(escape(line), highlight=False)
        return 0 if outcome.accepted else 1
    root = Path(args.root)
    if args.action == "transfer":
        for path in commands.transfer(root, args.track, _cache_dir(args), select_device(args.device), args.scenario,
                                      args.progress, lambda line: err.print(escape(line), highlight=False)):
            err.print(f"wrote {escape(str(path))}")
        return 0
    if args.action == "render":
        for path in commands.render_tracks(root, args.format, args.track, Path(args.out) if args.out else None):
            err.print(f"wrote {path}")
        return 0
    if args.action == "site":
        site = commands.site(root, Path(args.out), args.track)
        out.print(f"[green]wrote[/] {escape(site.summary())}; open {escape(str(Path(args.out) / 'index.html'))}",
                  highlight=False)
        return 0
    where = commands.Where(root, _store_path(args), _cache_dir(args), select_device(args.device), args.progress)
    if args.action == "add":
        path = commands.add(args.entry, args.track, where, args.reported_only)
        out.print(f"[green]wrote[/] {escape(str(path))}; render with: robench leaderboard render --format html "
                  f"--track {escape(args.track)}")
        return 0
    result = commands.verify(args.record, where, args.track, stamp=not args.no_stamp)
    if result.match:
        out.print(f"[green]verified[/] {escape(str(result.record))}: every clip of every cell evaluated again matches"
                  + ("" if args.no_stamp else "; the record says so (verification)"))
        return 0
    out.print(f"[red]mismatch[/] {escape(str(result.record))}: {len(result.differing)} cell(s) differ: "
              + escape("; ".join(result.differing)))
    return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robench", description="Adversarial-robustness benchmark for RGB + skeleton "
                                     "action recognition.")
    parser.add_argument("--version", action="version", version=f"robench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def protocol_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("protocol", nargs="+",
                       help="protocol YAML file(s), or names of bundled protocols (robench list protocols)")
        p.add_argument("--profile", help="apply the protocol's profile NAME, e.g. synthetic (CPU-sized stand-in data)")
        p.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a protocol key, e.g. --set training.epochs=2 (repeatable)")

    def store_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--store", help=f"results store (default $ROBENCH_STORE or {DEFAULT_STORE})")

    p = sub.add_parser("run", help="train what is needed, attack it, write results to the store")
    protocol_args(p)
    store_args(p)
    p.add_argument("--cache", help="model and data cache folder (default $ROBENCH_CACHE or <store folder>/cache)")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N, mps; or $ROBENCH_DEVICE")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--amp", choices=("auto", "on", "off"), default="auto",
                   help="bfloat16 mixed precision (auto: on with CUDA, off on the CPU)")
    p.add_argument("--tf32", choices=("auto", "on", "off"), default="auto",
                   help="TF32 tensor cores for fp32 matmuls and convolutions (auto: on with CUDA; part of result ids)")
    p.add_argument("--channels-last", choices=("auto", "on", "off"), default="auto",
                   help="channels-last memory format for I3D (auto: on; faster on CUDA and on the CPU)")
    p.add_argument("--workers", type=int, help="data-loading worker processes (default: 8 with CUDA, 0 on the CPU)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (models, cells, what is stored) and stop")
    p.add_argument("--progress", choices=("auto", "rich", "plain", "quiet"), default="auto",
                   help="progress display (default: bars on a terminal, lines otherwise)")
    p.add_argument("--shard", metavar="I/N", help="run task I of N: its model families and its cells (cluster arrays)")
    p.add_argument("--train-only", action="store_true", help="train (or find cached) the models, evaluate nothing")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="render the tables of the runs in the store")
    store_args(p)
    p.add_argument("--format", choices=("markdown", "html", "latex", "csv"), default="markdown")
    p.add_argument("--protocol", action="append", help="only this protocol (repeatable; default: all in the store)")
    p.add_argument("--out", help="write to this file instead of standard output (figures go to figures/ beside it)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("prepare", help="decode a real dataset once into a prepared folder (memory-mapped arrays)")
    p.add_argument("format", choices=("ntu60", "ntu120", "imigue", "pyskl", "manifest"))
    p.add_argument("--out", required=True, help="the prepared folder to write (resumed if it exists)")
    p.add_argument("--root", help="folder of raw files (ntu60, ntu120, imigue)")
    p.add_argument("--missing-skeletons", help="NTU's list of samples with missing skeletons (skipped)")
    p.add_argument("--pickle", help="PYSKL/MMAction2 skeleton pickle (pyskl)")
    p.add_argument("--videos", help="folder of videos named after the pickle's frame_dir (pyskl)")
    p.add_argument("--dataset", help="what a pyskl pickle holds: ntu60, ntu120 or another name (default manifest)")
    p.add_argument("--manifest", help="CSV with clip,label,split,video,skeleton columns (manifest)")
    p.add_argument("--frames-rgb", type=int, default=16, help="RGB frames per clip (default 16)")
    p.add_argument("--resolution", type=int, default=224, help="RGB frame side in pixels (default 224)")
    p.add_argument("--frames-skeleton", type=int, default=32, help="skeleton frames per clip (default 32)")
    p.add_argument("--crop", choices=("person", "center", "full"), default="person",
                   help="square crop: around the people (default), centred, or the whole frame squeezed")
    p.add_argument("--shard-size", type=int, default=256, help="clips per RGB shard file")
    p.add_argument("--label-base", type=int, default=0, help="iMiGUE: 1 if gesture ids are 1-based")
    p.add_argument("--workers", type=int, help="parallel workers (default: all cores)")
    p.add_argument("--limit", type=int, help="prepare only the first N clips (a quick try)")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("list", help="list registered components or bundled protocols")
    p.add_argument("kind", choices=LIST_KINDS)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("slurm", help="write (and submit) Slurm job arrays that run a plan: training, evaluation, merge")
    protocol_args(p)
    store_args(p)
    p.add_argument("--cache", help="model cache folder on a filesystem every node sees (default as for run)")
    p.add_argument("--out", default="slurm", help="folder for the scripts, shard stores and logs (default: slurm)")
    p.add_argument("--tasks", type=int, default=4, help="array tasks per phase (the plan is split into N shards)")
    p.add_argument("--gpus", type=int, default=1, help="GPUs per task (torchrun --nproc_per_node)")
    p.add_argument("--max-concurrent", type=int, help="most tasks of an array running at once")
    p.add_argument("--partition")
    p.add_argument("--time", help="wall-time limit per task, e.g. 24:00:00")
    p.add_argument("--cpus", type=int, help="CPUs per task")
    p.add_argument("--mem", help="memory per task, e.g. 64G")
    p.add_argument("--sbatch", action="append", default=[], metavar="OPTION",
                   help="another #SBATCH option, e.g. --sbatch=--account=abc (repeatable)")
    p.add_argument("--setup", action="append", default=[], metavar="LINE",
                   help="a shell line run before robench in every job, e.g. 'source .venv/bin/activate'")
    p.add_argument("--amp", choices=("auto", "on", "off"), help="passed to robench run")
    p.add_argument("--tf32", choices=("auto", "on", "off"), help="passed to robench run")
    p.add_argument("--submit", action="store_true", help="submit with sbatch after writing")
    p.set_defaults(func=cmd_slurm)

    p = sub.add_parser("store", help="operations on results stores (merge shards)")
    ssub = p.add_subparsers(dest="action", required=True)
    q = ssub.add_parser("merge", help="copy the cells, models and runs of stores into one, by content key")
    q.add_argument("sources", nargs="+", help="results stores to merge (read only)")
    q.add_argument("--into", required=True, help="the store to merge into (created if missing)")
    p.set_defaults(func=cmd_store)

    p = sub.add_parser("leaderboard", help="evaluate entries on a track, verify records, render the leaderboard")
    lsub = p.add_subparsers(dest="action", required=True)

    def where_args(q: argparse.ArgumentParser) -> None:
        store_args(q)
        q.add_argument("--cache", help="model and data cache folder (default $ROBENCH_CACHE or <store folder>/cache)")
        q.add_argument("--device", help="auto (default), cpu, cuda, cuda:N, mps; or $ROBENCH_DEVICE")
        q.add_argument("--root", default="leaderboard", help="the leaderboard folder (default leaderboard)")
        q.add_argument("--progress", choices=("auto", "rich", "plain", "quiet"), default="auto")

    q = lsub.add_parser("add", help="evaluate an entry on a track and write its record")
    q.add_argument("entry", help="the entry file (YAML or JSON)")
    q.add_argument("--track", required=True, help="a bundled track (robench list tracks) or a track file")
    q.add_argument("--reported-only", action="store_true",
                   help="write an unverified record of the entry's reported numbers, evaluating nothing")
    where_args(q)
    q = lsub.add_parser("verify", help="re-evaluate a record's entry and compare the per-clip results")
    q.add_argument("record", help="a record file, leaderboard/<track>/<entry>.json")
    q.add_argument("--track", help="a track file, for a track that is not bundled (default: the record's track)")
    q.add_argument("--no-stamp", action="store_true", help="leave the record as it is (by default a record that "
                   "verifies says when and with which robench)")
    where_args(q)
    q = lsub.add_parser("challenge", help="check a file of adversarial inputs for an entry's clips against the "
                        "track's threat model; record the clips it breaks (exit 0), or say why nothing changed (1)")
    q.add_argument("record", help="the entry's record, leaderboard/<track>/<entry>.json")
    q.add_argument("--adversarial", required=True, metavar="FILE",
                   help="safetensors: clip_ids int64 [N] (positions in the track's evaluated clips), rgb and/or "
                   "skeleton float32 [N, ...]; metadata scenario (R, S or RS), author, attack")
    q.add_argument("--track", help="a track file, for a track that is not bundled (default: the record's track)")
    store_args(q)
    q.add_argument("--cache", help="model and data cache folder (default $ROBENCH_CACHE or <store folder>/cache)")
    q.add_argument("--device", help="auto (default), cpu, cuda, cuda:N, mps; or $ROBENCH_DEVICE")
    q.add_argument("--progress", choices=("auto", "rich", "plain", "quiet"), default="auto")
    q = lsub.add_parser("transfer", help="attack each entry's model with the track's PGD (and APGD-CE when it "
                        "runs AutoAttack) and classify the adversarial clips with every other entry's; write "
                        "<root>/<track>/transfer.json (the board counts them in the worst case)")
    q.add_argument("--track", required=True, help="a bundled track, or a track file")
    q.add_argument("--scenario", action="append", choices=("R", "S", "RS"),
                   help="only this attacked scenario (repeatable; default: every one of the track)")
    where_args(q)
    q = lsub.add_parser("render", help="render a track's records (one file per track)")
    q.add_argument("--format", choices=("html", "markdown", "latex", "csv", "bibtex"), default="html")
    q.add_argument("--track", help="only this track (default: every track with records)")
    q.add_argument("--out", help="write here instead of <root>/<track>/<default file>")
    q.add_argument("--root", default="leaderboard", help="the leaderboard folder (default leaderboard)")
    q = lsub.add_parser("get", help="fetch and verify an entry's weights from the model zoo; say how to load them")
    q.add_argument("track", help="a track with zoo weights (synthetic ships them)")
    q.add_argument("entry", help="the entry id, e.g. amr")
    q.add_argument("--out", help="also copy the verified weights file here")
    q.add_argument("--zoo", help="a zoo manifest file (default: the one robench ships for the track)")
    store_args(q)
    q.add_argument("--cache", help="where downloads are kept (default $ROBENCH_CACHE or <store folder>/cache)")
    q = lsub.add_parser("site", help="build a static site of every track: an index, each track's board, a page per "
                        "entry with its weights (works from file:// and any static host)")
    q.add_argument("--out", required=True, help="the site's folder (created if missing; files in it are replaced)")
    q.add_argument("--root", default="leaderboard", help="the leaderboard folder (default leaderboard)")
    q.add_argument("--track", action="append", help="only this track, a bundled name or a track file (repeatable; "
                   "default: every bundled track with records)")
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser("validate", help="check a protocol (keys, types, components, plan) without running it")
    protocol_args(p)
    p.set_defaults(func=cmd_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    from robench.interrupt import Interrupted, exit_status, pending, stop_on_signals

    args = build_parser().parse_args(argv)
    # commands with safe points (training steps, attack batches, cells) stop at the next one; others at once
    deferred = args.command == "run" or (args.command == "leaderboard" and args.action in ("add", "verify"))
    try:
        with stop_on_signals(deferred):
            status = int(args.func(args) or 0)
            if pending() is not None:
                err.print("robench: the work finished before the stop took effect")
            return status
    except RobenchError as exc:
        err.print(f"[bold red]robench: error:[/] {escape(str(exc))}", markup=True, highlight=False)
        return 2
    except KeyboardInterrupt as exc:
        by = exc.name if isinstance(exc, Interrupted) else "Ctrl-C"
        err.print(f"robench: interrupted ({by}); finished cells are stored, run the same command again to resume")
        return exit_status(exc)


if __name__ == "__main__":
    sys.exit(main())
