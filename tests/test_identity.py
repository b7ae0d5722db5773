"""The identity rule: a cached model or stored cell is reused only when everything that determines it is equal.

Run ``python tests/test_identity.py --update`` after bumping a built-in's ``version`` to record its
new source digest in ``tests/data/component_versions.json``.
"""

from __future__ import annotations

import functools
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import TINY_PROTOCOL
from robench.errors import RobenchError
from robench.identity import FP32, Precision, code_identity, source_digest
from robench.plan import Plan, make_plan
from robench.protocol import load_protocol
from robench.registry import DEFENSES, REGISTRIES, Registry, load_builtins

LOCK = Path(__file__).resolve().parent / "data" / "component_versions.json"

load_builtins()


@functools.cache
def builtins() -> dict[str, tuple[int, str]]:
    """``{"kind/name": (version, source digest)}`` of every built-in component (computed once per process: the
    sources do not change while the tests run, and digesting them all takes about a second)."""
    out = {}
    for kind, registry in REGISTRIES.items():
        for name in registry.names():
            cls = registry.get(name)
            if registry.entry(name).source == "builtin":
                out[f"{kind}/{name}"] = (cls.version, source_digest(cls))
    return out


# -- built-in versions follow their source ----------------------------------------------------------

@pytest.mark.parametrize("key", sorted(builtins()))
def test_builtin_version_changes_with_its_source(key: str) -> None:
    """Changing a built-in's code without bumping its ``version`` fails here, so no stale result is reused."""
    locked = json.loads(LOCK.read_text())
    version, digest = builtins()[key]
    assert key in locked, f"new built-in {key}: record it with `python tests/test_identity.py --update`"
    if digest != locked[key]["source"]:
        assert version > locked[key]["version"], (
            f"the code of {key} changed (source digest {locked[key]['source']} -> {digest}) but its version is still "
            f"{version}: bump `version` on the class (a ClassVar) so that its models and cells get new ids, then run "
            "`python tests/test_identity.py --update`")
        pytest.fail(f"{key}: version bumped to {version}; record the new source with `python tests/test_identity.py "
                    "--update`")
    assert version == locked[key]["version"], f"{key}: run `python tests/test_identity.py --update`"


def test_source_digest_ignores_docstrings_and_comments(tmp_path: Path) -> None:
    from robench.identity import _normalised_source

    a, b, c = tmp_path / "a.py", tmp_path / "b.py", tmp_path / "c.py"
    a.write_text('"""Doc."""\ndef f(x):\n    """Twice."""\n    return x * 2\n')
    b.write_text('def f(x):  # a comment\n\n    return x * 2\n')
    c.write_text('def f(x):\n    return x * 3\n')
    assert _normalised_source(a) == _normalised_source(b) != _normalised_source(c)


# -- registration refuses what cannot be identified ---------------------------------------------------

def test_non_dataclass_defense_is_refused() -> None:
    from robench.defenses.base import Defense

    class Noisy(Defense):
        def __init__(self, sigma: float = 0.1) -> None:
            self.sigma = sigma

        def loss(self, model: Any, inputs: Any, labels: Any, ctx: Any) -> Any:
            raise NotImplementedError

    reg: Registry[Any] = Registry("defense", "robench.test-defenses", "robench.defenses.base:Defense")
    with pytest.raises(RobenchError, match=r"decorate Noisy with @dataclass"):
        reg.add("noisy", Noisy)


@pytest.mark.parametrize("source, message", [
    ("def __init__(self, modalities, eps, bounds=None, **kwargs): ...", r"takes \*\*kwargs"),
    ("def __init__(self, modalities: list[str], eps: float, bounds: dict | None = None, decay=0.5): ...",
     r"'decay' .* has no type annotation"),
    ("def __init__(self, modalities: list[str], eps: float, bounds: dict | None = None, f: object = object()): ...",
     r"default of 'f' .* is not a plain value"),
])
def test_unreadable_attack_parameters_are_refused(source: str, message: str) -> None:
    from robench.attacks.base import Attack

    namespace: dict[str, Any] = {}
    exec(textwrap.dedent(f"""
        class Odd(Attack):
            {source}
            def perturb(self, model, inputs, labels, sample_seeds=None): return inputs
    """), {"Attack": Attack}, namespace)
    reg: Registry[Any] = Registry("attack", "robench.test-attacks", "robench.attacks.base:Attack")
    with pytest.raises(RobenchError, match=message):
        reg.add("odd", namespace["Odd"])


def test_wrong_base_class_and_non_class_are_refused() -> None:
    reg: Registry[Any] = Registry("backbone", "robench.test-backbones", "robench.models.backbone:Backbone")
    with pytest.raises(RobenchError, match=r"must subclass robench.models.backbone.Backbone"):
        reg.add("linear", torch.nn.Linear)
    with pytest.raises(RobenchError, match=r"register a class"):
        reg.add("function", lambda: None)


