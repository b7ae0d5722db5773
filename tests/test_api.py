"""The public Python API (``import robench``): attacks on any model, a track's data as a torch Dataset,
models, and evaluating a model object with the same record ``robench leaderboard add`` writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import robench
from conftest import TINY_PROTOCOL, tiny_entry, tiny_inputs
from robench.errors import AttackCheckError, RobenchError
from robench.models.provided import ProvidedModel, model_digest

TRACK = Path(__file__).parent / "data" / "tiny_track.yaml"


class PlainNet(nn.Module):
    """A model written outside robench: ``forward(rgb, skeleton)``."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.rgb = nn.Sequential(nn.Conv3d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten())
        self.skeleton = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 25 * 2, 8), nn.ReLU())
        self.head = nn.Linear(12, classes)

    def forward(self, rgb: torch.Tensor, skeleton: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.rgb(rgb), self.skeleton(skeleton)], dim=1))


def _plain(seed: int = 0) -> robench.TwoInputs:
    torch.manual_seed(seed)
    return robench.TwoInputs(PlainNet()).eval()


def test_the_stable_names_are_exported() -> None:
    for name in ("attack", "dataset", "build_model", "load_model", "evaluate", "evaluate_protocol", "run",
                 "render_report", "TwoInputs", "TrackResult", "load_track", "ResultsStore", "register_defense"):
        assert name in robench.__all__ and getattr(robench, name) is not None, name
    assert callable(robench.evaluate)  # the function, not a module of the same name


def test_two_inputs_calls_the_model_with_one_tensor_per_modality() -> None:
    net = PlainNet().eval()
    x = tiny_inputs(3)
    x["skeleton"] = x["skeleton"][:, :, :16]
    wrapped = robench.TwoInputs(net)
    assert wrapped.modalities == ("rgb", "skeleton")
    assert torch.equal(wrapped(x), net(x["rgb"], x["skeleton"]))
    assert sum(p.numel() for p in wrapped.parameters()) == sum(p.numel() for p in net.parameters())
    with pytest.raises(ValueError, match="distinct names"):
        robench.TwoInputs(net, ["rgb", "depth"])


@pytest.mark.parametrize("name", ["fgsm", "pgd", "cw", "apgd", "apgd_t", "fab_t", "square", "autoattack"])
def test_every_attack_builds_from_the_api_and_its_output_is_checked(name: str, model: nn.Module,
                                                                    inputs: dict[str, torch.Tensor],
                                                                    labels: torch.Tensor) -> None:
    small = {"fgsm": {}, "pgd": {"steps": 2}, "cw": {"steps": 2}, "apgd": {"steps": 2}, "apgd_t": {"steps": 2},
             "fab_t": {"steps": 2}, "square": {"queries": 3}, "autoattack": {"steps": 2, "targets": 1, "queries": 3}}
    attack = robench.attack(name, "RS", eps={"rgb": "8/255", "skeleton": 0.01}, **small[name])
    assert attack.eps == {"rgb": pytest.approx(8 / 255), "skeleton": pytest.approx(0.01)}
    adv = attack(model.eval(), inputs, labels)
    assert float((adv["rgb"] - inputs["rgb"]).abs().max()) <= 8 / 255 + 1e-6
    assert float((adv["skeleton"] - inputs["skeleton"]).abs().max()) <= 0.01 + 1e-6
    assert adv["rgb"].min() >= 0 and adv["rgb"].max() <= 1


def test_scenario_scale_and_parameters_are_read_as_a_protocol_reads_them(model: nn.Module,
                                                                          inputs: dict[str, torch.Tensor],
                                                                          labels: torch.Tensor) -> None:
    rgb_only = robench.attack("pgd", "R", eps="8/255", steps=1)
    adv = rgb_only(model.eval(), inputs, labels)
    assert torch.equal(adv["skeleton"], inputs["skeleton"])  # the unattacked input, bit for bit
    scaled = robench.attack("pgd", "S", eps="8/255", skeleton_scale=2.0, step_size="1/255")
    assert scaled.eps == {"skeleton": pytest.approx(16 / 255)}
    assert scaled.step_size == {"skeleton": pytest.approx(2 / 255)}
    assert robench.attack("pgd", ["rgb", "skeleton"]).modalities == ("rgb", "skeleton")
    with pytest.raises(RobenchError, match="did you mean 'steps'"):
        robench.attack("pgd", "RS", stepz=3)
    with pytest.raises(RobenchError, match="allowed: R, S, RS"):
        robench.attack("pgd", "RGB")
    with pytest.raises(RobenchError, match="finite"):
        robench.attack("pgd", "RS", eps=float("inf"))


def test_an_attack_that_leaves_the_ball_is_refused(inputs: dict[str, torch.Tensor], labels: torch.Tensor,
                                                   model: nn.Module) -> None:
    attack = robench.attack("fgsm", "R", eps="1/255")

    def cheat(*_: object) -> dict[str, torch.Tensor]:
        return {**inputs, "rgb": (inputs["rgb"] + 0.5).clamp(0, 1)}

    attack.perturb = cheat  # type: ignore[method-assign]
    with pytest.raises(AttackCheckError, match="exceeds eps"):
        attack(model, inputs, labels)


