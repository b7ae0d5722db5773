"""Building the model of a zoo entry: the architecture the leaderboard evaluated, with the verified weights.

The architecture is not described again: robench builds it the way ``robench leaderboard add`` and ``verify`` do.
The entry's model (a protocol's row) is put together with its track into the leaderboard's protocol
(:func:`robench.leaderboard.evaluate.entry_protocol`), planned, and the model job serving the entry is built by the
trainer's :func:`~robench.train.trainer.build_model` (backbones, defense changes such as AMR's modules). Its model id
(the content hash of its spec) must be the manifest's ``model_id``, which is the one the entry's record lists: weights
are never loaded into another architecture than the one they were evaluated in. The state dict must then fit
exactly (no missing or unexpected key). The model is returned on the device, in eval mode, prepared as the
evaluation prepares it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from robench.leaderboard.entry import Entry
from robench.models.two_stream import TwoStreamModel
from robench.plan import ModelJob
from robench.zoo.errors import ZooError
from robench.zoo.fetch import fetch
from robench.zoo.manifest import ZooEntry, zoo_entry
from robench.zoo.weights import read_verified


def planned_job(entry: ZooEntry) -> ModelJob:
    """The model job serving ``entry`` in the protocol the leaderboard builds for it on its track."""
    from robench.leaderboard.evaluate import entry_protocol
    from robench.leaderboard.tracks import load_track
    from robench.plan import make_plan

    stand_in = Entry(id=entry.id, name=entry.name, authors=("robench zoo",), architecture="", defense="",
                     model=entry.model, path=entry.manifest)
    plan = make_plan(entry_protocol(stand_in, load_track(entry.track)))
    jobs = [job for job in plan.models.values() if entry.id in job.defense_ids]
    if len(jobs) != 1:
        raise ZooError(f"zoo entry {entry.track}/{entry.id}: its protocol plans {len(jobs)} models for it, not one")
    return jobs[0]


def model_job(entry: ZooEntry) -> ModelJob:
    """:func:`planned_job`, its id checked against the manifest's ``model_id`` (the one the entry's record lists)."""
    job = planned_job(entry)
    if job.id != entry.model_id:
        raise ZooError(f"zoo entry {entry.track}/{entry.id}: this robench builds model {job.id} for it, but the "
                       f"weights are of model {entry.model_id} (as its record lists): the protocol, the track or "
                       "robench changed since they were exported; use the robench they were made with, or export "
                       "them again")
    return job


def build(entry: ZooEntry, state: dict[str, Tensor], device: torch.device | str = "cpu") -> TwoStreamModel:
    """``entry``'s architecture (:func:`model_job`) with ``state`` loaded (strictly), on ``device``, in eval mode."""
    from robench.runtime import RuntimeOptions
    from robench.train.files import load_state
    from robench.train.trainer import build_model

    job = model_job(entry)
    model, _ = build_model(job)
    why = load_state(model, state)
    if why is not None:
        raise ZooError(f"zoo entry {entry.track}/{entry.id}: its weights {why} (model {job.id})")
    dev = torch.device(device)
    RuntimeOptions.for_device(dev, amp="off", tf32="off").prepare_model(model.to(dev))
    return model.eval()


def fetch_entry(entry: ZooEntry, cache: Path) -> Path:
    """The verified weights file of ``entry`` (downloaded into ``cache`` when it is not a local file)."""
    return fetch(entry.weights, cache, entry.base)


def load_zoo_model(track: str, entry: str | ZooEntry, *, device: torch.device | str | None = None,
                   cache: str | Path | None = None, manifest: str | Path | None = None) -> TwoStreamModel:
    """The model of a zoo entry, ready to evaluate: the weights fetched once into ``cache`` (default: as
    ``robench run``), their digest checked before they are read, loaded into the architecture the leaderboard
    evaluated (:func:`build`). ``manifest`` replaces the one robench ships for the track."""
    from robench.locations import default_cache
    from robench.runtime import select_device

    found = entry if isinstance(entry, ZooEntry) else zoo_entry(track, entry, manifest)
    path = fetch_entry(found, Path(cache) if cache is not None else default_cache())
    state = read_verified(path, found.weights.sha256, found.weights.format, f"weights of {found.track}/{found.id} "
                          f"({path})")
    dev = device if isinstance(device, torch.device) else select_device(device)
    return build(found, state, dev)


def zoo_for(track: str, entry: str, zoo: bool | str | Path = True,
            leaderboard: str | Path | None = None) -> ZooEntry | None:
    """The zoo entry ``robench.load_model(track, entry)`` uses, or None to build the model from the leaderboard's
    record and the model cache instead. ``zoo``: True (the manifest robench ships for the track, if it lists the
    entry), False (never), or a manifest file (which must list it). With ``True``, a record of the entry under
    ``leaderboard`` that lists other models than the zoo's (the user's own model under that id) wins."""
    if zoo is False:
        return None
    if zoo is not True:
        return zoo_entry(track, entry, Path(zoo))
    from robench.zoo.manifest import find_entry

    found = find_entry(track, entry)
    if found is None or leaderboard is None:
        return found
    record_file = Path(leaderboard) / track / f"{entry}.json"
    if record_file.is_file():
        from robench.leaderboard.record import read_record

        model_ids = read_record(record_file)["provenance"].get("model_ids")
        if isinstance(model_ids, list) and found.model_id not in model_ids:
            return None
    return found