# -- each silent-reuse case now gives a new id ----------------------------------------------------------

def plan_of(*overrides: str, precision: Precision = FP32, path: Path = TINY_PROTOCOL) -> Plan:
    return make_plan(load_protocol(path, list(overrides)), precision)


def ids(plan: Plan) -> tuple[set[str], set[str]]:
    return set(plan.models), set(plan.cells)


def test_precision_is_part_of_every_id() -> None:
    fp32 = ids(plan_of())
    bf16 = ids(plan_of(precision=Precision("bf16")))
    tf32 = ids(plan_of(precision=Precision(None, tf32=True)))
    assert not fp32[0] & bf16[0] and not fp32[1] & bf16[1]
    assert not fp32[0] & tf32[0] and not tf32[0] & bf16[0]
    assert ids(plan_of()) == fp32  # and ids are stable


def test_every_attack_parameter_changes_the_cell_id() -> None:
    """No hand-written describe(): CW's kappa (which once had to be listed by hand) and PGD's loss both count."""
    base = plan_of("attacks={pgd: {steps: 2}}")
    other_loss = plan_of("attacks={pgd: {steps: 2, loss: cw}}")
    attacked = {c.id for c in base.cells.values() if c.attack_type}
    assert attacked and not attacked & {c.id for c in other_loss.cells.values() if c.attack_type}
    clean = {c.id for c in base.cells.values() if not c.attack_type}
    assert clean == {c.id for c in other_loss.cells.values() if not c.attack_type}  # the models are the same
    cw = plan_of("attacks={cw: {steps: 2}}")
    cw_kappa = plan_of("attacks={cw: {steps: 2, kappa: 5}}")
    attacked = {c.id for c in cw.cells.values() if c.attack_type}
    assert not attacked & {c.id for c in cw_kappa.cells.values() if c.attack_type}


def test_default_values_and_explicit_defaults_share_an_id() -> None:
    assert ids(plan_of("attacks={pgd: {steps: 2}}")) == ids(plan_of("attacks={pgd: {steps: 2, restarts: 1}}"))


def _plugin(tmp_path: Path, body: str, name: str) -> Path:
    """A protocol with one plugin defense registered as ``name`` (a name is registered by one file only)."""
    path = tmp_path / "my_defense.py"
    path.write_text(textwrap.dedent(body.replace("mine_identity_test", name)))
    protocol = tmp_path / "p.yaml"
    protocol.write_text(f"include: {TINY_PROTOCOL}\nname: plug\nplugins: [my_defense.py]\n"
                        f"defenses: {{mine: {{type: {name}, label: Mine}}}}\n")
    return protocol


PLUGIN = '''
    from dataclasses import dataclass
    import torch.nn.functional as F
    from robench import Defense, LossOutput, register_defense

    @register_defense("mine_identity_test")
    @dataclass
    class Mine(Defense):
        """Test defense: plain training, scaled loss."""
        scale: float = 1.0

        def loss(self, model, inputs, labels, ctx):
            logits = model(inputs)
            return LossOutput(SCALE * F.cross_entropy(logits, labels), logits)
'''


def test_editing_a_plugin_file_changes_its_model_ids(tmp_path: Path) -> None:
    protocol = _plugin(tmp_path, PLUGIN.replace("SCALE", "self.scale"), "mine_edited")
    before = make_plan(load_protocol(protocol))
    again = make_plan(load_protocol(protocol))
    (tmp_path / "my_defense.py").write_text(textwrap.dedent(PLUGIN.replace("SCALE", "0.5 * self.scale")
                                                            .replace("mine_identity_test", "mine_edited")))
    after = make_plan(load_protocol(protocol))
    mine = {m for m, j in before.models.items() if "mine" in j.defense_ids}
    assert mine and mine == {m for m, j in again.models.items() if "mine" in j.defense_ids}
    assert not mine & set(after.models)
    assert set(before.models) - mine == set(after.models) - {m for m, j in after.models.items()
                                                              if "mine" in j.defense_ids}
    assert "+robench_plugin_" in code_identity(DEFENSES.get("mine_edited"))


def test_plugin_parameters_change_model_ids(tmp_path: Path) -> None:
    protocol = _plugin(tmp_path, PLUGIN.replace("SCALE", "self.scale"), "mine_scaled")
    one = make_plan(load_protocol(protocol))
    two = make_plan(load_protocol(protocol, ["defenses.mine.scale=2"]))
    assert len(set(one.models) - set(two.models)) == 1


