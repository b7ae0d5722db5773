"""Evaluate an entry on a track and build its record (``robench leaderboard add`` and ``verify``).

The entry's model and the track's evaluation are put together into one ordinary robench protocol
(:func:`entry_protocol`): the track's dataset, threat model, eps, scenarios, attacks and evaluation
settings; the entry's backbones, training recipe and defense (a protocol's row), or the ``pretrained``
defense loading an outside model's weights. robench's runner then trains what is missing and attacks
it, reusing every model and cell already in the store and cache under the same ids: a protocol model
whose own protocol used the track's data is not trained again. Evaluation is in fp32.

Two things stop an evaluation with one clear line instead of a wrong record or a traceback: outputs that
are not finite where the evaluation classifies (:class:`NonFiniteOutputs`: argmax of a NaN row is class
0, so a NaN model would otherwise score chance and look robust), and an exception raised inside the
entry's own model code (:class:`ModelCodeError`, naming the plugin file and line).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robench import __version__
from robench.errors import RobenchError
from robench.hashing import content_hash
from robench.leaderboard.entry import Entry, ObjectModel, OutsideModel, ProtocolModel
from robench.leaderboard.record import (
    CORRUPTION_KIND,
    RECORD_SCHEMA,
    CorruptionBits,
    corruption_per_sample,
    corruption_results,
    digest_of_bits,
    digest_of_corruption_bits,
    encode_bits,
    per_sample_of,
    results_from_bits,
)
from robench.leaderboard.reliance import replaced_results
from robench.leaderboard.tracks import CORRUPTIONS, PRECISION, SCENARIO_LABELS, Track
from robench.plan import ModelJob, Plan, make_plan
from robench.progress import Progress
from robench.protocol.load import RawProtocol, load_raw, merge
from robench.protocol.schema import Protocol, validate
from robench.report.flags import run_flags
from robench.report.tables import CellIndex
from robench.run_layout import RunLayout
from robench.runner import Runner, RunSummary
from robench.runtime import RuntimeOptions, device_name, git_commit
from robench.store import ResultsStore, unpack_bits
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
    """The ordinary robench protocol that evaluates ``entry`` on ``track``: the track's threat model (its
    ``plausible`` skeleton limits included, which the protocol applies to every evaluation attack), attacks and
    scenarios; for a corruption track, the clean scenario and a ``corruptions:`` section of the track's corruptions
    and severities (one cell per corruption and severity, a one-level corruption once), and no attacks."""
    part, plugins, seed = _model_part(entry)
    data: dict[str, Any] = {
        "name": f"leaderboard/{track.name}/{entry.id}",
        "description": f"{entry.name} on leaderboard track {track.name} v{track.version}",
        "version": track.version,
        "seeds": [seed],
        "plugins": plugins,
        "dataset": track.dataset,
        **part,
    }
    if track.kind == CORRUPTIONS:
        data.update({**({"threat": track.data["threat"]} if "threat" in track.data else {}), "attacks": {},
                     "scenarios": track.scenarios, "evaluation": track.data["evaluation"], "tables": [],
                     "corruptions": {"baseline": entry.id, "severities": track.severities,
                                     "types": track.corruption_types}})
    else:
        data.update({"threat": track.data["threat"], "attacks": track.data["attacks"], "scenarios": track.scenarios,
                     "eps": [track.data["eps"]], "evaluation": track.data["evaluation"], "tables": []})
    origins: dict[tuple[str, ...], str] = {("model",): str(entry.path), ("defenses",): str(entry.path)}
    return validate(RawProtocol(data, entry.path, origins))


@dataclass
class Evaluation:
    """What running an entry's protocol left in the store: its layout, cells and flags."""

    protocol: Protocol
    layout: RunLayout
    cells: dict[str, dict[str, Any]]
    seconds: float
    #: per input, the per-clip correctness with that input replaced by another action's clip's (attack tracks, two
    #: inputs: :mod:`robench.leaderboard.reliance`)
    replaced: dict[str, np.ndarray] = field(default_factory=dict)


