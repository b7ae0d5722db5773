"""Evaluate an entry on a track and build its record (``robench leaderboard add`` and ``verify``).

The entry's model and the track's evaluation are put together into one ordinary robench protocol
(:func:`entry_protocol`): the track's dataset, threat model, eps, scenarios, attacks and evaluation
settings; the entry's backbones, training recipe and defense (a protocol's row), or the ``pretrained``
defense loading an outside model's weights. robench's runner then trains what is missing and attacks
it, reusing every model and cell already in the store and cache under the same ids: a protocol model
whose own protocol used the track's data is not trained again. Evaluation is in fp32.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robench import __version__
from robench.errors import RobenchError
from robench.hashing import content_hash
from robench.leaderboard.entry import Entry, ObjectModel, OutsideModel, ProtocolModel
from robench.leaderboard.record import RECORD_SCHEMA, digest_of_bits, per_sample_of, results_from_bits
from robench.leaderboard.tracks import PRECISION, Track
from robench.progress import Progress
from robench.protocol.load import RawProtocol, load_raw, merge
from robench.protocol.schema import Protocol, validate
from robench.report.flags import run_flags
from robench.report.tables import CellIndex
from robench.run_layout import RunLayout
from robench.runtime import RuntimeOptions, device_name, git_commit
from robench.store import ResultsStore
from robench.store.details import CellDetails, details_of
from robench.store.results import utc_now
from robench.train.cache import ModelCache
from robench.train.trainer import TrainedModel

#: keys a protocol model brings from its protocol; everything else comes from the track
MODEL_KEYS = ("model", "training")


def _model_part(entry: Entry) -> tuple[dict[str, Any], list[str], int]:
    """``({model, training, defenses: {id: spec}}, plugins, seed)`` of the entry's model, as raw protocol data."""
    spec = entry.model
    if isinstance(spec, ObjectModel):
        digest = spec.model.digest
        return ({"model": {m: {"backbone": "provided", "digest": digest} for m in spec.model.modalities},
                 "training": {"epochs": 1},
                 "defenses": {entry.id: {"type": "provided", "label": entry.name, "digest": digest}}}, [], 0)
    if isinstance(spec, OutsideModel):
        defense = {"type": "pretrained", "label": entry.name, "weights": str(spec.weights)}
        return ({"model": {m: dict(b) for m, b in spec.backbones.items()}, "training": {"epochs": 1},
                 "defenses": {entry.id: defense}}, [str(p) for p in spec.plugins], 0)
    assert isinstance(spec, ProtocolModel)
    raw = load_raw(spec.protocol, (), spec.profile)
    protocol = validate(raw)  # the entry's protocol must itself be valid
    data = raw.data
    if "datasets" in data:
        variants = [k for k, v in data["datasets"].items() if v is not None]
        vid = spec.dataset or (variants[0] if len(variants) == 1 else None)
        if vid not in variants:
            raise RobenchError(f"entry {entry.path}: key 'model.dataset': found {json.dumps(spec.dataset)}; allowed: "
                               f"a dataset id of protocol {spec.protocol}: {', '.join(variants)}")
        overrides = dict(data["datasets"][vid].get("overrides") or {})
        data = merge({k: v for k, v in data.items() if k != "datasets"}, overrides, {}, "")
    defenses = data.get("defenses") or {}
    if spec.defense not in defenses:
        raise RobenchError(f"entry {entry.path}: key 'model.defense': found {json.dumps(spec.defense)}; allowed: "
                           f"a defense id of protocol {spec.protocol}: {', '.join(defenses)}")
    defense = dict(defenses[spec.defense] or {})
    defense["label"] = entry.name
    part = {k: data[k] for k in MODEL_KEYS if k in data}
    part["defenses"] = {entry.id: defense}
    return part, [str(p) for p in protocol.plugins], int(protocol.seeds[0])


def entry_protocol(entry: Entry, track: Track) -> Protocol:
    """The ordinary robench protocol that evaluates ``entry`` on ``track``."""
    part, plugins, seed = _model_part(entry)
    data: dict[str, Any] = {
        "name": f"leaderboard/{track.name}/{entry.id}",
        "description": f"{entry.name} on leaderboard track {track.name} v{track.version}",
        "version": track.version,
        "seeds": [seed],
        "plugins": plugins,
        "dataset": track.dataset,
        **part,
        "threat": track.data["threat"],
        "attacks": track.data["attacks"],
        "scenarios": track.scenarios,
        "eps": [track.data["eps"]],
        "evaluation": track.data["evaluation"],
        "tables": [],
    }
    origins: dict[tuple[str, ...], str] = {("model",): str(entry.path), ("defenses",): str(entry.path)}
    return validate(RawProtocol(data, entry.path, origins))


