"""robench's Python API: attack, train on and evaluate your own models with robench's data, attacks and records.

Every function here is the code path the command line runs too: :func:`evaluate` is what
``robench leaderboard add`` runs after reading an entry file, :func:`run` what ``robench run`` runs in
one process, :func:`render_report` what ``robench report`` renders. Import the names from ``robench``::

    import robench

    train = robench.dataset("synthetic", split="train")           # a torch Dataset: (inputs, label)
    pgd = robench.attack("pgd", "RS", eps="8/255", steps=10)     # both inputs, jointly
    adv = pgd(model.eval(), inputs, labels)                      # checked against the threat model
    result = robench.evaluate(model, track="synthetic")         # the record `leaderboard add` writes
    print(result.accuracy("RS"), result.per_clip("RS")[:8])

Units everywhere: RGB float in [0, 1] (``[B, 3, T, H, W]``), the skeleton in metres
(``[B, 3, T, V, M]``); eps and step sizes are in those units, ``"8/255"``-style fractions allowed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from robench.attacks.base import Attack
from robench.attacks.plausible import SkeletonLimits
from robench.data.base import ClipDataset, to_model_inputs
from robench.errors import ProtocolError, RobenchError
from robench.locations import default_cache, default_store
from robench.models.provided import ProvidedModel
from robench.models.two_stream import TwoStreamModel
from robench.params import check_params, parse_number
from robench.protocol.schema import Component, Protocol, ThreatConfig
from robench.registry import ATTACKS
from robench.scenarios import SCENARIOS

Inputs = dict[str, Tensor]


# -- attacks ---------------------------------------------------------------------------------------

def _eps(value: float | str, what: str) -> float:
    try:
        x = parse_number(value)
    except ValueError:
        raise RobenchError(f"{what} {value!r}: allowed: a number or a fraction like 8/255") from None
    if not 0 <= x < float("inf"):
        raise RobenchError(f"{what} {value!r}: allowed: a finite number >= 0")
    return x


def attack(name: str, scenario: str | Sequence[str] = "RS", eps: float | str | Mapping[str, float | str] = "8/255",
           *, skeleton_scale: float = 1.0, skeleton_bounds: tuple[float, float] | None = None,
           plausible: Mapping[str, float] | None = None, norm: str = "linf", **params: Any) -> Attack:
    """Build a registered attack on the inputs of ``scenario``, as a protocol cell builds it.

    Call the result on a batch, ``attack(model, inputs, labels)``: it returns adversarial inputs checked
    against the threat model (inside each modality's L-inf ball, RGB in [0, 1], the unattacked modality
    bit-identical), raising :class:`~robench.errors.AttackCheckError` otherwise. ``model`` is any module
    taking robench's input dict (:class:`TwoInputs` adapts ``model(rgb, skeleton)``); put it in eval mode
    first unless you mean to attack the training-mode forward pass.

    Args:
        name: a registered attack (``robench list attacks``): fgsm, pgd, cw, apgd, apgd_t, fab_t, square,
            autoattack, or one a plugin registered.
        scenario: the paper's ``"R"``, ``"S"`` or ``"RS"`` (both, jointly), or a list of modalities.
        eps: the L-inf radius: one nominal value for every attacked input, or ``{"rgb": ..., "skeleton":
            ...}`` per input. RGB in [0, 1] units (8/255 = eight grey levels), the skeleton in metres times
            ``skeleton_scale``.
        skeleton_scale: multiplies the skeleton's eps and step sizes (a protocol's
            ``threat.skeleton.scale``); 1 reads the skeleton in metres.
        skeleton_bounds: the skeleton's valid range (None: unbounded, as NTU RGB+D coordinates are).
        plausible: keep adversarial skeletons plausible bodies: relative tolerances ``{bone, angle, velocity,
            acceleration}`` against the clean clip (``{}``: 0.01, 0.1, 0.1, 0.1; see
            :mod:`robench.attacks.plausible`), as a protocol's ``threat.skeleton.plausible``.
        norm: ``"linf"`` (the paper's balls) or ``"l2"`` (an L2 ball per modality and clip, eps its radius in
            the same units; a protocol's ``threat.norm``); not every attack implements L2.
        **params: the attack's parameters (``steps``, ``step_size``, ``restarts``, ...), as in a protocol;
            checked against its signature.
    """
    modalities = list(SCENARIOS[scenario]) if isinstance(scenario, str) and scenario in SCENARIOS \
        else [scenario] if isinstance(scenario, str) else list(scenario)
    if not modalities or any(m not in ("rgb", "skeleton") for m in modalities):
        raise RobenchError(f"attack scenario {scenario!r}: allowed: R, S, RS or a list of rgb and skeleton")
    cls = ATTACKS.get(name)
    try:
        checked = check_params(cls, params, kind=f"attack '{name}'", where=lambda n: ("robench.attack()", n),
                               exclude=cls.harness_params)
    except ProtocolError as exc:
        raise RobenchError(str(exc)) from None
    limits = None
    if plausible is not None:
        try:
            limits = SkeletonLimits(**{k: float(v) for k, v in plausible.items()}).as_params()
        except (TypeError, ValueError) as exc:
            raise RobenchError(f"attack plausible={dict(plausible)}: {exc}") from None
    if norm not in ThreatConfig.NORMS:
        raise RobenchError(f"attack norm {norm!r}: allowed: {', '.join(ThreatConfig.NORMS)}")
    ball: Literal["linf", "l2"] = "l2" if norm == "l2" else "linf"
    threat = ThreatConfig({"rgb": 1.0, "skeleton": _eps(skeleton_scale, "skeleton_scale")},
                          {"rgb": (0.0, 1.0), "skeleton": skeleton_bounds}, limits, ball)
    if isinstance(eps, Mapping):
        missing = [m for m in modalities if m not in eps]
        if missing:
            raise RobenchError(f"attack eps {dict(eps)}: no radius for {missing}")
        kwargs = threat.attack_kwargs(Component(name, checked), modalities,
                                      {m: _eps(eps[m], f"eps[{m!r}]") for m in modalities})
    else:
        kwargs = threat.attack_kwargs(Component(name, checked), modalities, _eps(eps, "eps"))
    built: Attack = ATTACKS.build(name, **kwargs)
    return built


# -- data ------------------------------------------------------------------------------------------

class ClipTorchDataset(Dataset[tuple[Inputs, int]]):
    """A robench split as a torch ``Dataset``: item i is ``(inputs, label)`` in model units (RGB float in
    [0, 1], skeleton in metres), exactly what robench's training and evaluation feed a model.

    Attributes:
        clips: the underlying split (batch indexing: ``clips.get_batch(indices)``).
        indices: which clips of the split, in order (a track's evaluated subset, or all).
        class_names: the label order.
    """

    def __init__(self, clips: ClipDataset, indices: Tensor | None = None) -> None:
        self.clips = clips
        self.indices = indices if indices is not None else torch.arange(len(clips))
        self.class_names = list(clips.class_names)

    def __len__(self) -> int:
        return int(self.indices.numel())

    def __getitem__(self, i: int) -> tuple[Inputs, int]:
        batch = self.clips.get_batch(self.indices[i : i + 1] if i >= 0 else self.indices[i:][:1])
        inputs = to_model_inputs(batch, "cpu")
        return {m: x[0] for m, x in inputs.items()}, int(batch["label"][0])

    @property
    def labels(self) -> Tensor:
        """int64 ``[N]``: every item's label, without loading clips."""
        return self.clips.labels[self.indices]

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0) -> Iterator[tuple[Inputs, Tensor]]:
        """Whole batches ``(inputs, labels)``, read with the split's batch indexing (faster than a
        ``DataLoader`` over single items); ``shuffle`` is seeded."""
        order = self.indices
        if shuffle:
            order = order[torch.randperm(len(order), generator=torch.Generator().manual_seed(seed))]
        for start in range(0, len(order), batch_size):
            batch = self.clips.get_batch(order[start : start + batch_size])
            yield to_model_inputs(batch, "cpu"), batch["label"]


def dataset(track: str | Path | None = None, *, split: str = "train", protocol: str | Path | None = None,
            profile: str | None = None, dataset_id: str | None = None,
            cache: str | Path | None = None) -> ClipTorchDataset:
    """A track's (or a protocol's) data as a torch ``Dataset``: the exact clips, transforms and label order
    robench uses, so an outside model is trained on what it will be evaluated on.

    Args:
        track: a bundled track name (``synthetic``, ``ntu60-xsub``, ``imigue``) or a track file.
        split: ``"train"``, or ``"test"``: for a track, exactly the clips its records are evaluated on.
        protocol: instead of a track, a protocol (name or file) and, with several datasets, ``dataset_id``.
        profile: a protocol profile (e.g. ``synthetic``).
        cache: where generated or prepared data lives (default: as ``robench run``).
    """
    from robench.evaluation import evaluation_indices
    from robench.registry import DATASETS

    variant = _variant(_track_or_protocol(track, protocol, profile), dataset_id)
    data_dir = Path(cache) if cache is not None else default_cache() / "data"
    provider = DATASETS.build(variant.dataset.type, cache_dir=data_dir, **variant.dataset.params)
    provider.check_available()
    clips = provider.split(split)
    indices = evaluation_indices(clips, variant.evaluation) if split == variant.evaluation.split else None
    return ClipTorchDataset(clips, indices)


# -- models ----------------------------------------------------------------------------------------

def build_model(track: str | Path | None = None, *, rgb: Mapping[str, Any] | None = None,
                skeleton: Mapping[str, Any] | None = None, protocol: str | Path | None = None,
                defense: str | None = None, profile: str | None = None, dataset_id: str | None = None,
                seed: int = 0, plugins: Sequence[str | Path] = ()) -> TwoStreamModel:
    """An untrained robench model: backbones for a track's data, or a protocol row's model.

    ``robench.build_model("synthetic", rgb={"backbone": "i3d", "width": 0.125}, skeleton={"backbone": "hcn"})``
    builds I3D + HCN with the track's clip sizes and classes; ``build_model(protocol="quickstart",
    defense="amr")`` builds that row's model with the defense's changes (AMR's modules), initialised as
    robench initialises it for ``seed``. ``plugins`` are Python files registering further backbones.
    """
    from robench.plan import make_plan
    from robench.train.trainer import build_model as build_job_model

    source = _track_or_protocol(track, protocol, profile)
    if isinstance(source, Protocol):
        if rgb is not None or skeleton is not None:
            raise RobenchError("build_model: give backbones (rgb=, skeleton=) with a track, or a protocol and its "
                               "defense, not both")
        job = _protocol_job(make_plan(source), source, defense, dataset_id, seed)
    else:
        backbones = {m: dict(b) for m, b in (("rgb", rgb), ("skeleton", skeleton)) if b is not None}
        if not backbones:
            raise RobenchError("build_model: give rgb={'backbone': ...} and/or skeleton={'backbone': ...}")
        protocol_data = {"name": "api/build_model", "seeds": [seed], "plugins": [str(p) for p in plugins],
                         "dataset": source.dataset, "model": backbones, "defenses": {"model": {"type": "none"}},
                         "training": {"epochs": 1}, "attacks": {}, "scenarios": ["clean"], "eps": [0]}
        plan = make_plan(_validate(protocol_data, f"track {source.name}"))
        (job,) = plan.models.values()
    model, _ = build_job_model(job)
    return model


def load_model(track: str | None = None, entry: str | None = None, *, protocol: str | Path | None = None,
               defense: str | None = None, profile: str | None = None, dataset_id: str | None = None,
               seed: int | None = None, store: str | Path | None = None, cache: str | Path | None = None,
               device: str | None = None, train: bool = True, progress: str = "auto",
               leaderboard: str | Path = "leaderboard", zoo: bool | str | Path = True) -> TwoStreamModel:
    """A trained robench model, in eval mode: a protocol row's (``protocol=``, ``defense=``) or a leaderboard
    entry's (``track``, ``entry``: the entry a record under ``leaderboard`` names).

    A leaderboard entry whose weights are in the model zoo (:mod:`robench.zoo`: robench ships the synthetic
    track's eight; ``zoo=`` a manifest file names others) is loaded from them: fetched once into the cache, their
    SHA-256 checked before they are read, into the architecture the leaderboard evaluated; no network is needed
    for the shipped ones. ``zoo=False`` skips the zoo, and so do ``seed=`` and a record under ``leaderboard`` of
    another model under that entry id. Otherwise, a model in the cache is loaded; one that is not is trained as
    ``robench run`` would train it (and cached), unless ``train`` is False. ``store`` and ``cache`` default as for
    ``robench run``.
    """
    from robench.leaderboard.entry import OutsideModel, ProtocolModel, load_entry
    from robench.leaderboard.record import read_record
    from robench.plan import make_plan
    from robench.progress import Progress
    from robench.protocol import load_protocol
    from robench.runner import Runner, RunSummary
    from robench.runtime import RuntimeOptions, select_device
    from robench.store import ResultsStore
    from robench.train.cache import ModelCache

    if track is not None or entry is not None:
        if track is None or entry is None or protocol is not None:
            raise RobenchError("load_model: give a track and an entry, or protocol= and defense=")
        from robench.zoo.load import load_zoo_model, zoo_for

        in_zoo = zoo_for(track, entry, zoo, leaderboard) if seed is None else None  # another seed: not the record's
        if in_zoo is not None:
            zoo_cache = Path(cache) if cache is not None else default_cache(Path(store) if store is not None else None)
            return load_zoo_model(track, in_zoo, device=device, cache=zoo_cache)
        record = read_record(Path(leaderboard) / track / f"{entry}.json")
        source = Path(record["entry"]["source"])
        found = load_entry(source if source.is_absolute() else Path(leaderboard) / source)
        if isinstance(found.model, OutsideModel):
            raise RobenchError(f"entry {entry} of track {track} is an outside model: build it from its plugins and "
                               f"load {found.model.weights}, or list it in a zoo manifest (load_model(..., zoo=FILE))")
        if not isinstance(found.model, ProtocolModel):
            raise RobenchError(f"entry {entry} of track {track} has no model robench can load")
        protocol, defense = found.model.protocol, found.model.defense
        profile, dataset_id = found.model.profile, found.model.dataset
    if protocol is None or defense is None:
        raise RobenchError("load_model: give protocol= and defense= (or a track and an entry)")
    loaded = load_protocol(protocol, (), profile)
    plan = make_plan(loaded)
    job = _protocol_job(plan, loaded, defense, dataset_id, loaded.seeds[0] if seed is None else seed)
    dev = select_device(device)
    store_at = Path(store) if store is not None else default_store()
    models = ModelCache(Path(cache) if cache is not None else default_cache(store_at))
    if not models.has(job.id) and not train:
        raise RobenchError(f"model {job.id[:12]} ({defense} of {loaded.name}) is not in the cache {models.root}; "
                           f"train it with robench run {protocol} or load_model(..., train=True)")
    with Progress(progress) as bar:
        runner = Runner(ResultsStore(store_at), models, dev, bar, models.root / "data", RuntimeOptions.for_device(dev))
        trained = runner.model_of(plan, job, RunSummary(loaded.name))
    model = trained.model
    if not isinstance(model, TwoStreamModel):
        raise RobenchError(f"model {job.id[:12]} is not a robench model")
    return model.eval()


# -- evaluation ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrackResult:
    """A model's evaluation on a leaderboard track.

    Attributes:
        record: exactly the record ``robench leaderboard add`` writes (results with intervals, every attack
            and AutoAttack member, flags, provenance, per-clip bits and their digest).
    """

    record: dict[str, Any]

    def accuracy(self, column: str = "worst") -> float:
        """Accuracy in percent: ``clean``, ``R``, ``S``, ``RS`` (worst case over the track's attacks), or
        ``worst`` (the ranking column: on a corruption track, ``mean`` over corruptions and severities)."""
        from robench.leaderboard.record import ranking_of

        if column == "worst":
            return ranking_of(self.record)[0]
        return float(self.record["results"][column]["accuracy"])

    def per_clip(self, column: str = "worst") -> np.ndarray:
        """bool ``[n]``: which evaluated clips the model classifies correctly under every attack of ``column``
        (``worst``: the ranking's outcomes; on a corruption track every (clip, corruption, severity), pooled)."""
        from robench.leaderboard.record import challenged_columns, ranking_of

        if column == "worst":
            return ranking_of(self.record)[1]
        return challenged_columns(self.record)[column]  # (a record's accepted challenges count as attacks)

    @property
    def flags(self) -> list[dict[str, Any]]:
        """The sanity flags raised on the evaluation (``code``, ``message``, ``cell``)."""
        return list(self.record["flags"])

    def write(self, root: str | Path = "leaderboard") -> Path:
        """Write the record (sealed, checked, atomically) where ``robench leaderboard render`` reads records:
        ``<root>/<track>/<entry id>.json``; returns that path."""
        from robench.leaderboard.names import check_name, inside
        from robench.leaderboard.record import write_record

        folder = Path(root)
        track = check_name(self.record["track"]["name"], "track name")
        entry = check_name(self.record["entry"]["id"], "entry id")
        target = inside(folder, folder / track / f"{entry}.json", "record")
        write_record(target, self.record)
        return target


@dataclass(frozen=True)
class CellOutcome:
    """One evaluated cell: the model clean or under one attack, scenario and eps.

    Attributes:
        scenario: ``clean``, ``R``, ``S`` or ``RS``.
        attack: the protocol's attack id (None for clean).
        eps: nominal radius (threat-model units; 0 for clean).
        correct: bool ``[n]`` per evaluated clip.
    """

    scenario: str
    attack: str | None
    eps: float
    correct: np.ndarray

    @property
    def accuracy(self) -> float:
        """Percent of the evaluated clips classified correctly."""
        return 100.0 * float(self.correct.mean()) if self.correct.size else float("nan")


def evaluate(model: nn.Module | Callable[[Inputs], Tensor], track: str | Path = "synthetic", *,
             modalities: Sequence[str] | None = None, name: str | None = None, authors: Sequence[str] = (),
             entry_id: str = "python-model", baseline: str | Path | TrackResult | None = None,
             store: str | Path | None = None, cache: str | Path | None = None, device: str | None = None,
             progress: str = "auto") -> TrackResult:
    """Evaluate a model object on a leaderboard track: the same attacks, clips, checks and record as
    ``robench leaderboard add`` (fp32).

    Args:
        model: maps robench's input dict to logits (wrap ``model(rgb, skeleton)`` in :class:`TwoInputs`).
            It is evaluated as it is, in eval mode; robench never trains or stores it.
        track: a bundled track or a track file.
        modalities: the inputs the model reads (default: a robench model's or adapter's own, else both).
        name: the model's name in the record (default: its class name).
        authors: the record's authors.
        entry_id: the record's entry id (its file name under the track's folder).
        baseline: the track's baseline record (a file or a result), for RI; without it RI is null.
        store: a results store to keep the cells in (reused by a later call on the same model and code); by
            default a temporary one.
        cache: where generated data lives (default: as ``robench run``).
    """
    from robench.leaderboard.entry import Entry, ObjectModel
    from robench.leaderboard.evaluate import evaluate_entry
    from robench.leaderboard.record import read_record
    from robench.leaderboard.tracks import load_track

    provided = ProvidedModel(model if isinstance(model, nn.Module) else _as_module(model), modalities)
    entry = Entry(id=entry_id, name=name or type(model).__name__, authors=tuple(authors) or ("(unknown)",),
                  architecture=type(model).__name__, defense="(as given)", model=ObjectModel(provided),
                  path=Path.cwd() / f"{entry_id}.py")
    base = baseline.record if isinstance(baseline, TrackResult) else \
        read_record(baseline) if baseline is not None else None
    with _store(store) as results:
        record = evaluate_entry(entry, load_track(str(track)), results, _cache(cache, store), device, progress,
                                source=f"python object {provided.digest}", baseline=base)
    return TrackResult(record)


def evaluate_protocol(model: nn.Module | Callable[[Inputs], Tensor], protocol: str | Path, *,
                      profile: str | None = None, dataset_id: str | None = None, overrides: Sequence[str] = (),
                      modalities: Sequence[str] | None = None, store: str | Path | None = None,
                      cache: str | Path | None = None, device: str | None = None,
                      progress: str = "auto") -> list[CellOutcome]:
    """Evaluate a model object under a protocol's threat model: its dataset's evaluated clips, its attacks,
    scenarios and eps (``overrides`` as ``--set``); returns every cell's per-clip results. The cells are
    stored (under the protocol's name with ``@python``) when ``store`` is given."""
    from robench.defenses.provided import Provided
    from robench.plan import make_plan
    from robench.progress import Progress
    from robench.protocol.load import RawProtocol, load_raw
    from robench.protocol.schema import validate
    from robench.runner import Runner
    from robench.runtime import RuntimeOptions, select_device
    from robench.store import unpack_bits
    from robench.train.cache import ModelCache
    from robench.train.trainer import TrainedModel

    provided = ProvidedModel(model if isinstance(model, nn.Module) else _as_module(model), modalities)
    raw = load_raw(protocol, tuple(overrides), profile)
    data = {k: v for k, v in raw.data.items() if k not in ("tables", "figures", "claims", "profiles")}
    data["name"] = f"{raw.data.get('name', 'protocol')}@python"
    data["model"] = {m: {"backbone": "provided", "digest": provided.digest} for m in provided.modalities}
    data["defenses"] = {"python": {"type": "provided", "label": "model object", "digest": provided.digest}}
    data["training"] = {"epochs": 1}
    if "datasets" in data:  # the rows' per-dataset settings do not apply to the object
        chosen = {k: v for k, v in data["datasets"].items() if v is not None and dataset_id in (None, k)}
        if not chosen:
            raise RobenchError(f"protocol {protocol}: no dataset {dataset_id!r}; allowed: "
                               f"{', '.join(data['datasets'])}")
        data["datasets"] = {k: {**v, "overrides": {o: x for o, x in (v.get("overrides") or {}).items()
                                                    if o not in ("defenses", "model", "training")}}
                            for k, v in chosen.items()}
    checked = validate(RawProtocol(data, raw.path, raw.origins, raw.profile))
    plan = make_plan(checked)
    dev = select_device(device)
    cache_dir = _cache(cache, store)
    served = {job_id: TrainedModel(provided, Provided(provided.digest)) for job_id in plan.models}
    with _store(store) as results, Progress(progress) as bar:
        Runner(results, ModelCache(cache_dir), dev, bar, cache_dir / "data", RuntimeOptions.for_device(dev),
               provided=served).run(checked, list(overrides))
        rows = results.cells(list(plan.cells))
    out = []
    for cell in plan.cells.values():
        row = rows[cell.id]
        bits = unpack_bits(row["per_sample"], row["n"])
        if bits is None:
            raise RobenchError(f"cell {cell.id}: the store kept no per-clip results")
        out.append(CellOutcome(cell.scenario, cell.attack_id, cell.eps, bits.astype(bool)))
    return out


# -- runs and reports ------------------------------------------------------------------------------

def run(protocol: str | Path, *, profile: str | None = None, overrides: Sequence[str] = (),
        store: str | Path | None = None, cache: str | Path | None = None, device: str | None = None,
        progress: str = "auto") -> Any:
    """Run a protocol in this process, as ``robench run`` does: train what is missing, evaluate what is not
    stored. Returns the run's summary (cells written and skipped, models trained and loaded, seconds)."""
    from robench.progress import Progress
    from robench.protocol import load_protocol
    from robench.runner import Runner
    from robench.runtime import RuntimeOptions, select_device
    from robench.store import ResultsStore
    from robench.train.cache import ModelCache

    loaded = load_protocol(protocol, tuple(overrides), profile)
    dev = select_device(device)
    store_at = Path(store) if store is not None else default_store()
    models = ModelCache(Path(cache) if cache is not None else default_cache(store_at))
    with Progress(progress) as bar:
        return Runner(ResultsStore(store_at), models, dev, bar, models.root / "data",
                      RuntimeOptions.for_device(dev)).run(loaded, list(overrides))


def render_report(store: str | Path | None = None, *, fmt: str = "markdown", protocols: Sequence[str] = (),
                  out: str | Path | None = None) -> str:
    """The report of a results store (the latest run of each protocol, or of ``protocols``) in ``fmt``
    (markdown, html, latex, csv), as ``robench report`` renders it; with ``out`` it is also written there,
    with its figures beside it."""
    from robench.report.output import report_text

    return report_text(Path(store) if store is not None else default_store(), fmt, list(protocols),
                       Path(out) if out is not None else None)


# -- helpers ---------------------------------------------------------------------------------------

def _as_module(fn: Callable[[Inputs], Tensor]) -> nn.Module:
    from robench.models.provided import _Callable

    return _Callable(fn)


@contextmanager
def _store(location: str | Path | None) -> Iterator[Any]:
    """The given results store, or a temporary one for the duration of the block."""
    from robench.store import ResultsStore

    if location is not None:
        yield ResultsStore(location if "://" in str(location) else Path(location))
        return
    with tempfile.TemporaryDirectory(prefix="robench-") as tmp:
        yield ResultsStore(Path(tmp) / "results.sqlite")


def _cache(cache: str | Path | None, store: str | Path | None) -> Path:
    if cache is not None:
        return Path(cache)
    return default_cache(Path(store) if store is not None and "://" not in str(store) else None)


def _validate(data: dict[str, Any], where: str) -> Protocol:
    from robench.protocol.load import RawProtocol
    from robench.protocol.schema import validate

    return validate(RawProtocol(data, Path(where), {}))


def _track_or_protocol(track: str | Path | None, protocol: str | Path | None, profile: str | None) -> Any:
    """The track (a :class:`~robench.leaderboard.tracks.Track`) or the validated protocol asked for."""
    from robench.leaderboard.tracks import load_track
    from robench.protocol import load_protocol

    if (track is None) == (protocol is None):
        raise RobenchError("give a track (e.g. 'synthetic') or protocol=..., not both")
    if track is not None:
        return load_track(str(track))
    return load_protocol(protocol, (), profile)  # type: ignore[arg-type]


def _variant(source: Any, dataset_id: str | None) -> Any:
    """The protocol variant a track or a protocol (and ``dataset_id``) names."""
    from robench.leaderboard.tracks import Track

    if isinstance(source, Track):
        data = {"name": f"track/{source.name}", "dataset": source.dataset, "model": {"skeleton": {"backbone": "hcn"}},
                "defenses": {"none": {}}, "attacks": {}, "scenarios": ["clean"], "eps": [0],
                "evaluation": source.data["evaluation"], "threat": source.data.get("threat", {})}
        source = _validate(data, f"track {source.name}")
    variants = source.variants
    if dataset_id is None and len(variants) > 1:
        raise RobenchError(f"protocol {source.name} has datasets {', '.join(variants)}: give dataset_id=")
    key = dataset_id or next(iter(variants))
    if key not in variants:
        raise RobenchError(f"protocol {source.name}: no dataset {key!r}; allowed: {', '.join(variants)}")
    return variants[key]


def _protocol_job(plan: Any, protocol: Protocol, defense: str | None, dataset_id: str | None, seed: int) -> Any:
    """The model job of a protocol row (``defense`` id), dataset and seed."""
    from robench.plan import ModelKey

    variant = _variant(protocol, dataset_id)
    if defense is None or defense not in variant.defenses:
        raise RobenchError(f"protocol {protocol.name}: defense {defense!r}; allowed: {', '.join(variant.defenses)}")
    key = ModelKey(variant.id, defense, seed)
    if key not in plan.model_index:
        raise RobenchError(f"protocol {protocol.name}: no seed {seed}; seeds: {protocol.seeds}")
    return plan.models[plan.model_index[key]]