def test_a_tracks_data_as_a_torch_dataset() -> None:
    train = robench.dataset(TRACK, split="train")
    test = robench.dataset(TRACK, split="test")
    assert len(train) == 24 and len(test) == 12 and train.class_names == test.class_names
    inputs, label = test[3]
    assert inputs["rgb"].dtype == torch.float32 and 0 <= float(inputs["rgb"].min()) <= float(inputs["rgb"].max()) <= 1
    assert inputs["rgb"].shape == (3, 8, 32, 32) and inputs["skeleton"].shape == (3, 16, 25, 2)
    batch, labels = next(test.batches(12))
    assert torch.equal(batch["rgb"][3], inputs["rgb"]) and int(labels[3]) == label
    assert torch.equal(test.labels, labels)
    loader = torch.utils.data.DataLoader(train, batch_size=5)
    first_inputs, first_labels = next(iter(loader))
    assert first_inputs["skeleton"].shape == (5, 3, 16, 25, 2) and first_labels.shape == (5,)


def test_models_are_built_for_a_track_or_a_protocol_row() -> None:
    model = robench.build_model(TRACK, rgb={"backbone": "i3d", "width": 0.0625}, skeleton={"backbone": "hcn",
                                                                                          "width": 0.125})
    assert isinstance(model, robench.TwoStreamModel) and model.fusion.out_features == 4
    again = robench.build_model(TRACK, rgb={"backbone": "i3d", "width": 0.0625}, skeleton={"backbone": "hcn",
                                                                                          "width": 0.125})
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    amr = robench.build_model(protocol=TINY_PROTOCOL, defense="at_rs")
    assert isinstance(amr, robench.TwoStreamModel)
    with pytest.raises(RobenchError, match="defense 'nope'; allowed: none, at_rs"):
        robench.build_model(protocol=TINY_PROTOCOL, defense="nope")


def test_the_digest_follows_weights_and_code() -> None:
    a, b = _plain(0), _plain(0)
    assert model_digest(a) == model_digest(b)
    with torch.no_grad():
        b.model.head.bias[0] += 1e-6
    assert model_digest(a) != model_digest(b)
    made = type("Made", (nn.Module,), {"forward": lambda self, x: x["rgb"].flatten(1)[:, :4]})
    assert model_digest(made()) != model_digest(made())  # no readable source: never reused
    assert ProvidedModel(lambda x: x["rgb"].flatten(1)[:, :4], ["rgb"]).modalities == ("rgb",)


@pytest.mark.slow
def test_evaluating_an_object_gives_the_record_leaderboard_add_writes(tmp_path: Path) -> None:
    """One code path: the same weights, as an entry file (``leaderboard add``) and as an object
    (``robench.evaluate``), get the same results and per-clip bits on the track."""
    from robench.cli import main
    from robench.leaderboard.record import read_record

    model = tiny_entry(tmp_path, "Untrained")
    assert main(["leaderboard", "add", str(tmp_path / "entry.yaml"), "--track", str(TRACK), "--root",
                 str(tmp_path / "board"), "--store", str(tmp_path / "s.sqlite"), "--cache", str(tmp_path / "c"),
                 "--progress", "quiet"]) == 0
    from_file = read_record(tmp_path / "board" / "tiny" / "entry.json")
    store = tmp_path / "object.sqlite"
    result = robench.evaluate(model.eval(), track=TRACK, name="Untrained", authors=["A. Author"], store=store,
                              cache=tmp_path / "c", progress="quiet")
    assert result.record["results"] == from_file["results"]
    assert result.record["per_sample"] == from_file["per_sample"]
    def without_cell(flags: list[dict]) -> list[dict]:  # (cell ids differ: a file's weights vs an object's digest)
        return [{k: v for k, v in f.items() if k != "cell"} for f in flags]

    assert without_cell(result.record["flags"]) == without_cell(from_file["flags"])
    assert result.record["status"] == "verified"
    assert result.per_clip("RS").dtype == bool and result.per_clip("RS").shape == (12,)
    np.testing.assert_array_equal(result.per_clip("worst"), result.per_clip("RS"))
    # a second call on the same model and store recomputes nothing; written, it is a valid record
    cells = robench.ResultsStore(store).count()
    again = robench.evaluate(model.eval(), track=TRACK, store=store, cache=tmp_path / "c", progress="quiet")
    assert robench.ResultsStore(store).count() == cells and again.record["results"] == result.record["results"]
    written = result.write(tmp_path / "board")
    assert written == (tmp_path / "board" / "tiny" / "python-model.json").resolve()
    assert read_record(written)["status"] == "verified"


@pytest.mark.slow
def test_a_plain_module_under_a_protocols_threat_model(tmp_path: Path) -> None:
    outcomes = robench.evaluate_protocol(_plain(), TINY_PROTOCOL, progress="quiet")
    assert sorted(o.scenario for o in outcomes) == ["R", "RS", "S", "clean"]
    clean = next(o for o in outcomes if o.scenario == "clean")
    assert clean.correct.shape == (12,) and 0 <= clean.accuracy <= 100
    assert all(o.accuracy <= clean.accuracy for o in outcomes)  # early-stopping PGD starts from correct clips


@pytest.mark.slow
def test_load_model_trains_once_then_loads(tmp_path: Path) -> None:
    store = tmp_path / "r.sqlite"
    with pytest.raises(RobenchError, match="is not in the cache"):
        robench.load_model(protocol=TINY_PROTOCOL, defense="none", store=store, train=False)
    trained = robench.load_model(protocol=TINY_PROTOCOL, defense="none", store=store, progress="quiet",
                                 device="cpu")
    loaded = robench.load_model(protocol=TINY_PROTOCOL, defense="none", store=store, train=False, device="cpu")
    assert not loaded.training
    assert all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(), loaded.state_dict().values()))
