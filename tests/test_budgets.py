"""Budget grids: independent per-modality radii in protocols, plans, runs and reports."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from robench.errors import ProtocolError
from robench.plan import CellKey, GridKey, make_plan
from robench.protocol.budgets import BudgetGrid
from robench.protocol.schema import load_protocol
from robench.report.budgets import Surface, _crossing

DATA = Path(__file__).parent / "data"
TINY = DATA / "tiny.yaml"
GRID = DATA / "tiny_budgets.yaml"
E = round(8 / 255, 12)


def _protocol(tmp_path: Path, budgets: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(TINY.read_text() + budgets)
    return path


def test_grid_points_share_cells_with_the_tables_where_the_radii_coincide() -> None:
    plan = make_plan(load_protocol(str(GRID), ()))
    for defense in ("none", "at_rs"):
        def grid(r: float, s: float, defense: str = defense) -> str:
            return plan.grid_index[GridKey("synthetic", defense, 0, "grid", round(r, 12), round(s, 12))]

        def table(attack: str | None, scenario: str, eps: float, defense: str = defense) -> str:
            return plan.index[CellKey("synthetic", defense, 0, attack, scenario, eps)]

        assert grid(0, 0) == table(None, "clean", 0.0)
        assert grid(8 / 255, 0) == table("pgd", "R", E)
        assert grid(0, 8 / 255) == table("pgd", "S", E)
        assert grid(8 / 255, 8 / 255) == table("pgd", "RS", E)
        own = plan.cells[grid(8 / 255, 16 / 255)]
        assert own.id not in plan.index.values() and own.scenario == "RS"
        assert own.attack_params["eps"] == pytest.approx({"rgb": 8 / 255, "skeleton": 16 / 255})
        assert plan.cells[grid(0, 16 / 255)].attack_params["eps"] == pytest.approx({"skeleton": 16 / 255})
    assert len(plan.grid_index) == 2 * 6
    # the grid adds cells, never changes the models or the tables' cells
    tiny = make_plan(load_protocol(str(TINY), ()))
    assert set(tiny.models) == set(plan.models) and set(tiny.index.values()) <= set(plan.cells)


def test_grid_radii_are_scaled_per_modality_like_eps(tmp_path: Path) -> None:
    path = _protocol(tmp_path, "threat: {skeleton: {scale: 2.0}}\nbudgets:\n  g: {attack: pgd, rgb: [4/255], "
                     "skeleton: [3/255]}\n")
    plan = make_plan(load_protocol(str(path), ()))
    cell = plan.cells[plan.grid_index[GridKey("synthetic", "none", 0, "g", round(4 / 255, 12), round(3 / 255, 12))]]
    assert cell.attack_params["eps"] == pytest.approx({"rgb": 4 / 255, "skeleton": 6 / 255})


def test_a_grid_can_sweep_some_rows_only(tmp_path: Path) -> None:
    path = _protocol(tmp_path, "budgets:\n  g: {attack: pgd, rgb: [0, 8/255], skeleton: [4/255], defenses: [at_rs]}\n")
    plan = make_plan(load_protocol(str(path), ()))
    assert {k.defense for k in plan.grid_index} == {"at_rs"}


@pytest.mark.parametrize("grid, key, allowed", [
    ("{attack: fgsm, rgb: [0], skeleton: [0]}", "budgets.g.attack", "an attack id of the protocol: pgd"),
    ("{attack: pgd, rgb: [0, -1/255], skeleton: [0]}", "budgets.g.rgb.1", "number >= 0"),
    ("{attack: pgd, rgb: [0, 0], skeleton: [0]}", "budgets.g.rgb", "distinct radii"),
    ("{attack: pgd, rgb: [0]}", "budgets.g.skeleton", "non-empty list"),
    ("{attack: pgd, rgb: [0], skeleton: [0], defenses: [amr]}", "budgets.g.defenses.0", "a defense id"),
    ("{attack: pgd, rgb: [0], skeleton: [0], steps: 3}", "budgets.g.steps", "keys attack, rgb"),
])
def test_bad_grids_are_clear_protocol_errors(tmp_path: Path, grid: str, key: str, allowed: str) -> None:
    with pytest.raises(ProtocolError) as info:
        load_protocol(str(_protocol(tmp_path, f"budgets:\n  g: {grid}\n")), ())
    assert f"key '{key}'" in str(info.value) and allowed in str(info.value)


def test_the_frontier_and_the_exchange_interpolate_between_grid_points() -> None:
    assert _crossing([0, 1, 2], [80, 60, 20], 40) == pytest.approx(1.5)
    assert _crossing([0, 1, 2], [30, 20, 10], 40) == 0  # already below at the first radius
    assert math.isnan(_crossing([0, 1, 2], [80, 70, 60], 40))  # never on the grid
    grid = BudgetGrid("g", "g", "pgd", (0.0, 0.1), (0.0, 0.2, 0.4))
    surface = Surface("d", "D", np.array([[80.0, 50.0], [60.0, 30.0], [20.0, 10.0]]), 80.0)
    assert surface.frontier(grid) == pytest.approx([0.3, 0.1])  # 80 -> 40: 60..20 over 0.2..0.4, 50..30 over 0..0.2


@pytest.mark.slow
def test_a_grid_runs_and_reports_its_surface_exchange_and_figure(tmp_path: Path) -> None:
    from robench.cli import main
    from robench.store import ResultsStore

    store, out = tmp_path / "s.sqlite", tmp_path / "report" / "README.md"
    assert main(["run", str(GRID), "--store", str(store), "--cache", str(tmp_path / "c"), "--progress", "quiet",
                 "--set", "training.epochs=1"]) == 0
    rows = ResultsStore(store, read_only=True).dataframe()
    own = rows[(rows["scenario"] == "RS") & (rows["eps_skeleton"] > rows["eps_rgb"])]
    assert len(own) == 2 and np.allclose(own["eps_skeleton"], 16 / 255)
    assert main(["report", "--store", str(store), "--out", str(out)]) == 0
    text = out.read_text()
    assert "PGD grid: accuracy (%) at eps_R / eps_S" in text and "| 8 / 16 |" in text
    assert "the skeleton radius that does the damage of each RGB radius" in text
    assert (out.parent / "figures" / "tiny-budgets-grid-synthetic.png").is_file()
    # the table's values are the stored cells' accuracies
    acc = dict(zip(own["defense"], 100 * own["accuracy"]))
    grid_table = text.split("PGD grid: accuracy (%)", 1)[1]
    line = next(x for x in grid_table.splitlines() if x.startswith("| None |"))
    assert float(line.split("|")[7]) == pytest.approx(acc["none"], abs=0.006)


def test_under_l2_a_grid_point_takes_each_modalitys_default_step_from_its_own_radius(tmp_path: Path) -> None:
    path = _protocol(tmp_path, "threat: {norm: l2}\nbudgets:\n  g: {attack: pgd, rgb: [0.5], skeleton: [0.1]}\n")
    path.write_text(path.read_text().replace("pgd: {type: pgd, label: PGD-2, steps: 2, step_size: 4/255}",
                                             "pgd: {type: pgd, label: PGD-2, steps: 2}"))
    plan = make_plan(load_protocol(str(path), ()))
    cell = plan.cells[plan.grid_index[GridKey("synthetic", "none", 0, "g", 0.5, 0.1)]]
    assert cell.attack_params["norm"] == "l2"
    assert cell.attack_params["step_size"] == pytest.approx({"rgb": 0.125, "skeleton": 0.025})