def evaluate_entry(entry: Entry, track: Track, store: ResultsStore, cache: Path, device: torch.device | str | None,
                   progress: str, source: str, baseline: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate ``entry`` on ``track`` and return its record (``robench leaderboard add`` and
    ``robench.evaluate``): the evaluated clips are checked against the track's before any work, what is
    missing is trained and attacked (fp32), and the record is built from the stored cells."""
    from robench.runtime import select_device

    dev = device if isinstance(device, torch.device) else select_device(device)
    with model_code_errors(entry):
        clips = clips_digest(entry_protocol(entry, track))  # before any work: the clips must be the track's
        expected = track.clips
        if expected.get("count") is not None and expected["count"] != clips[0]:
            raise RobenchError(f"track {track.name} evaluates {expected['count']} clips, this evaluation had "
                               f"{clips[0]}: the dataset differs from the track's")
        if expected.get("digest") and expected["digest"] != clips[1]:
            raise RobenchError(f"track {track.name}: the evaluated clips (digest {clips[1][:19]}…) are not the "
                               f"track's ({expected['digest'][:19]}…): the dataset differs from the track's")
        with Progress(progress) as bar:
            ev = run_entry(entry, track, store, ModelCache(cache), cache / "data", dev, bar)
        return build_record(entry, track, ev, dev, source, baseline, clips)


def run_entry(entry: Entry, track: Track, store: ResultsStore, cache: ModelCache, data_dir: Path,
              device: torch.device, progress: Progress) -> Evaluation:
    """Train what is missing and evaluate the entry on the track (fp32), reusing stored work. Every forward
    pass that classifies (no gradients) is checked for outputs that are not finite (:class:`NonFiniteOutputs`)."""
    protocol = entry_protocol(entry, track)
    runtime = RuntimeOptions.for_device(device, amp="off", tf32="off")
    runner = _CheckedRunner(entry, store, cache, device, progress, data_dir, runtime,
                            provided=provided_models(entry, protocol))
    try:
        summary = runner.run(protocol)
        replaced = _replaced(entry, track, protocol, runner, data_dir, device) if track.kind != CORRUPTIONS else {}
    finally:
        runner.release()
    layout = RunLayout.from_json(store.latest_runs()[protocol.name]["layout"])
    cells = store.cells(layout.cell_ids())
    return Evaluation(protocol, layout, cells, summary.seconds, replaced)


def _replaced(entry: Entry, track: Track, protocol: Protocol, runner: Runner, data_dir: Path,
              device: torch.device) -> dict[str, np.ndarray]:
    """The entry's accuracy with each input replaced (:func:`robench.leaderboard.reliance.replaced_bits`) on the
    track's evaluated clips, with the model the evaluation used."""
    from robench.api import dataset
    from robench.leaderboard.reliance import replaced_bits

    plan = make_plan(protocol, runner.runtime.precision, runner.ranks.world)
    jobs = [job for job in plan.models.values() if entry.id in job.defense_ids]
    if len(jobs) != 1:
        return {}
    model = runner.model_of(plan, jobs[0]).model.eval()
    evaluation = track.data["evaluation"]
    clips = dataset(track.path, split=str(evaluation["split"]), cache=data_dir)
    return replaced_bits(model, clips, int(evaluation.get("batch_size") or 32), device)


# -- outputs that are not finite -----------------------------------------------------------------------

class NonFiniteOutputs(RobenchError):
    """An entry's model gave NaN or infinite outputs where the evaluation classifies: no record is written."""


def check_finite(entry: Entry, output: Any) -> None:
    """Raise :class:`NonFiniteOutputs` naming ``entry``, how many clips and which inputs, if ``output`` (a
    forward pass's logits) holds NaN or inf. Forward passes with gradients (an attack's steps) are not checked:
    what they find is classified again, without gradients, and checked then."""
    if torch.is_grad_enabled() or not isinstance(output, torch.Tensor) or not output.is_floating_point():
        return
    finite = torch.isfinite(output)
    if bool(finite.all()):
        return
    rows = int((~finite.reshape(len(output), -1).all(1)).sum()) if output.dim() else 1
    kinds = " and ".join(k for k, found in (("NaN", bool(torch.isnan(output).any())),
                                             ("inf", bool(torch.isinf(output).any()))) if found)
    raise NonFiniteOutputs(
        f"entry {entry.id} ({entry.name}): the model's outputs hold {kinds} for {rows} of the {len(output)} clips of "
        f"a batch it classified without gradients (clean or corrupted clips, the checks before an attack, or an "
        "attack's inputs); robench ranks only models whose logits are finite (the argmax of a "
        "NaN row is class 0, which would pass for a prediction): fix the model or its weights, and add it again")


class _CheckedRunner(Runner):
    """robench's runner, with every model it evaluates checked by :func:`check_finite` (a forward hook, removed
    by :meth:`release`); a base model loaded only to train another one is not checked."""

    def __init__(self, entry: Entry, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.entry = entry
        self._depth = 0
        self._hooks: dict[int, torch.utils.hooks.RemovableHandle] = {}

    def _model(self, plan: Plan, job: ModelJob, summary: RunSummary, wait: bool = True) -> TrainedModel | None:
        self._depth += 1
        try:
            trained = super()._model(plan, job, summary, wait)
        finally:
            self._depth -= 1
        if trained is not None and self._depth == 0 and id(trained.model) not in self._hooks:
            self._hooks[id(trained.model)] = trained.model.register_forward_hook(
                lambda _module, _inputs, output: check_finite(self.entry, output))
        return trained

    def release(self) -> None:
        """Remove the hooks (a model object handed over in Python is the caller's)."""
        for handle in self._hooks.values():
            handle.remove()
        self._hooks.clear()


# -- exceptions from the entry's own code ------------------------------------------------------------

class ModelCodeError(RobenchError):
    """The entry's own model code (a plugin file) raised an exception: named with its file and line."""


def _code_files(entry: Entry) -> set[str]:
    """The files of the entry's own code: its plugin files and those of every plugin loaded in this process."""
    from robench.registry import PLUGIN_DIGESTS

    files = {str(p) for p in entry.model.plugins} if isinstance(entry.model, OutsideModel) else set()
    for name in PLUGIN_DIGESTS:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__file__", None):
            files.add(str(module.__file__))
    return {os.path.realpath(f) for f in files}


def code_place(entry: Entry, exc: BaseException) -> str | None:
    """Where in the entry's own code ``exc`` was raised: ``"<plugin file>:<line> (in <function>): `<code>`"`` of the
    last traceback frame in one of its files (:func:`_code_files`; for a syntax error, its own place), else None."""
    files = _code_files(entry)
    if isinstance(exc, SyntaxError) and exc.filename and os.path.realpath(exc.filename) in files:
        return f"{exc.filename}:{exc.lineno}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if os.path.realpath(f.filename) in files]
    if not frames:
        return None
    last = frames[-1]
    return f"{last.filename}:{last.lineno} (in {last.name})" + (f": `{last.line.strip()}`" if last.line else "")


def code_error(entry: Entry, exc: BaseException) -> ModelCodeError | None:
    """A one-line :class:`ModelCodeError` for ``exc`` if it was raised inside the entry's code (:func:`code_place`),
    else None (a bug elsewhere keeps its traceback)."""
    place = code_place(entry, exc)
    if place is None:
        return None
    said = (str(exc).strip().splitlines() or [""])[0]
    said = f": {said[:200]}{'…' if len(said) > 200 else ''}" if said else ""
    return ModelCodeError(f"entry {entry.id}: its model code raised {type(exc).__name__}{said} at {place}; fix the "
                          "plugin and run the command again")


@contextmanager
def model_code_errors(entry: Entry) -> Iterator[None]:
    """Turn an exception raised inside the entry's own model code into a :class:`ModelCodeError` (exit status 2
    from the command line, one line, naming the plugin file and line); a robench error caused by one (a plugin that
    fails to import) gets the place added. Other errors and bugs outside the entry's files pass unchanged."""
    try:
        yield
    except RobenchError as exc:
        cause = exc.__cause__
        place = code_place(entry, cause) if cause is not None and not isinstance(cause, RobenchError) else None
        if place is None or place.partition(" ")[0] in str(exc):
            raise
        raise ModelCodeError(f"{exc} (at {place})") from cause
    except Exception as exc:
        found = code_error(entry, exc)
        if found is None:
            raise
        raise found from exc


def provided_models(entry: Entry, protocol: Protocol) -> dict[str, TrainedModel]:
    """The model id -> model object of an entry handed over in Python (nothing for a file's entry)."""
    if not isinstance(entry.model, ObjectModel):
        return {}
    from robench.defenses.provided import Provided

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


def corruption_bits(entry: Entry, track: Track, ev: Evaluation) -> tuple[np.ndarray, CorruptionBits]:
    """The per-clip results of a corruption track's evaluation: clean, and each corruption at each severity it was
    evaluated at (a one-level corruption at the first)."""
    vid = next(iter(ev.protocol.variants))
    seed = ev.layout.seeds[0]
    clean, _ = CellIndex(ev.layout, ev.cells, {}).robust(vid, entry.id, seed, None, "clean", None)
    if clean is None:
        raise RobenchError(f"{entry.id} on track {track.name}: no stored clean result")
    corrupted: CorruptionBits = {}
    for ref in ev.layout.corruption_cells:
        cell = ev.cells.get(ref.cell_id)
        if ref.variant == vid and ref.defense == entry.id and ref.seed == seed and cell is not None:
            bits = unpack_bits(cell["per_sample"], cell["n"])
            if bits is not None:
                corrupted.setdefault(ref.corruption, {})[ref.severity] = bits.astype(bool)
    for name, info in track.corruptions.items():
        wanted = track.severities if info.graded else track.severities[:1]
        if missing := [s for s in wanted if s not in corrupted.get(name, {})]:
            raise RobenchError(f"{entry.id} on track {track.name}: no stored result of corruption {name} at severity "
                               f"{', '.join(map(str, missing))} (a model without its {info.modality} input cannot be "
                               "ranked on a corruption track)")
    return clean.astype(bool), corrupted


def build_record(entry: Entry, track: Track, ev: Evaluation, device: torch.device, source: str,
                 baseline: dict[str, Any] | None = None, clips: tuple[int, str] | None = None) -> dict[str, Any]:
    """The record of a verified entry from its evaluation (see :mod:`robench.leaderboard.record`): every number
    is computed from the per-clip results the record carries, so that reading it can check them."""
    if track.kind == CORRUPTIONS:
        return _corruption_record(entry, track, ev, device, source, clips)
    vid = next(iter(ev.protocol.variants))
    clean, attacks, members = evaluated_bits(entry, track, ev)
    labels = {a: e.label for a, e in ev.protocol.variants[vid].attacks.items()}
    results = results_from_bits(clean, attacks, members, track.rank_by, labels)
    results["ri"] = 0.0 if entry.id == track.baseline else None
    results["reliance"] = reliance_of(ev.cells)
    results["replaced"] = replaced_results(ev.replaced)
    if baseline is not None and baseline["results"].get("avg") is not None:
        results["ri"] = (results["clean"]["accuracy"] + results["avg"]) - (
            baseline["results"]["clean"]["accuracy"] + baseline["results"]["avg"])
    count, digest = clips or clips_digest(ev.protocol)
    eps = track.eps
    plausible = {"plausible": track.plausible} if track.plausible is not None else {}
    scale = {m: float(track.data["threat"].get(m, {}).get("scale", 1.0)) for m in ("rgb", "skeleton")}
    return {
        "schema": RECORD_SCHEMA,
        "status": "verified",
        "track": {"name": track.name, "version": track.version, "digest": track.digest, "eps": eps,
                  "eps_units": {"rgb": f"{255 * eps * scale['rgb']:.3g} grey levels of 255",
                                "skeleton": f"{eps * scale['skeleton']:.4g} m ({100 * eps * scale['skeleton']:.3g} "
                                            "cm)"},
                  "rank_by": track.rank_by, "clips": {"count": count, "digest": digest}, **plausible},
        "entry": {**entry.metadata(), "source": source},
        "results": results,
        "flags": _flags(ev, labels),
        "reported": entry.reported.get(track.name, {}),
        "provenance": _provenance(entry, ev, device),
        "verification": {},
        "per_sample": {**per_sample_of(clean, attacks, members),
                       "replaced": {m: encode_bits(b) for m, b in ev.replaced.items()}},
        "per_sample_digest": digest_of_bits(clean, attacks, eps),
        "seal": {},
    }


def _flags(ev: Evaluation, attack_labels: dict[str, str]) -> list[dict[str, Any]]:
    """The record's ``flags``: every sanity flag of the evaluation's cells, with the cell it concerns."""
    where = cell_labels(ev.layout, attack_labels)
    return [{"code": f.code, "message": f.message, "cell": cid, **({"where": where[cid]} if cid in where else {})}
            for cid, fs in run_flags(ev.layout, ev.cells).items() for f in fs]


def _provenance(entry: Entry, ev: Evaluation, device: torch.device) -> dict[str, Any]:
    """The record's ``provenance``: what evaluated it, on what, from which models and cells, and when."""
    return {"robench": __version__, "git_commit": git_commit(), "torch": torch.__version__,
            "device": device_name(device), "precision": PRECISION, "seeds": ev.layout.seeds,
            "model_ids": sorted({m.model_id for m in ev.layout.models}), "cell_ids": sorted(ev.cells),
            "protocol_hash": "sha256:" + content_hash(portable_protocol(ev.protocol.data), 64),
            "files": entry_files(entry),
            "evaluation_seconds": round(ev.seconds, 1), "evaluated_at": utc_now()}


def _corruption_record(entry: Entry, track: Track, ev: Evaluation, device: torch.device, source: str,
                       clips: tuple[int, str] | None) -> dict[str, Any]:
    """The record of a verified entry on a corruption track (see :mod:`robench.leaderboard.record`): clean accuracy,
    each corruption's accuracy (mean over the severities), each family's, the Mean, and the per-clip results of the
    clean cell and of every corruption cell they follow from."""
    clean, corrupted = corruption_bits(entry, track, ev)
    info = {name: {"family": i.family, "modality": i.modality, "graded": i.graded}
            for name, i in track.corruptions.items()}
    results = corruption_results(clean, corrupted, info, track.severities)
    results["reliance"] = reliance_of(ev.cells)
    count, digest = clips or clips_digest(ev.protocol)
    return {
        "schema": RECORD_SCHEMA,
        "status": "verified",
        "track": {"name": track.name, "version": track.version, "digest": track.digest, "kind": CORRUPTION_KIND,
                  "rank_by": track.rank_by, "clips": {"count": count, "digest": digest},
                  "corruptions": {"severities": track.severities, "types": info}},
        "entry": {**entry.metadata(), "source": source},
        "results": results,
        "flags": _flags(ev, {}),
        "reported": entry.reported.get(track.name, {}),
        "provenance": _provenance(entry, ev, device),
        "verification": {},
        "per_sample": corruption_per_sample(clean, corrupted),
        "per_sample_digest": digest_of_corruption_bits(clean, corrupted),
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
                  "rank_by": track.rank_by, "clips": track.clips,
                  **({"kind": CORRUPTION_KIND} if track.kind == CORRUPTIONS else {})},
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


def cell_labels(layout: RunLayout, attack_labels: dict[str, str]) -> dict[str, str]:
    """``{cell id: "PGD-20 on XRS"}`` (``"clean"`` for the clean cell): how pages name the cells a flag concerns."""
    out = {}
    for ref in layout.cells:
        scenario = SCENARIO_LABELS.get(ref.scenario, ref.scenario)
        attack = attack_labels.get(ref.attack, ref.attack) if ref.attack is not None else None
        out[ref.cell_id] = "clean" if attack is None else f"{attack} on {scenario}"
    return out


def _digest(path: str | Path) -> str:
    from robench.identity import file_digest

    return file_digest(path)


def portable_protocol(data: dict[str, Any]) -> dict[str, Any]:
    """A protocol's data with every file it names (plugins, a pretrained defense's weights) replaced by the file's
    digest: what ``provenance.protocol_hash`` covers, the same on every machine and wherever the files lie."""
    out = dict(data)
    if out.get("plugins"):
        out["plugins"] = [_digest(p) if Path(str(p)).is_file() else str(p) for p in out["plugins"]]
    defenses = {}
    for key, spec in (out.get("defenses") or {}).items():
        if isinstance(spec, dict) and isinstance(spec.get("weights"), str) and Path(spec["weights"]).is_file():
            spec = {**spec, "weights": _digest(spec["weights"])}
        defenses[key] = spec
    if defenses:
        out["defenses"] = defenses
    return out


def entry_files(entry: Entry) -> dict[str, Any]:
    """The digests of an outside model's files, by name relative to the entry file: ``{"weights": "sha256:…",
    "plugins": {"arch.py": "sha256:…"}}`` (empty for other models). No path: records stay portable, and ``verify``
    says which file changed before it re-evaluates anything."""
    spec = entry.model
    if not isinstance(spec, OutsideModel):
        return {}
    base = entry.path.parent
    return {"weights": _digest(spec.weights),
            "plugins": {Path(os.path.relpath(p, base)).as_posix(): _digest(p) for p in spec.plugins}}


def relative_source(entry_path: Path, root: Path) -> str:
    """The entry file's path relative to the leaderboard folder (``entries/x.yaml``, or ``../x.yaml`` for an entry
    beside it), in POSIX form: a record names no absolute path, so the leaderboard folder can move, with its
    entries, to another place or machine. An entry on another drive (Windows) keeps its absolute path."""
    entry_path, root = entry_path.resolve(), root.resolve()
    try:
        return Path(os.path.relpath(entry_path, root)).as_posix()
    except ValueError:
        return str(entry_path)
