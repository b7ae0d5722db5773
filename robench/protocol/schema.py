"""Protocol validation: a merged protocol mapping -> a typed :class:`Protocol`.

Every key is checked before any work starts. An error names the file that set the key, the key
path, what was found and what is allowed (:class:`~robench.errors.ProtocolError`).

Top-level keys (see ``robench/protocols/quickstart.yaml`` for a commented example):

``name``, ``description``, ``version``
    identity; ``name`` keys the protocol in the results store.
``plugins``
    Python files imported before validation (their ``@register_*`` decorators add components).
``seeds``
    training seeds; every model and cell is run once per seed.
``dataset`` or ``datasets``
    one dataset (``{name: synthetic, ...params}``) or several by id, each with optional
    ``overrides:`` merged over the rest of the protocol for that dataset (e.g. epochs, AMR count);
    ``null`` leaves out a dataset an included protocol defines.
``profiles``
    named sets of overrides chosen with ``--profile NAME`` (``synthetic``: CPU-sized stand-ins).
``figures``, ``claims``
    the figures to draw and the paper's claims to check (see :mod:`robench.protocol.layout`).
``model``
    ``{rgb: {backbone: i3d, ...params}, skeleton: {backbone: hcn, ...params}}``; ``null`` drops a branch.
``training``
    optimiser, schedule and the training attack (``attack: {type: pgd, eps: 8/255, ...}``).
``threat``
    per modality: ``scale`` (eps and step sizes are multiplied by it) and ``bounds`` (valid range);
    for the skeleton, ``plausible: {bone, angle, velocity, acceleration}`` (relative tolerances) keeps
    adversarial skeletons plausible bodies; ``norm``: ``linf`` (the paper's) or ``l2`` (per-modality L2
    balls, for evaluation attacks).
``defenses`` / ``attacks``
    mappings id -> ``{type, label, ...params}`` (``type`` defaults to the id); defenses may carry
    ``training:`` and ``model:`` overrides, attacks an ``eps:`` list of their own.
``scenarios``, ``eps``, ``evaluation``
    which modalities are attacked (clean, R, S, RS), the radii, and the evaluation set.
``tables``
    the tables to render: attack, eps, rows, columns, baseline.
``budgets``
    grids of independent RGB and skeleton radii for one attack (:mod:`robench.protocol.budgets`).
``corruptions``
    natural corruptions of either input at severities 1-5 (:mod:`robench.protocol.corruptions`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

from robench.errors import ProtocolError, UnknownNameError
from robench.params import check_params, signature_params
from robench.protocol import layout
from robench.protocol.budgets import BudgetGrid, budgets
from robench.protocol.check import Checker, Component, instantiate
from robench.protocol.corruptions import CorruptionSuite, corruptions
from robench.protocol.layout import STANDARD_COLUMNS, ClaimSpec, FigureSpec, TableSpec
from robench.protocol.load import KeyPath, RawProtocol, merge
from robench.registry import ATTACKS, BACKBONES, DATASETS, DEFENSES, Registry, load_builtins, load_plugin_file
from robench.scenarios import SCENARIOS  # re-exported: robench.protocol.schema.SCENARIOS

#: standard table columns: scenario accuracies, Avg = (R + S + RS) / 3 and RI (paper Eq. 13-14)
COLUMNS: tuple[str, ...] = STANDARD_COLUMNS

TOP_LEVEL = ("name", "description", "version", "plugins", "seeds", "dataset", "datasets", "model", "training",
             "threat", "defenses", "attacks", "scenarios", "eps", "evaluation", "tables", "figures", "claims",
             "profiles", "budgets", "corruptions")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/@]*$")


@dataclass
class TrainingConfig:
    """How models are trained (paper Section 4.2 unless noted).

    Args:
        epochs: training epochs (paper: 80 NTU, 40 iMiGUE).
        batch_size: clips per optimiser step (paper: 16).
        optimizer: "sgd" (the paper), "adam" or "adamw".
        lr: initial learning rate (paper: 0.01).
        momentum: SGD momentum (paper: 0.9); Adam's beta1.
        weight_decay: weight decay (paper: 5e-4); decoupled for "adamw".
        nesterov: Nesterov momentum (SGD).
        schedule: "cosine" (annealing with T_max = epochs, stepped per epoch, as the paper) or "constant".
        attack_mode: the model's mode while training attacks run: "eval" (BatchNorm running
            statistics, the default) or "train".
        max_steps_per_epoch: cap on SGD steps per epoch (smoke tests), null = the whole training set.
        grad_clip: clip the global gradient norm to this value (null = off).
        batchnorm: BatchNorm statistics in training under ``torchrun``: "sync" (over the global batch,
            SyncBatchNorm; CUDA only) or "per-rank" (each rank over its own share). Part of a model's
            identity only when it is trained on several ranks; one process always uses the whole batch.
        sample_seeds: draw dropout masks and the training attack's random starts from per-clip seeds
            (:mod:`robench.models.sampling`) instead of the process's random stream, so that the
            weights do not depend on the batch a clip is in or on the number of ranks. Off by default
            (the models of robench's published results were trained with the stream).
    """

    epochs: int = 20
    batch_size: int = 16
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    schedule: Literal["cosine", "constant"] = "cosine"
    attack_mode: Literal["eval", "train"] = "eval"
    max_steps_per_epoch: int | None = None
    grad_clip: float | None = None
    batchnorm: Literal["sync", "per-rank"] = "sync"
    sample_seeds: bool = False
    #: the training attack (set from ``training.attack``; not a plain key)
    attack: Component = field(default_factory=lambda: Component(
        "pgd", {"steps": 10, "step_size": 2 / 255, "random_start": True, "early_stop": False}))
    #: the training attack's radius, in the threat model's units (scaled per modality)
    attack_eps: float = 8 / 255

    def identity(self) -> dict[str, Any]:
        """The settings of this config that determine a trained model, the training attack aside
        (it is part of a model's identity only for defenses that declare ``uses_training_attack``) and
        ``batchnorm`` (part of it only with several ranks, :func:`robench.plan.make_plan`)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name not in ("attack", "attack_eps", "batchnorm", "sample_seeds")}
        if self.sample_seeds:  # (absent when off: the ids of models trained before it existed stay)
            out["sample_seeds"] = True
        return out


@dataclass(frozen=True)
class ThreatConfig:
    """Per-modality units of the threat model (docs/concepts.md, *The threat model and its units*).

    ``scale[m]`` multiplies every eps and step size for modality m (1.0: RGB on the [0, 1] scale,
    skeleton in metres, so 8/255 means about 3 cm); ``bounds[m]`` is the valid input range
    (RGB [0, 1]; skeleton unbounded) that adversarial inputs are clipped to; ``plausible`` keeps an
    attacked skeleton a plausible body (bone lengths, joint angles, velocities, accelerations within
    relative tolerances of the clean clip: :mod:`robench.attacks.plausible`), for every evaluation
    attack (training attacks stay L-inf). ``norm`` (the protocol's ``threat.norm``) is the ball's norm:
    ``linf`` (the paper's, ``||x'_m - x_m||_inf <= eps_m``) or ``l2`` (``||x'_m - x_m||_2 <= eps_m`` per
    clip, the norm over all of modality m's values of one clip; eps in the same input units, scaled by
    ``scale[m]`` in the same way), for every evaluation attack; training attacks stay L-inf.
    """

    scale: dict[str, float] = field(default_factory=lambda: {"rgb": 1.0, "skeleton": 1.0})
    bounds: dict[str, tuple[float, float] | None] = field(default_factory=lambda: {"rgb": (0.0, 1.0), "skeleton": None})
    #: plausible-skeleton limits (every key of :class:`~robench.attacks.plausible.SkeletonLimits`), or None
    plausible: dict[str, float] | None = None
    #: the threat model's norm, ``linf`` or ``l2`` (:data:`robench.attacks.base.NORMS`)
    norm: Literal["linf", "l2"] = "linf"

    #: the values ``threat.norm`` allows
    NORMS = ("linf", "l2")  # (a plain class attribute, not a field)

    def __post_init__(self) -> None:
        if self.norm not in self.NORMS:
            raise ProtocolError(None, "threat.norm", self.norm, " or ".join(self.NORMS))

    @classmethod
    def checked_norm(cls, c: Checker, value: Any, path: KeyPath) -> Literal["linf", "l2"]:
        """``threat.norm`` as read from a protocol (``path``, e.g. ``("threat", "norm")``): ``linf`` or
        ``l2``, else a :class:`ProtocolError` naming the file that set it, the key and the allowed values."""
        if value == "linf" or value == "l2":
            return value
        raise c.fail(path, value, " or ".join(cls.NORMS) + " (the threat model's ball: per-modality L-inf, or "
                     "per-clip L2 per modality)")

    def attack_kwargs(self, attack: Component, modalities: Sequence[str], eps: float | Mapping[str, float],
                      evaluation: bool = True) -> dict[str, Any]:
        """Constructor arguments of ``attack`` on ``modalities`` at nominal radius ``eps`` (one for every attacked
        modality, or one per modality), in input units.

        eps and every parameter the attack lists in ``scaled_params`` (step sizes) are multiplied by
        each modality's ``scale``; bounds are added per attacked modality, and for an evaluation attack
        the plausible-skeleton limits (a training attack stays the plain L-inf one, so that the same
        trained models are evaluated under both threat models). Under ``norm: l2`` an evaluation attack
        gets ``norm="l2"`` (absent under ``linf``, so L-inf cells keep their ids), and each parameter of
        its ``l2_eps_fractions`` the protocol leaves out (PGD's ``step_size``) defaults to that fraction
        of each modality's scaled eps; an attack that does not implement L2 is a :class:`ProtocolError`.
        A training attack stays L-inf.
        """
        cls = ATTACKS.get(attack.type)
        mods = list(modalities)
        params = dict(attack.params)
        for name in cls.scaled_params:
            if name in params:
                value = params[name]
                params[name] = {m: float(value[m] if isinstance(value, dict) else value) * self.scale[m] for m in mods}
        nominal = {m: float(eps[m]) for m in mods} if isinstance(eps, Mapping) else dict.fromkeys(mods, float(eps))
        params.update(modalities=mods, eps={m: nominal[m] * self.scale[m] for m in mods},
                      bounds={m: self.bounds[m] for m in mods})
        if evaluation and self.plausible is not None and "skeleton" in mods:
            if "plausible" not in signature_params(cls):
                raise ProtocolError(None, "threat.skeleton.plausible", "set",
                                    f"attacks that take the plausible-skeleton limits; attack '{attack.type}' does "
                                    "not (accept 'plausible: Plausible = None' and pass it to Attack.__init__: "
                                    "Attack.project applies it)")
            params["plausible"] = dict(self.plausible)
        if evaluation and self.norm != "linf":
            if self.norm not in cls.norms or "norm" not in signature_params(cls):
                raise ProtocolError(None, "threat.norm", self.norm,
                                    f"linf, or attacks that implement the {self.norm} threat model; attack "
                                    f"'{attack.type}' implements {', '.join(cls.norms)} only")
            for name, fraction in cls.l2_eps_fractions.items():
                if name not in params:
                    params[name] = {m: fraction * params["eps"][m] for m in mods}
            params["norm"] = self.norm
        return params


@dataclass(frozen=True)
class EvaluationConfig:
    """Which clips are evaluated.

    Args:
        split: dataset split to evaluate on.
        max_samples: evaluate a fixed, seeded random subset of this size (null = the whole split).
        batch_size: clips per attack batch (a speed knob: results do not depend on it).
        seed: seed of the subset and of the attacks' random starts.
        bpda: the attacks' gradient through layers that offer a backward approximation
            (:mod:`robench.models.bpda`, e.g. ExFMem's memory): "off" (exact), "identity" or "linear".
    """

    split: str = "test"
    max_samples: int | None = None
    batch_size: int = 32
    seed: int = 0
    bpda: Literal["off", "identity", "linear"] = "off"


@dataclass
class DefenseEntry:
    """A row of the benchmark: a defense, its display label, and its model and training settings."""

    id: str
    label: str
    defense: Component
    model: dict[str, Component]
    training: TrainingConfig


@dataclass
class AttackEntry:
    """An evaluation attack, its display label and the radii it is run at."""

    id: str
    label: str
    attack: Component
    eps: list[float]


@dataclass
class Variant:
    """The protocol for one dataset (the protocol with that dataset's ``overrides`` applied)."""

    id: str
    label: str
    dataset: Component
    defenses: dict[str, DefenseEntry]
    attacks: dict[str, AttackEntry]
    scenarios: list[str]
    threat: ThreatConfig
    evaluation: EvaluationConfig
    #: grids of independent (eps_R, eps_S) radii, by id
    budgets: dict[str, BudgetGrid] = field(default_factory=dict)
    #: the corruption suite, if the protocol runs one
    corruptions: CorruptionSuite | None = None


@dataclass
class Protocol:
    """A validated protocol."""

    name: str
    description: str
    version: int
    path: Path
    seeds: list[int]
    plugins: list[Path]
    variants: dict[str, Variant]
    tables: list[TableSpec]
    figures: list[FigureSpec]
    claims: list[ClaimSpec]
    data: dict[str, Any]  # the merged mapping (stored with results)
    profile: str | None = None


# -- helpers ---------------------------------------------------------------------------------------

# -- sections --------------------------------------------------------------------------------------

def _training(c: Checker, value: Any, path: KeyPath) -> TrainingConfig:
    data = dict(c.mapping(value, path))
    attack_raw = c.mapping(data.pop("attack", None), (*path, "attack"))
    params = check_params(TrainingConfig, data, kind="training", where=lambda n: c.where((*path, n)),
                          exclude=("attack", "attack_eps"))
    cfg = TrainingConfig(**params)
    for name in ("epochs", "batch_size"):
        if getattr(cfg, name) < 1:
            raise c.fail((*path, name), getattr(cfg, name), "an integer >= 1")
    if cfg.max_steps_per_epoch is not None and cfg.max_steps_per_epoch < 1:
        raise c.fail((*path, "max_steps_per_epoch"), cfg.max_steps_per_epoch, "null or an integer >= 1")
    for name in ("lr", "momentum", "weight_decay"):
        if not 0 <= getattr(cfg, name) < float("inf"):  # NaN fails too
            raise c.fail((*path, name), getattr(cfg, name), "a finite number >= 0")
    if cfg.grad_clip is not None and not 0 < cfg.grad_clip < float("inf"):
        raise c.fail((*path, "grad_clip"), cfg.grad_clip, "null (off) or a finite number > 0")
    if attack_raw:
        apath = (*path, "attack")
        a = dict(attack_raw)
        atype = a.pop("type", cfg.attack.type)
        eps = c.number(a.pop("eps", cfg.attack_eps), (*apath, "eps"), minimum=0.0)
        if not eps >= 0:  # NaN (c.number let it through)
            raise c.fail((*apath, "eps"), eps, "a number >= 0 (8/255 style fractions allowed)")
        base = cfg.attack.params if atype == cfg.attack.type else {}
        cls, comp = c.component(ATTACKS, atype, {**base, **a}, apath, "type",
                                exclude=tuple(cls_harness(ATTACKS, atype)))
        instantiate(c, apath, lambda: cls(modalities=["rgb"], eps=0.0, **comp.params), comp.params)
        cfg.attack, cfg.attack_eps = comp, eps
    return cfg


def cls_harness(registry: Registry[Any], name: str) -> tuple[str, ...]:
    """The parameters robench fills for component ``name`` (none if the name is unknown: the lookup reports it)."""
    try:
        return registry.get(name).harness_params
    except UnknownNameError:
        return ()


def _model(c: Checker, value: Any, path: KeyPath) -> dict[str, Component]:
    data = c.mapping(value, path, "a mapping with keys rgb and/or skeleton")
    c.keys(data, path, ("rgb", "skeleton"))
    out: dict[str, Component] = {}
    for modality, spec in data.items():
        if spec is None:
            continue
        spec = dict(c.mapping(spec, (*path, modality), "{backbone: NAME, ...parameters} or null"))
        if "backbone" not in spec:
            raise c.fail((*path, modality, "backbone"), "(missing)",
                         "a registered backbone: " + ", ".join(BACKBONES.names()))
        name = spec.pop("backbone")
        cls = c.lookup(BACKBONES, name, (*path, modality, "backbone"))
        if cls.modality not in (modality, ""):  # "": a placeholder standing for any input (a provided model)
            raise c.fail((*path, modality, "backbone"), name, f"a {modality} backbone (this one reads {cls.modality})")
        bcls, out[modality] = c.component(BACKBONES, name, spec, (*path, modality), "backbone")
        params = out[modality].params
        if params.get("checkpoint") and hasattr(bcls, "check_checkpoint"):  # read the weights before any training
            instantiate(c, (*path, modality), partial(bcls.check_checkpoint, params),
                        {"checkpoint": params["checkpoint"]})
    if not out:
        raise c.fail(path, value, "at least one of rgb and skeleton")
    return out


def _threat(c: Checker, value: Any, path: KeyPath) -> ThreatConfig:
    data = dict(c.mapping(value, path))
    norm = ThreatConfig.checked_norm(c, data.pop("norm"), (*path, "norm")) if "norm" in data else "linf"
    c.keys(data, path, ("rgb", "skeleton", "norm"))
    base = ThreatConfig()
    scale, bounds = dict(base.scale), dict(base.bounds)
    plausible: dict[str, float] | None = None
    for m, spec in data.items():
        spec = c.mapping(spec, (*path, m))
        c.keys(spec, (*path, m), ("scale", "bounds", "plausible") if m == "skeleton" else ("scale", "bounds"))
        if "scale" in spec:
            scale[m] = c.number(spec["scale"], (*path, m, "scale"), minimum=0.0)
            if not scale[m] < float("inf"):  # NaN and inf
                raise c.fail((*path, m, "scale"), spec["scale"], "a finite number >= 0")
        if "bounds" in spec:
            b = spec["bounds"]
            if b is None:
                bounds[m] = None
            else:
                pair = c.typed(b, list[float], (*path, m, "bounds"))
                if len(pair) != 2 or pair[0] >= pair[1]:
                    raise c.fail((*path, m, "bounds"), b, "null or [low, high] with low < high")
                bounds[m] = (pair[0], pair[1])
        if "plausible" in spec and spec["plausible"] is not None:
            plausible = _plausible(c, spec["plausible"], (*path, m, "plausible"))
    return ThreatConfig(scale, bounds, plausible, norm)


def _plausible(c: Checker, value: Any, path: KeyPath) -> dict[str, float]:
    """``threat.skeleton.plausible``: relative tolerances, every key filled (``{}`` takes the defaults)."""
    from robench.attacks.plausible import SkeletonLimits

    data = c.mapping(value, path)
    allowed = tuple(SkeletonLimits.__dataclass_fields__)
    c.keys(data, path, allowed)
    given = {}
    for k, v in data.items():
        given[k] = c.number(v, (*path, k), minimum=0.0)
    return SkeletonLimits(**given).as_params()


def _eps_list(c: Checker, value: Any, path: KeyPath) -> list[float]:
    if not isinstance(value, list) or not value:
        value = [value] if isinstance(value, (int, float, str)) else value
    if not isinstance(value, list) or not value:
        raise c.fail(path, value, "a non-empty list of numbers (fractions like 8/255 allowed)")
    out = [c.number(v, (*path, str(i)), minimum=0.0) for i, v in enumerate(value)]
    for i, x in enumerate(out):
        if not x >= 0:  # NaN (c.number let it through)
            raise c.fail((*path, str(i)), value[i], "a number >= 0 (8/255 style fractions allowed)")
    return out


def _defenses(c: Checker, value: Any, path: KeyPath, model: dict[str, Component], training_raw: Any,
              model_raw: Any) -> dict[str, DefenseEntry]:
    data = c.mapping(value, path, "a mapping of defense id -> {type, label, ...parameters}")
    if not data:
        raise c.fail(path, value, "at least one defense, e.g. {none: {label: None}}")
    out: dict[str, DefenseEntry] = {}
    for did, spec in data.items():
        dpath = (*path, str(did))
        spec = dict(c.mapping(spec, dpath, "{type, label, training, model, ...parameters}"))
        dtype = spec.pop("type", did)
        label = spec.pop("label", did)
        if not isinstance(label, str):
            label = str(label)
        t_over = c.mapping(spec.pop("training", None), (*dpath, "training"))
        m_over = c.mapping(spec.pop("model", None), (*dpath, "model"))
        cls, comp = c.component(DEFENSES, dtype, spec, dpath, "type")
        instantiate(c, dpath, partial(cls, **comp.params), comp.params)
        training = _training(c, merge(c.mapping(training_raw, ("training",)), t_over, {}, ""), ("training",)) \
            if t_over else _training(c, training_raw, ("training",))
        if m_over:
            dmodel = _model(c, merge(c.mapping(model_raw, ("model",)), m_over, {}, ""), (*dpath, "model"))
        else:
            dmodel = model
        out[str(did)] = DefenseEntry(str(did), label, comp, dmodel, training)
    return out


def _attacks(c: Checker, value: Any, path: KeyPath, default_eps: list[float]) -> dict[str, AttackEntry]:
    data = c.mapping(value, path, "a mapping of attack id -> {type, label, ...parameters}")
    out: dict[str, AttackEntry] = {}
    for aid, spec in data.items():
        apath = (*path, str(aid))
        spec = dict(c.mapping(spec, apath, "{type, label, eps, ...parameters}"))
        atype = spec.pop("type", aid)
        label = str(spec.pop("label", aid))
        eps = _eps_list(c, spec.pop("eps"), (*apath, "eps")) if "eps" in spec else list(default_eps)
        cls, comp = c.component(ATTACKS, atype, spec, apath, "type", exclude=cls_harness(ATTACKS, str(atype)))
        # built at the largest radius it will run at, so that settings which fail only there fail here
        instantiate(c, apath, partial(cls, modalities=["rgb"], eps=max(eps, default=0.0), **comp.params), comp.params)
        out[str(aid)] = AttackEntry(str(aid), label, comp, eps)
    return out


def _scenarios(c: Checker, value: Any, path: KeyPath) -> list[str]:
    allowed = "a list drawn from " + ", ".join(SCENARIOS)
    if not isinstance(value, list) or not value:
        raise c.fail(path, value, allowed)
    for i, s in enumerate(value):
        if s not in SCENARIOS:
            raise c.fail((*path, str(i)), s, allowed)
    return [s for s in SCENARIOS if s in value]


def _evaluation(c: Checker, value: Any, path: KeyPath) -> EvaluationConfig:
    data = c.mapping(value, path)
    params = check_params(EvaluationConfig, data, kind="evaluation", where=lambda n: c.where((*path, n)))
    cfg = EvaluationConfig(**params)
    if cfg.batch_size < 1:
        raise c.fail((*path, "batch_size"), cfg.batch_size, "an integer >= 1")
    if cfg.max_samples is not None and cfg.max_samples < 1:
        raise c.fail((*path, "max_samples"), cfg.max_samples, "null or an integer >= 1")
    return cfg


def _dataset(c: Checker, value: Any, path: KeyPath) -> Component:
    spec = dict(c.mapping(value, path, "{name: DATASET, ...parameters}"))
    if "name" not in spec:
        raise c.fail((*path, "name"), "(missing)", "a registered dataset: " + ", ".join(DATASETS.names()))
    name = spec.pop("name")
    cls, comp = c.component(DATASETS, name, spec, path, "name", exclude=cls_harness(DATASETS, str(name)))
    instantiate(c, path, lambda: cls(**comp.params), comp.params)
    return comp


def _variant(c: Checker, vid: str, label: str, dataset: Component, data: dict[str, Any]) -> Variant:
    training_raw = data.get("training")
    _training(c, training_raw, ("training",))  # report errors in the shared section once, at its own path
    if "model" not in data:
        raise c.fail(("model",), "(missing)", "{rgb: {backbone: i3d, ...}, skeleton: {backbone: hcn, ...}}")
    model = _model(c, data["model"], ("model",))
    eps = _eps_list(c, data.get("eps", [8 / 255]), ("eps",))
    if "defenses" not in data:
        raise c.fail(("defenses",), "(missing)", "a mapping of defense id -> {type, label, ...}")
    defenses = _defenses(c, data["defenses"], ("defenses",), model, training_raw, data["model"])
    attacks = _attacks(c, data.get("attacks"), ("attacks",), eps)
    return Variant(
        id=vid, label=label, dataset=dataset, defenses=defenses, attacks=attacks,
        scenarios=_scenarios(c, data.get("scenarios", list(SCENARIOS)), ("scenarios",)),
        threat=_threat(c, data.get("threat"), ("threat",)),
        evaluation=_evaluation(c, data.get("evaluation"), ("evaluation",)),
        budgets=budgets(c, data.get("budgets"), ("budgets",), list(attacks), list(defenses)),
        corruptions=corruptions(c, data.get("corruptions"), ("corruptions",), list(defenses)),
    )


def validate(raw: RawProtocol) -> Protocol:
    """Check a merged protocol and return it typed; raises :class:`ProtocolError` on the first problem."""
    load_builtins()
    c = Checker(raw)
    data = raw.data
    c.keys(data, (), TOP_LEVEL)
    name = data.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise c.fail(("name",), name, "a name of letters, digits, '_', '-', '.', '/', '@'")
    plugins = []
    for i, p in enumerate(c.typed(data.get("plugins", []), list[str], ("plugins",))):
        src = Path(raw.file_of(("plugins", str(i))) if ("plugins",) in raw.origins else raw.path)
        path = (src.parent / p) if not Path(p).is_absolute() and src.exists() else Path(p)
        if not path.is_file():
            raise c.fail(("plugins", str(i)), p, f"a Python file (looked for {path})")
        load_plugin_file(path)
        plugins.append(path.resolve())
    seeds = c.typed(data.get("seeds", [0]), list[int], ("seeds",))
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise c.fail(("seeds",), data.get("seeds"), "a non-empty list of distinct integers in 0..2^63-1")

    if ("dataset" in data) == ("datasets" in data):
        raise c.fail(("dataset",), "(both)" if "dataset" in data else "(missing)",
                     "exactly one of 'dataset' (one dataset) or 'datasets' (several, by id)")
    shared = {k: v for k, v in data.items() if k not in ("dataset", "datasets")}
    variants: dict[str, Variant] = {}
    if "dataset" in data:
        ds = _dataset(c, data["dataset"], ("dataset",))
        variants[ds.type] = _variant(c, ds.type, ds.type, ds, shared)
    else:
        entries = c.mapping(data["datasets"], ("datasets",),
                            "a mapping of dataset id -> {name, ...parameters, overrides}")
        entries = {k: v for k, v in entries.items() if v is not None}  # null leaves an included dataset out
        if not entries:
            raise c.fail(("datasets",), entries, "at least one dataset")
        for vid, spec in entries.items():
            vpath = ("datasets", str(vid))
            spec = dict(c.mapping(spec, vpath))
            overrides = c.mapping(spec.pop("overrides", None), (*vpath, "overrides"))
            label = str(spec.pop("label", vid))
            spec.setdefault("name", vid)
            ds = _dataset(c, spec, vpath)
            vc = Checker(raw, str(vid))
            for k in overrides:
                if k not in TOP_LEVEL or k in ("name", "dataset", "datasets", "plugins", "seeds", "tables", "figures",
                                               "claims", "profiles"):
                    raise c.fail((*vpath, "overrides", str(k)), k, "protocol keys other than name, dataset(s), "
                                 "plugins, seeds, tables, figures, claims and profiles")
            for section in ("defenses", "attacks"):
                extra = set(c.mapping(overrides.get(section), (*vpath, "overrides", section))) - set(
                    c.mapping(shared.get(section), (section,)))
                if extra:
                    raise c.fail((*vpath, "overrides", section, sorted(extra)[0]), sorted(extra)[0],
                                 f"ids the protocol defines under {section} (overrides change parameters, not rows)")
            variants[str(vid)] = _variant(vc, str(vid), label, ds, merge(shared, overrides, {}, ""))
    first = next(iter(variants.values()))
    for v in variants.values():
        if list(v.defenses) != list(first.defenses) or list(v.attacks) != list(first.attacks):
            raise c.fail(("datasets", v.id, "overrides"), "(different ids)",
                         "the same defense and attack ids for every dataset (override their parameters, not the ids)")
    table_specs = layout.tables(c, data.get("tables"), variants)
    return Protocol(
        name=name, description=str(data.get("description", "")),
        version=c.typed(data.get("version", 1), int, ("version",)),
        path=raw.path, seeds=seeds, plugins=plugins, variants=variants, tables=table_specs,
        figures=layout.figures(c, data.get("figures"), variants),
        claims=layout.claims(c, data.get("claims"), table_specs),
        data=data, profile=raw.profile,
    )


def load_protocol(name: str | Path, overrides: list[str] | tuple[str, ...] = (),
                  profile: str | None = None) -> Protocol:
    """Read and validate a protocol file (path or bundled name) with a profile and ``--set`` overrides."""
    from robench.protocol.load import load_raw

    return validate(load_raw(name, overrides, profile))
