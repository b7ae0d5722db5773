"""Protocol files: inheritance, overrides, validation errors (file, key, found, allowed), and plans."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import TINY_PROTOCOL
from robench.errors import ProtocolError
from robench.plan import make_plan
from robench.protocol import load_protocol, load_raw, validate


def tiny_data() -> dict[str, Any]:
    return yaml.safe_load(TINY_PROTOCOL.read_text())


def write(tmp_path: Path, data: dict[str, Any], name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_tiny_protocol_validates() -> None:
    p = load_protocol(TINY_PROTOCOL)
    assert p.name == "tiny"
    v = p.variants["synthetic"]
    assert list(v.defenses) == ["none", "at_rs"]
    assert v.defenses["at_rs"].defense.params == {"modalities": ["rgb", "skeleton"]}
    assert v.attacks["pgd"].attack.params["step_size"] == pytest.approx(4 / 255)
    assert v.attacks["pgd"].eps == [pytest.approx(8 / 255)]
    assert v.defenses["none"].training.epochs == 2
    assert p.tables[0].baseline == "none"  # default: the table's first row


def test_include_inherits_and_overrides(tmp_path: Path) -> None:
    base = tiny_data()
    write(tmp_path, base, "base.yaml")
    child = {"include": "base.yaml", "name": "child", "training": {"epochs": 5}}
    p = load_protocol(write(tmp_path, child, "child.yaml"))
    assert p.name == "child"
    t = p.variants["synthetic"].defenses["none"].training
    assert t.epochs == 5 and t.batch_size == 8  # merged key by key


def test_include_cycle_is_reported(tmp_path: Path) -> None:
    write(tmp_path, {"include": "b.yaml", "name": "a"}, "a.yaml")
    write(tmp_path, {"include": "a.yaml", "name": "b"}, "b.yaml")
    with pytest.raises(ProtocolError, match="include chain without cycles"):
        load_raw(tmp_path / "a.yaml")


def test_set_overrides_parse_yaml_values() -> None:
    p = load_protocol(TINY_PROTOCOL, ["training.epochs=3", "attacks.pgd.steps=5", "scenarios=[clean,RS]",
                                      "attacks.pgd.step_size=1/255"])
    v = p.variants["synthetic"]
    assert v.defenses["none"].training.epochs == 3
    assert v.attacks["pgd"].attack.params["steps"] == 5
    assert v.attacks["pgd"].attack.params["step_size"] == pytest.approx(1 / 255)
    assert v.scenarios == ["clean", "RS"]


@pytest.mark.parametrize(
    "mutate, key, allowed",
    [
        (lambda d: d.update(trainig={}), "trainig", "did you mean 'training'"),
        (lambda d: d["training"].update(epochs="ten"), "training.epochs", "an integer"),
        (lambda d: d["training"].update(epochs=0), "training.epochs", "an integer >= 1"),
        (lambda d: d["training"].update(optimizer="rmsprop"), "training.optimizer", "one of 'sgd', 'adam', 'adamw'"),
        (lambda d: d["defenses"]["at_rs"].update(type="atx"), "defenses.at_rs.type", "did you mean 'at'"),
        (lambda d: d["defenses"]["at_rs"].update(modalities=["depth"]), "defenses.at_rs.modalities",
         "non-empty subset"),
        (lambda d: d["defenses"]["at_rs"].update(modalitie=["rgb"]), "defenses.at_rs.modalitie",
         "did you mean 'modalities'"),
        (lambda d: d["attacks"]["pgd"].update(stepz=3), "attacks.pgd.stepz", "did you mean 'steps'"),
        (lambda d: d["attacks"]["pgd"].update(step_size="big"), "attacks.pgd.step_size", "a finite number"),
        (lambda d: d["attacks"]["pgd"].update(type="pgdd"), "attacks.pgd.type", "a registered attack"),
        (lambda d: d.update(scenarios=["clean", "X"]), "scenarios.1", "a list drawn from clean, R, S, RS"),
        (lambda d: d.update(eps=["8/0"]), "eps.0", "a number or a fraction"),
        (lambda d: d["model"]["rgb"].update(backbone="hcn"), "model.rgb.backbone", "a rgb backbone"),
        (lambda d: d["model"]["rgb"].pop("backbone"), "model.rgb.backbone", "a registered backbone"),
        (lambda d: d["dataset"].update(clases=4), "dataset.clases", "did you mean 'classes'"),
        (lambda d: d["dataset"].update(name="ntu61"), "dataset.name", "a registered dataset"),
        (lambda d: d.update(tables=[{"attack": "fgsm"}]), "tables.0.attack", "an attack id of this protocol: pgd"),
        (lambda d: d.update(tables=[{"attack": "pgd", "columns": ["Foo"]}]), "tables.0.columns.0", "columns from"),
        (lambda d: d.update(tables=[{"attack": "pgd", "eps": "4/255"}]), "tables.0.eps", "eps values"),
        (lambda d: d.update(name="bad name!"), "name", "letters, digits"),
        (lambda d: d.pop("model"), "model", "rgb: {backbone: i3d"),
        (lambda d: d["evaluation"].update(max_samples=0), "evaluation.max_samples", ">= 1"),
    ],
)
def test_validation_errors_name_file_key_and_allowed(tmp_path: Path, mutate, key: str, allowed: str) -> None:
    data = tiny_data()
    mutate(data)
    path = write(tmp_path, data)
    with pytest.raises(ProtocolError) as info:
        validate(load_raw(path))
    err = info.value
    assert err.key == key, str(err)
    assert err.file == str(path.resolve()), str(err)
    assert allowed in str(err), str(err)
    assert f"key '{key}'" in str(err) and "found" in str(err)


def test_error_in_included_file_names_that_file(tmp_path: Path) -> None:
    base = tiny_data()
    base["training"]["epochs"] = "many"
    base_path = write(tmp_path, base, "base.yaml")
    child = write(tmp_path, {"include": "base.yaml", "name": "child"}, "child.yaml")
    with pytest.raises(ProtocolError) as info:
        load_protocol(child)
    assert info.value.file == str(base_path.resolve()) and info.value.key == "training.epochs"


def test_error_from_set_names_set() -> None:
    with pytest.raises(ProtocolError) as info:
        load_protocol(TINY_PROTOCOL, ["training.batch_size=none"])
    assert info.value.file == "--set" and info.value.key == "training.batch_size"


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\ntraining: {epochs: 2\n")
    with pytest.raises(ProtocolError, match=r"YAML syntax at line \d+"):
        load_raw(path)


def test_datasets_with_overrides(tmp_path: Path) -> None:
    data = tiny_data()
    ds = data.pop("dataset")
    data["datasets"] = {
        "small": {**ds, "name": "synthetic", "label": "Small"},
        "big": {**ds, "name": "synthetic", "classes": 5, "overrides": {"training": {"epochs": 4}}},
    }
    p = load_protocol(write(tmp_path, data))
    assert p.variants["small"].defenses["none"].training.epochs == 2
    assert p.variants["big"].defenses["none"].training.epochs == 4
    assert p.variants["small"].label == "Small"
    bad = copy.deepcopy(data)
    bad["datasets"]["big"]["overrides"]["training"]["epochs"] = -1
    with pytest.raises(ProtocolError) as info:
        load_protocol(write(tmp_path, bad, "bad.yaml"))
    assert info.value.key == "datasets.big.overrides.training.epochs"


# -- plans -------------------------------------------------------------------------------------------

def plan_of(*overrides: str):
    return make_plan(load_protocol(TINY_PROTOCOL, list(overrides)))


def test_plan_counts_and_stable_ids() -> None:
    a, b = plan_of(), plan_of()
    assert len(a.models) == 2 and len(a.cells) == 8
    assert list(a.models) == list(b.models) and list(a.cells) == list(b.cells)


def test_model_id_depends_only_on_what_determines_the_model() -> None:
    base = plan_of()
    other_attack = plan_of("training.attack.steps=3")
    mid = {k[1]: v for k, v in base.model_index.items()}
    mid2 = {k[1]: v for k, v in other_attack.model_index.items()}
    assert mid["none"] == mid2["none"]  # clean training does not use the training attack
    assert mid["at_rs"] != mid2["at_rs"]
    relabelled = plan_of("defenses.none.label=Baseline")
    assert {k[1]: v for k, v in relabelled.model_index.items()} == mid  # labels are display only


def test_same_defense_under_two_ids_is_trained_once() -> None:
    p = plan_of("defenses.at_copy={type: at, label: copy, modalities: [skeleton, rgb]}")
    assert len(p.models) == 2  # modalities order does not matter
    job = p.models[p.model_index[("synthetic", "at_copy", 0)]]
    assert job.defense_ids == ["at_rs", "at_copy"]


def test_cell_ids_follow_attack_parameters_not_batch_size() -> None:
    base = plan_of()
    bigger_batch = plan_of("evaluation.batch_size=64")
    assert list(base.cells) == list(bigger_batch.cells)
    more_steps = plan_of("attacks.pgd.steps=3")
    clean = [c for c in base.cells.values() if c.scenario == "clean"]
    assert all(c.id in more_steps.cells for c in clean)
    assert not any(c.id in more_steps.cells for c in base.cells.values() if c.scenario != "clean")


def test_threat_scale_multiplies_skeleton_eps_and_step() -> None:
    p = plan_of("threat.skeleton.scale=2")
    rs = next(c for c in p.cells.values() if c.scenario == "RS")
    assert rs.attack_params["eps"] == {"rgb": pytest.approx(8 / 255), "skeleton": pytest.approx(16 / 255)}
    assert rs.attack_params["step_size"]["skeleton"] == pytest.approx(8 / 255)
    assert rs.attack_params["bounds"] == {"rgb": (0.0, 1.0), "skeleton": None}


def test_input_sizes_come_from_the_dataset() -> None:
    p = plan_of()
    job = next(iter(p.models.values()))
    assert job.backbones["rgb"].params["frames"] == 8 and job.backbones["rgb"].params["resolution"] == 32
    assert job.backbones["skeleton"].params["frames"] == 16 and job.backbones["skeleton"].params["persons"] == 2
    with pytest.raises(ProtocolError, match=r"model\.rgb\.frames"):
        plan_of("model.rgb.frames=16")


def test_unimodal_model_skips_attacks_on_missing_modality() -> None:
    p = plan_of("defenses.rgb_only={type: none, label: RGB only, model: {skeleton: null}}")
    mid = p.model_index[("synthetic", "rgb_only", 0)]
    scen = sorted(c.scenario for c in p.cells_of(mid))
    assert scen == ["R", "clean"]
    assert p.models[mid].backbones.keys() == {"rgb"}