ATTACK_PLUGIN = '''
    from collections.abc import Mapping, Sequence
    from robench import register_attack
    from robench.attacks.base import Bounds
    from robench.attacks.iterative import IterativeAttack

    @register_attack("decaying_pgd_identity_test")
    class DecayingPGD(IterativeAttack):
        """Test attack: PGD with a step that may decay."""
        def __init__(self, modalities: Sequence[str], eps: float | Mapping[str, float], steps: int = 2,
                     bounds: Bounds | None = None{extra}) -> None:
            super().__init__(modalities, eps, 2 / 255, steps, True, bounds=bounds)
'''


def test_adding_an_attack_parameter_changes_the_cell_ids(tmp_path: Path) -> None:
    """A parameter added to an attack is part of the cell id without anyone listing it anywhere."""
    (tmp_path / "my_attack.py").write_text(textwrap.dedent(ATTACK_PLUGIN.format(extra="")))
    protocol = tmp_path / "p.yaml"
    protocol.write_text(f"include: {TINY_PROTOCOL}\nname: plug\nplugins: [my_attack.py]\n"
                        "attacks: {pgd: {type: decaying_pgd_identity_test, label: D}}\n")
    before = make_plan(load_protocol(protocol))
    (tmp_path / "my_attack.py").write_text(textwrap.dedent(ATTACK_PLUGIN.format(extra=", decay: float = 0.5")))
    after = make_plan(load_protocol(protocol))
    old = {c.id for c in before.cells.values() if c.attack_type}
    new = [c for c in after.cells.values() if c.attack_type]
    assert old and not old & {c.id for c in new}
    assert all(c.spec["attack"]["params"]["decay"] == 0.5 for c in new)
    assert set(before.models) == set(after.models)  # the models did not change


def test_training_attack_counts_only_where_declared() -> None:
    """AT's model id follows the training attack; the undefended model's does not."""
    a, b = plan_of(), plan_of("training.attack.steps=3")
    rows_a, rows_b = a.model_index, b.model_index
    for key, mid in rows_a.items():
        uses = DEFENSES.get(a.models[mid].defense.type).uses_training_attack
        assert (rows_b[key] != mid) == uses, key


def test_undeclared_training_attack_raises(inputs: dict[str, torch.Tensor], labels: torch.Tensor,
                                          model: torch.nn.Module) -> None:
    from robench.protocol.schema import ThreatConfig, TrainingConfig
    from robench.train.context import TrainContext

    cfg = TrainingConfig()
    ctx = TrainContext(device=torch.device("cpu"), train_set=None, batch_size=2, epochs=1, lr=0.1,  # type: ignore[arg-type]
                       attack=cfg.attack, attack_eps=cfg.attack_eps, threat=ThreatConfig(), defense="forgetful")
    with pytest.raises(RobenchError, match=r"defense 'forgetful' .* does not declare it.*uses_training_attack"):
        ctx.adversarial(model, inputs, labels, ["rgb"])
    declared = TrainContext(device=torch.device("cpu"), train_set=None, batch_size=2, epochs=1, lr=0.1,  # type: ignore[arg-type]
                            attack=cfg.attack, attack_eps=cfg.attack_eps, threat=ThreatConfig(), defense="at",
                            uses_training_attack=True)
    adv = declared.adversarial(model, inputs, labels, ["rgb"])
    assert torch.equal(adv["skeleton"], inputs["skeleton"]) and not torch.equal(adv["rgb"], inputs["rgb"])


def test_backbone_checkpoint_is_identified_by_content(tmp_path: Path) -> None:
    from robench.models import HCN

    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    weights = HCN(width=0.125, frames=16, window=16).state_dict()
    torch.save(weights, a)
    b.write_bytes(a.read_bytes())  # same content, another path (torch.save names its archive after the file)
    same = [plan_of(f"model.skeleton.checkpoint={p}") for p in (a, b)]
    assert ids(same[0]) == ids(same[1])
    torch.save({k: v + 1 if v.is_floating_point() else v for k, v in weights.items()}, b)
    assert ids(plan_of(f"model.skeleton.checkpoint={b}"))[0] != ids(same[0])[0]


def test_location_of_data_is_not_identity(tmp_path: Path) -> None:
    """A dataset's cache folder (a location parameter) does not change ids."""
    from robench.identity import identity_params

    cls = REGISTRIES["datasets"].get("synthetic")
    assert "cache_dir" not in identity_params(cls, {"classes": 4, "cache_dir": tmp_path})


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit("usage: python tests/test_identity.py --update   (records every built-in's version and source)")
    LOCK.write_text(json.dumps({k: {"version": v, "source": d} for k, (v, d) in sorted(builtins().items())},
                               indent=1) + "\n")
    print(f"wrote {LOCK}")
