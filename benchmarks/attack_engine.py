"""What an attacked cell costs against its floor, with and without the refilled active batch.

The floor of an attack of k gradient steps is k forward+backward passes of every evaluated clip in
full batches, measured here by one timed pass over the evaluation set just before and one just after
each cell (their mean: the machine's speed drifts). For each model of the quickstart (the undefended
one and AT with XRS; trained by robench, or loaded from the cache) and both modalities attacked at
eps 8/255, this times a whole cell:

* final-iterate PGD-20 (``early_stop: false``: every clip takes every step);
* early-stop PGD-20, the evaluation default, through the engine's refilled batch and, for
  comparison, batch by batch as before the engine (fooled clips leave, the batch shrinks);
* APGD-100 (``early_stop: false``), against its own floor of 101 gradient passes.

Ratios are cell time / floor, measured in the same process one after the other (the machine is
noisy; compare ratios, not seconds). ``--threads`` defaults to torch's.

    python benchmarks/attack_engine.py [--protocol quickstart] [--cache results/cache]
                                       [--clips 160] [--batch 32]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from timing import recorded

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="quickstart")
    parser.add_argument("--cache", default=str(REPO / "results" / "cache"))
    parser.add_argument("--clips", type=int, default=160, help="evaluated clips (max_samples)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--rows", default="final,refilled,shrinking,apgd",
                        help="which cells to time (comma-separated): final, refilled, shrinking, apgd")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from robench.plan import make_plan
    from robench.progress import Progress
    from robench.protocol import load_protocol
    from robench.runner import Runner
    from robench.store import ResultsStore
    from robench.train.cache import ModelCache

    protocol = load_protocol(args.protocol)
    device = torch.device("cpu")
    progress = Progress("quiet")
    with_store = ResultsStore(Path(args.cache).parent / "attack_engine_bench.sqlite")
    runner = Runner(with_store, ModelCache(args.cache), device, progress, REPO / "results" / "data")
    plan = make_plan(protocol, runner.runtime.precision)
    threat = protocol.variants[next(iter(protocol.variants))].threat
    print(f"protocol {protocol.name}; {args.clips} clips, batch {args.batch}, {torch.get_num_threads()} threads; "
          "both modalities, eps 8/255")
    print(f"{'model':<14} {'attack':<34} {'cell s':>8} {'floor s':>8} {'ratio':>6} {'acc %':>6}")
    for job in plan.models.values():
        if job.defense.type in ("none", "at"):
            bench_model(job, plan, runner, protocol, threat, device, progress, args)


def bench_model(job, plan, runner, protocol, threat, device, progress, args) -> None:  # type: ignore[no-untyped-def]
    """Time the cells of one model (see the module docstring)."""
    from robench.attacks.engine import make_rows
    from robench.data.base import batch_indices, to_model_inputs
    from robench.evaluation import evaluate_cell, evaluation_indices
    from robench.hashing import derive_seed
    from robench.registry import ATTACKS
    from robench.runner import RunSummary

    trained = runner._model(plan, job, RunSummary(protocol.name))
    model = trained.model.eval()
    split = runner.provider(plan, job.variant).split("test")
    base = next(c for c in plan.cells.values() if c.model_id == job.id and c.scenario == "RS")
    evaluation = dataclasses.replace(base.evaluation, max_samples=args.clips, batch_size=args.batch)
    indices = evaluation_indices(split, evaluation)
    batches = [split.get_batch(b) for b in batch_indices(len(indices), args.batch, indices=indices)]

    def one_pass() -> float:
        t0 = time.perf_counter()
        for b in batches:
            inputs = {m: t.requires_grad_(True) for m, t in to_model_inputs(b, device, model.modalities).items()}
            loss = torch.nn.functional.cross_entropy(model(inputs), b["label"], reduction="sum")
            torch.autograd.grad(loss, list(inputs.values()))
        return time.perf_counter() - t0

    one_pass()  # warm-up

    def cell(attack: str, **params: object) -> tuple[float, float]:
        kwargs = threat.attack_kwargs(dataclasses.replace(protocol.variants[job.variant].attacks["pgd"].attack,
                                                          type=attack, params=dict(params)),
                                      ["rgb", "skeleton"], 8 / 255)
        c = dataclasses.replace(base, attack_type=attack, attack_params=kwargs, evaluation=evaluation)
        r = evaluate_cell(model, split, c, device, progress, runtime=runner.runtime)
        return r.seconds, 100 * r.accuracy

    def shrinking(steps: int) -> tuple[float, float]:
        """Early-stop PGD batch by batch (the batch shrinks as clips are fooled): the pre-engine schedule."""
        atk = ATTACKS.build("pgd", **threat.attack_kwargs(
            protocol.variants[job.variant].attacks["pgd"].attack, ["rgb", "skeleton"], 8 / 255)
            | {"steps": steps, "step_size": {"rgb": 2 / 255, "skeleton": 2 / 255}})
        t0, correct = time.perf_counter(), 0
        for b, idx in zip(batches, batch_indices(len(indices), args.batch, indices=indices)):
            inputs = to_model_inputs(b, device, model.modalities)
            seeds = torch.tensor([derive_seed(evaluation.seed, int(i)) for i in idx], dtype=torch.int64)
            rows = make_rows(inputs, b["label"], ["rgb", "skeleton"], seeds)
            adv = atk(model, rows.clean, rows.labels, seeds)
            with torch.no_grad():
                correct += int((model(adv).argmax(1) == b["label"]).sum())
        return time.perf_counter() - t0, 100 * correct / len(indices)

    label = job.defense.type
    rows = {
        "final": ("PGD-20 final iterate", lambda: cell("pgd", steps=20, step_size=2 / 255, early_stop=False), 20),
        "refilled": ("PGD-20 early stop, refilled", lambda: cell("pgd", steps=20, step_size=2 / 255), 20),
        "shrinking": ("PGD-20 early stop, batch by batch", lambda: shrinking(20), 20),
        "apgd": ("APGD-100 (no early stop)", lambda: cell("apgd", steps=100, early_stop=False), 101),
    }
    for key in args.rows.split(","):
        name, run, passes = rows[key]
        before = one_pass()
        secs, acc = run()
        floor = passes * (before + one_pass()) / 2  # bracketed: the machine's speed drifts between cells
        print(f"{label:<14} {name:<34} {secs:8.1f} {floor:8.1f} {secs / floor:6.2f} {acc:6.2f}", flush=True)


if __name__ == "__main__":
    with recorded("attack_engine"):
        main()
