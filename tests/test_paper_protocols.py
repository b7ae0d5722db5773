"""The bundled paper protocols: they validate, their reference values are the paper's, and they share work."""

from __future__ import annotations

import pytest

from robench.plan import make_plan
from robench.protocol import bundled_protocols, load_protocol

PAPER = ["table1", "table2", "table3", "table4", "table5", "table6", "table7", "table8", "figure2", "figure4"]

#: places where the paper's printed Avg or RI disagree with its own columns by more than rounding;
#: each must be documented in the protocol's table notes (checked below)
PAPER_TYPOS = {
    ("table1", "ntu60", "cw", "Avg"), ("table1", "imigue", "fgsm", "Avg"), ("table2", "ntu60", "minsim", "Avg"),
    ("table4", "ntu60", "amr1", "RI"), ("table6", "ntu60", "amr", "RI"), ("table6", "imigue", "amr", "RI"),
    ("table8", "ntu60", "at_rs", "Avg"), ("table8", "imigue", "at_rs", "RI"), ("table8", "imigue", "amr1", "RI"),
    ("table8", "imigue", "amr2", "RI"), ("table8", "imigue", "amr3", "RI"),
}


@pytest.mark.parametrize("name", sorted(bundled_protocols()))
def test_every_bundled_protocol_validates_and_plans(name: str) -> None:
    protocol = load_protocol(name)
    assert make_plan(protocol).cells or not protocol.tables


@pytest.mark.parametrize("name", PAPER)
def test_paper_protocols_have_a_synthetic_profile(name: str) -> None:
    real, synthetic = load_protocol(name), load_protocol(name, profile="synthetic")
    assert synthetic.name == f"{name}@synthetic"
    assert [v.dataset.type for v in synthetic.variants.values()] == ["synthetic"] * len(real.variants)
    assert list(synthetic.variants) == list(real.variants)
    for rv, sv in zip(real.variants.values(), synthetic.variants.values()):
        assert list(rv.defenses) == list(sv.defenses) and list(rv.attacks) == list(sv.attacks)
        assert rv.scenarios == sv.scenarios
        assert {a: e.attack for a, e in rv.attacks.items()} == {a: e.attack for a, e in sv.attacks.items()}
    assert [t.id for t in real.tables] == [t.id for t in synthetic.tables]


def test_paper_settings() -> None:
    """The paper's Section 4.2: optimiser, schedule, epochs, training attack, AMR counts."""
    p = load_protocol("table2")
    ntu, imigue = p.variants["ntu60"], p.variants["imigue"]
    t = ntu.defenses["amr"].training
    assert (t.optimizer, t.lr, t.momentum, t.weight_decay, t.batch_size, t.schedule) == ("sgd", 0.01, 0.9, 5e-4, 16,
                                                                                         "cosine")
    assert t.epochs == 80 and imigue.defenses["amr"].training.epochs == 40
    assert t.attack.type == "pgd" and t.attack.params["steps"] == 10 and t.attack_eps == pytest.approx(8 / 255)
    assert t.attack.params["step_size"] == pytest.approx(2 / 255) and t.attack.params["random_start"]
    assert ntu.defenses["amr"].defense.params["count"] == 3 and imigue.defenses["amr"].defense.params["count"] == 1
    assert ntu.attacks["pgd"].attack.params["steps"] == 20 and ntu.attacks["pgd"].eps == [pytest.approx(8 / 255)]
    assert load_protocol("table7").variants["ntu60"].attacks["cw"].attack.params["steps"] == 30
    assert load_protocol("table1").variants["ntu60"].attacks["pgd10"].eps == [pytest.approx(6 / 255)]
    assert list(load_protocol("table5").variants) == ["imigue"]


def test_reference_values_are_consistent_or_documented() -> None:
    """Recompute every printed Avg (Eq. 13) and RI (Eq. 14); disagreements beyond rounding are known typos."""
    found = set()
    for name in PAPER:
        for table in load_protocol(name).tables:
            if table.kind != "accuracy":
                continue
            cols = [c.id for c in table.columns]
            for ds, rows in table.reference.items():
                base = dict(zip(cols, rows[table.baseline])) if table.baseline in rows else None
                for rid, values in rows.items():
                    if any(v is None for v in values):
                        continue
                    d = dict(zip(cols, values))
                    if "Avg" in d and abs((d["R"] + d["S"] + d["RS"]) / 3 - d["Avg"]) > 0.025:
                        found.add((name, ds, rid, "Avg"))
                    if "RI" in d and base and \
                            abs((d["clean"] + d["Avg"]) - (base["clean"] + base["Avg"]) - d["RI"]) > 0.025:
                        found.add((name, ds, rid, "RI"))
                    if (name, ds, rid) in {k[:3] for k in PAPER_TYPOS}:
                        assert table.notes, f"{name}: paper inconsistency in {ds}/{rid} is not noted"
    assert found == PAPER_TYPOS