@dataclass
class Evaluation:
    """What running an entry's protocol left in the store: its layout, cells and flags."""

    protocol: Protocol
    layout: RunLayout
    cells: dict[str, dict[str, Any]]
    seconds: float


def evaluate_entry(entry: Entry, track: Track, store: ResultsStore, cache: Path, device: torch.device | str | None,
                   progress: str, source: str, baseline: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate ``entry`` on ``track`` and return its record (``robench leaderboard add`` and
    ``robench.evaluate``): the evaluated clips are checked against the track's before any work, what is
    missing is trained and attacked (fp32), and the record is built from the stored cells."""
    from robench.runtime import select_device

    dev = device if isinstance(device, torch.device) else select_device(device)
    clips = clips_digest(entry_protocol(entry, track))  # before any work: the clips must be the track's
    expected = track.clips
    if expected.get("count") is not None and expected["count"] != clips[0]:
        raise RobenchError(f"track {track.name} evaluates {expected['count']} clips, this evaluation had {clips[0]}: "
                           "the dataset differs from the track's")
    if expected.get("digest") and expected["digest"] != clips[1]:
        raise RobenchError(f"track {track.name}: the evaluated clips (digest {clips[1][:19]}…) are not the track's "
                           f"({expected['digest'][:19]}…): the dataset differs from the track's")
    with Progress(progress) as bar:
        ev = run_entry(entry, track, store, ModelCache(cache), cache / "data", dev, bar)
    return build_record(entry, track, ev, dev, source, baseline, clips)


def run_entry(entry: Entry, track: Track, store: ResultsStore, cache: ModelCache, data_dir: Path,
              device: torch.device, progress: Progress) -> Evaluation:
    """Train what is missing and evaluate the entry on the track (fp32), reusing stored work."""
    from robench.runner import Runner

    protocol = entry_protocol(entry, track)
    runtime = RuntimeOptions.for_device(device, amp="off", tf32="off")
    runner = Runner(store, cache, device, progress, data_dir, runtime, provided=provided_models(entry, protocol))
    summary = runner.run(protocol)
    layout = RunLayout.from_json(store.latest_runs()[protocol.name]["layout"])
    cells = store.cells(layout.cell_ids())
    return Evaluation(protocol, layout, cells, summary.seconds)


def provided_models(entry: Entry, protocol: Protocol) -> dict[str, TrainedModel]:
    """The model id -> model object of an entry handed over in Python (nothing for a file's entry)."""
    if not isinstance(entry.model, ObjectModel):
        return {}
    from robench.defenses.provided import Provided
    from robench.plan import make_plan

    (job_id,) = make_plan(protocol).models
    return {job_id: TrainedModel(entry.model.model, Provided(entry.model.model.digest))}


def clips_digest(protocol: Protocol) -> tuple[int, str]:
    """``(count, sha256)`` of the clips a protocol evaluates: the dataset's parameters, split, indices and
    labels. Reads the dataset (the synthetic one is generated; a real one must be prepared)."""
    from robench.evaluation import evaluation_indices
    from robench.registry import DATASETS

    variant = next(iter(protocol.variants.values()))
    provider = DATASETS.build(variant.dataset.type, cache_dir=None, **variant.dataset.params)
    split = provider.split(variant.evaluation.split)
    idx = evaluation_indices(split, variant.evaluation)
    labels = split.labels[idx].tolist()
    ident = {"dataset": variant.dataset.type, "params": variant.dataset.params, "split": variant.evaluation.split,
             "indices": idx.tolist(), "labels": labels}
    return len(labels), "sha256:" + content_hash(ident, 64)


def evaluated_bits(entry: Entry, track: Track, ev: Evaluation) -> tuple[
        np.ndarray, dict[str, dict[str, np.ndarray]], dict[str, dict[str, dict[str, np.ndarray]]]]:
    """The per-clip results of an evaluation: clean, each attack per scenario, each AutoAttack member per scenario."""
    vid = next(iter(ev.protocol.variants))
    seed = ev.layout.seeds[0]
    index = CellIndex(ev.layout, ev.cells, {})
    eps = track.eps
    clean, _ = index.robust(vid, entry.id, seed, None, "clean", eps)
    if clean is None:
        raise RobenchError(f"{entry.id} on track {track.name}: no stored clean result")
    attacks: dict[str, dict[str, np.ndarray]] = {}
    members: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for attack_id, attack in ev.protocol.variants[vid].attacks.items():
        for scenario in track.attacked:
            bits, _ = index.robust(vid, entry.id, seed, attack_id, scenario, eps)
            if bits is None:
                raise RobenchError(f"{entry.id} on track {track.name}: no stored result of {attack_id} on {scenario}")
            attacks.setdefault(attack_id, {})[scenario] = bits.astype(bool)
            cid = index.index.get((vid, entry.id, seed, attack_id, scenario, round(eps, 12)))
            raw = (ev.cells.get(cid or "") or {}).get("details") if attack.attack.type == "autoattack" else None
            if raw is not None:
                for stage in CellDetails.from_json(json.loads(raw)).stages:
                    staged, _ = index.robust(vid, entry.id, seed, f"{attack_id}@{stage}", scenario, eps)
                    if staged is not None:
                        members.setdefault(attack_id, {}).setdefault(stage, {})[scenario] = staged.astype(bool)
    return clean.astype(bool), attacks, members


def reliance_of(cells: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """How much the model's predictions depend on each input: the share of the first evaluated batch's clips
    whose prediction changes when that input is swapped with another clip's (:class:`robench.sanity.ModelChecks`),
    and the number of clips; empty when no attacked cell measured it (one input, or one predicted class)."""
    for cid in sorted(cells):
        details = details_of(cells[cid])
        if details is not None and details.model is not None and details.model.reliance:
            return {**{m: round(v, 4) for m, v in details.model.reliance.items()}, "clips": details.model.clips}
    return {}


def build_record(entry: Entry, track: Track, ev: Evaluation, device: torch.device, source: str,
                 baseline: dict[str, Any] | None = None, clips: tuple[int, str] | None = None) -> dict[str, Any]:
    """The record of a verified entry from its evaluation (see :mod:`robench.leaderboard.record`): every number
    is computed from the per-clip results the record carries, so that reading it can check them."""
    vid = next(iter(ev.protocol.variants))
    flags = run_flags(ev.layout, ev.cells)
    clean, attacks, members = evaluated_bits(entry, track, ev)
    labels = {a: e.label for a, e in ev.protocol.variants[vid].attacks.items()}
    results = results_from_bits(clean, attacks, members, track.rank_by, labels)
    results["ri"] = 0.0 if entry.id == track.baseline else None
    results["reliance"] = reliance_of(ev.cells)
    if baseline is not None and baseline["results"].get("avg") is not None:
        results["ri"] = (results["clean"]["accuracy"] + results["avg"]) - (
            baseline["results"]["clean"]["accuracy"] + baseline["results"]["avg"])
    flag_list = [{"code": f.code, "message": f.message, "cell": cid} for cid, fs in flags.items() for f in fs]
    count, digest = clips or clips_digest(ev.protocol)
    model_ids = sorted({m.model_id for m in ev.layout.models})
    eps = track.eps
    return {
        "schema": RECORD_SCHEMA,
        "status": "verified",
        "track": {"name": track.name, "version": track.version, "digest": track.digest, "eps": eps,
                  "eps_units": {"rgb": f"{255 * eps:.3g} grey levels of 255",
                                "skeleton": f"{eps:.4g} m ({100 * eps:.3g} cm)"},
                  "rank_by": track.rank_by, "clips": {"count": count, "digest": digest}},
        "entry": {**entry.metadata(), "source": source},
        "results": results,
        "flags": flag_list,
        "reported": entry.reported.get(track.name, {}),
        "provenance": {"robench": __version__, "git_commit": git_commit(), "torch": torch.__version__,
                       "device": device_name(device), "precision": PRECISION, "seeds": ev.layout.seeds,
                       "model_ids": model_ids, "cell_ids": sorted(ev.cells),
                       "protocol_hash": "sha256:" + content_hash(ev.protocol.data, 64),
                       "evaluation_seconds": round(ev.seconds, 1), "evaluated_at": utc_now()},
        "verification": {},
        "per_sample": per_sample_of(clean, attacks, members),
        "per_sample_digest": digest_of_bits(clean, attacks, eps),
        "seal": {},
    }


def reported_record(entry: Entry, track: Track, source: str) -> dict[str, Any]:
    """An unverified record: the entry's reported numbers for the track, nothing measured."""
    reported = entry.reported.get(track.name)
    if not reported:
        raise RobenchError(f"entry {entry.path}: no reported numbers for track {track.name} "
                           f"(key 'reported.{track.name}'); an unverified record lists only what the authors reported")
    return {
        "schema": RECORD_SCHEMA,
        "status": "unverified",
        "track": {"name": track.name, "version": track.version, "digest": track.digest, "eps": track.eps,
                  "rank_by": track.rank_by, "clips": track.clips},
        "entry": {**entry.metadata(), "source": source},
        "results": {},
        "flags": [],
        "reported": reported,
        "provenance": {"robench": __version__, "git_commit": git_commit()},
        "verification": {},
        "per_sample": {},
        "per_sample_digest": None,
        "seal": {},
    }


def relative_source(entry_path: Path, root: Path) -> str:
    """The entry file's path relative to the leaderboard folder when inside it, else absolute."""
    try:
        return str(entry_path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(entry_path.resolve())
