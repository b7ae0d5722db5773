"""``robench store merge``: join stores written apart (shards of one plan, jobs on other machines) into one.

Keys are content hashes, so the shards of one plan merge into the store a single run would have
written. The whole merge is one write transaction on the target, and the target's rows are read
inside it, under its write lock (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: an advisory transaction lock
every merge takes): two merges into one target run one after the other, and the second sees what the
first wrote. A key present on both sides must hold the same result; a cell with another ``n``,
``correct`` or per-clip bits, or a model with another spec, is a conflict, and then nothing at all is
written. Runs are copied unless an identical one (protocol, start time, layout) is already there, so
merging the same sources again writes nothing. Sources are opened read-only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from robench.errors import StoreError
from robench.store.claims import lock_key
from robench.store.results import ResultsStore
from robench.store.schema import MODELS, RESULTS, RUNS


@dataclass
class MergeSummary:
    """What :func:`merge_into` did: rows added, and cells that were already there with the same result."""

    sources: list[str] = field(default_factory=list)
    cells_added: int = 0
    cells_present: int = 0
    models_added: int = 0
    runs_added: int = 0

    def line(self) -> str:
        return (f"{self.cells_added} cell(s), {self.models_added} model(s) and {self.runs_added} run(s) added from "
                f"{len(self.sources)} store(s); {self.cells_present} cell(s) were already here with the same result")


def _run_key(run: dict[str, Any]) -> tuple[str, str, str]:
    return run["protocol"], run["started_at"], json.dumps(run["layout"], sort_keys=True)


def merge_into(target: ResultsStore, sources: list[ResultsStore]) -> MergeSummary:
    """Copy every cell, model and run of ``sources`` that ``target`` lacks (see the module docstring)."""
    for src in sources:
        if src.same_as(target):
            raise StoreError(f"store merge: {src.location} is also the target (--into); merge other stores into it")
    incoming = [(src.location, src.cells(), src.models(), src.runs()) for src in sources]
    summary = MergeSummary(sources=[src.location for src in sources])
    with target.transaction() as con:
        if target.server:
            con.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key("robench store merge")})
        mine, my_models = target.cells(con=con), target.models(con=con)
        my_runs = {_run_key(r) for r in target.runs(con=con)}
        new_cells: dict[str, dict[str, Any]] = {}
        new_models: dict[str, dict[str, Any]] = {}
        new_runs: list[dict[str, Any]] = []
        conflicts: list[str] = []
        for where, cells, models, runs in incoming:
            for cid, row in cells.items():
                other = mine.get(cid) or new_cells.get(cid)
                if other is None:
                    new_cells[cid] = row
                elif (other["n"], other["correct"], other["per_sample"]) != (row["n"], row["correct"],
                                                                             row["per_sample"]):
                    conflicts.append(f"cell {cid} ({row['defense']}, {row['attack'] or 'clean'}, {row['scenario']}): "
                                     f"{other['correct']}/{other['n']} vs {row['correct']}/{row['n']} in {where}")
                else:
                    summary.cells_present += 1
            for mid, model in models.items():
                other_model = my_models.get(mid) or new_models.get(mid)
                if other_model is None:
                    new_models[mid] = model
                elif other_model["spec"] != model["spec"]:
                    conflicts.append(f"model {mid}: another spec in {where}")
            for run in runs:
                if _run_key(run) not in my_runs:
                    my_runs.add(_run_key(run))
                    new_runs.append(run)
        if conflicts:
            raise StoreError(f"store merge into {target.location}: {len(conflicts)} conflict(s), nothing written (the "
                             "same key with another result: runs of different code, precision or device?): "
                             + "; ".join(conflicts[:5]) + (" ..." if len(conflicts) > 5 else ""))
        for row in new_cells.values():
            con.execute(target.insert(RESULTS, {c.name: row.get(c.name) for c in RESULTS.columns}))
        for m in new_models.values():
            con.execute(target.insert(MODELS, {
                "model_id": m["model_id"], "spec": json.dumps(m["spec"], sort_keys=True),
                "summary": json.dumps(m["summary"]), "history": json.dumps(m["history"]),
                "train_seconds": m["train_seconds"], "device": m["device"], "created_at": m["created_at"]}))
        for r in new_runs:
            con.execute(RUNS.insert().values(
                protocol=r["protocol"], protocol_path=r["protocol_path"], overrides=json.dumps(r["overrides"]),
                data=json.dumps(r["data"], default=str), layout=json.dumps(r["layout"]),
                started_at=r["started_at"], finished_at=r["finished_at"], status=r["status"],
                robench_version=r["robench_version"], git_commit=r["git_commit"], device=r["device"]))
    summary.cells_added, summary.models_added, summary.runs_added = len(new_cells), len(new_models), len(new_runs)
    return summary