def test_tables_share_models_and_cells() -> None:
    plans = [make_plan(load_protocol(n, profile="synthetic")) for n in PAPER]
    models = {m for p in plans for m in p.models}
    cells = {c for p in plans for c in p.cells}
    assert len(models) < sum(len(p.models) for p in plans) / 2
    assert len(cells) < sum(len(p.cells) for p in plans)
    # the undefended model on each dataset is one model for all ten protocols
    none_ids = {p.model_index[(v, "none", 0)] for p in plans for v in p.protocol.variants}
    assert len(none_ids) == 2


def test_same_attack_same_parameters_across_tables() -> None:
    """Attack definitions agree across protocols, so that their cells are shared."""
    seen: dict[str, object] = {}
    for name in PAPER:
        for aid, entry in load_protocol(name).variants["imigue"].attacks.items():
            key = f"{entry.attack.type}:{entry.label}"
            assert seen.setdefault(key, entry.attack) == entry.attack, (name, aid)


def test_real_protocol_without_data_stops_before_any_work(tmp_path, monkeypatch, capsys) -> None:
    from robench.cli import main
    from robench.store import ResultsStore

    monkeypatch.setenv("ROBENCH_DATA", str(tmp_path / "data"))
    store = tmp_path / "r.sqlite"
    cache = str(tmp_path / "cache")
    assert main(["run", "table2", "--store", str(store), "--cache", cache, "--progress", "quiet"]) == 2
    err = capsys.readouterr().err
    for dataset in ("ntu60", "imigue"):  # every missing dataset, where robench looked, how to make it
        assert f"dataset '{dataset}' is not prepared: no robench-dataset.json in {tmp_path / 'data' / dataset}" in err
        assert f"robench prepare {dataset} --root" in err
    assert "--profile synthetic" in err
    assert not (tmp_path / "cache").exists()
    assert ResultsStore(store).dataframe().empty


def test_claims_name_the_rows_the_paper_compares() -> None:
    """Each claim's rows (by id) are the paper's: undefended rows, AMR rows, AT on both modalities, MinSim/ExFMem.

    The checks select rows only by these ids; this keeps the bundled protocols' selections what the
    paper compares (every row of the table of that kind, nothing else).
    """
    seen = set()
    for name in PAPER:
        p = load_protocol(name)
        ntu = next(iter(p.variants.values()))
        kind = {d: e.defense.type for d, e in ntu.defenses.items()}
        for claim in p.claims:
            table = next(t for t in p.tables if t.id == claim.table)
            rows = {r.id: kind[r.defense] for r in table.rows}
            both = {r.id for r in table.rows if kind[r.defense] == "at"
                    and sorted(ntu.defenses[r.defense].defense.params.get("modalities", [])) == ["rgb", "skeleton"]}
            expected: dict[str, list[str]] = {
                "skeleton_more_robust": {"undefended": [r for r, t in rows.items() if t == "none"]},
                "fusion_not_more_robust": {},
                "amr_best": {"proposed": [r for r, t in rows.items() if t == "amr"]},
                "more_amrs_help_larger": {"by_count": [r for r, t in rows.items() if r in both or t == "amr"]},
                "minsim_exfmem_weak_rgb": {"weak": [r for r, t in rows.items()
                                                    if t in ("minsim", "exfmem", "minsim_exfmem")],
                                           "strong": [r for r, t in rows.items() if r in both or t == "amr"]},
            }[claim.id]
            assert claim.rows == expected, (name, claim.id)
            if claim.id == "more_amrs_help_larger":
                counts = [0 if rows[r] == "at" else ntu.defenses[r].defense.params["count"]
                          for r in claim.rows["by_count"]]
                assert claim.ranks["by_count"] == counts
            seen.add(claim.id)
    assert seen == {"skeleton_more_robust", "fusion_not_more_robust", "amr_best", "more_amrs_help_larger",
                    "minsim_exfmem_weak_rgb"}


def test_units_protocol_scales_the_skeleton_to_its_unit_range() -> None:
    """synthetic/units: the same data, model and attacks twice, the skeleton eps in metres and in the
    units of the training split's skeleton min-max scaled to [0, 1] (its span, measured here)."""
    from robench.data.synthetic import SyntheticDataset

    protocol = load_protocol("synthetic/units")
    metres, unit = protocol.variants["metres"], protocol.variants["unit_range"]
    assert metres.dataset == unit.dataset and metres.threat.scale["skeleton"] == 1.0
    assert metres.threat.scale["rgb"] == unit.threat.scale["rgb"] == 1.0
    train = SyntheticDataset(**unit.dataset.params).split("train")
    present = train.skeleton[..., 0]  # every clip of this protocol's 8 classes has one person
    assert (train.meta["persons"] == 1).all()
    span = float(present.amax() - present.amin())
    assert unit.threat.scale["skeleton"] == pytest.approx(span, abs=5e-4)
    plan = make_plan(protocol)
    assert len({job.id for job in plan.models.values()}) == 1  # one undefended model serves both
