"""Corruption cells: the ``corruptions:`` protocol section, their identity, evaluation and report (mCE)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from robench.errors import ProtocolError
from robench.plan import CorruptionKey, make_plan
from robench.protocol.schema import load_protocol

DATA = Path(__file__).parent / "data"
TINY = DATA / "tiny.yaml"
SUITE = DATA / "tiny_corruptions.yaml"


def _protocol(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(TINY.read_text() + text)
    return path


def test_every_corruption_and_severity_is_a_cell_of_its_own_and_one_level_ones_run_once() -> None:
    plan = make_plan(load_protocol(str(SUITE), ()))
    keys = set(plan.corruption_index)
    assert CorruptionKey("synthetic", "none", 0, "h264", 3) in keys
    assert {k.severity for k in keys if k.corruption == "skeleton-missing"} == {1}  # one level: once
    assert {k.severity for k in keys if k.corruption == "joint-jitter"} == {1, 3, 5}
    ids = [plan.corruption_index[k] for k in keys]
    assert len(set(ids)) == len(ids) and not set(ids) & set(plan.index.values())
    cell = plan.cells[plan.corruption_index[CorruptionKey("synthetic", "none", 0, "h264", 3)]]
    assert cell.spec["corruption"]["type"] == "h264" and cell.spec["corruption"]["severity"] == 3
    assert cell.attack_type is None and cell.corruption is not None and cell.corruption.type == "h264"
    # the models are the tiny protocol's: corruptions only add cells
    assert set(plan.models) == set(make_plan(load_protocol(str(TINY), ())).models)


def test_a_corruption_of_an_input_the_model_does_not_take_is_left_out(tmp_path: Path) -> None:
    path = tmp_path / "rgb_only.yaml"
    path.write_text(f"include: {TINY}\nname: rgb-only\nmodel: {{skeleton: null}}\nscenarios: [clean, R]\n"
                    "defenses: {at_rs: {modalities: [rgb]}}\n"
                    "corruptions: {types: [h264, joint-jitter], severities: [2]}\n")
    plan = make_plan(load_protocol(str(path), ()))
    assert {k.corruption for k in plan.corruption_index} == {"h264"}


@pytest.mark.parametrize("suite, key, allowed", [
    ("{severities: [0, 1]}", "corruptions.severities", "distinct severities from 1, 2, 3, 4, 5"),
    ("{baseline: amr}", "corruptions.baseline", "a defense id of the protocol"),
    ("{types: [gaussian-noise, fog]}", "corruptions.types.fog.type", "a registered corruption"),
    ("{types: []}", "corruptions.types", "at least one"),
    ("{levels: [1]}", "corruptions.levels", "keys types, severities, baseline"),
])
def test_bad_suites_are_clear_protocol_errors(tmp_path: Path, suite: str, key: str, allowed: str) -> None:
    with pytest.raises(ProtocolError) as info:
        load_protocol(str(_protocol(tmp_path, f"corruptions: {suite}\n")), ())
    assert f"key '{key}'" in str(info.value) and allowed in str(info.value)


@pytest.mark.slow
def test_corruption_cells_do_not_depend_on_the_batch_and_report_mce_from_what_is_stored(tmp_path: Path) -> None:
    from robench.cli import main
    from robench.report.tables import select_runs
    from robench.store import ResultsStore, unpack_bits

    stores = [tmp_path / "a.sqlite", tmp_path / "b.sqlite"]
    for store, batch in zip(stores, (16, 5)):
        assert main(["run", str(SUITE), "--store", str(store), "--cache", str(tmp_path / "c"), "--progress", "quiet",
                     "--set", "training.epochs=1", "--set", f"evaluation.batch_size={batch}"]) == 0
    a, b = (ResultsStore(s, read_only=True) for s in stores)
    layout = next(iter(select_runs(a, None).values()))
    cells_a, cells_b = a.cells(layout.cell_ids()), b.cells(layout.cell_ids())
    assert set(cells_a) == set(cells_b) == layout.cell_ids()
    for cid, cell in cells_a.items():
        assert np.array_equal(unpack_bits(cell["per_sample"], cell["n"]),
                              unpack_bits(cells_b[cid]["per_sample"], cells_b[cid]["n"])), cid
    out = tmp_path / "r.md"
    assert main(["report", "--store", str(stores[0]), "--out", str(out)]) == 0
    text = out.read_text()
    assert "Accuracy (%) under each corruption, mean over severities 1, 3, 5" in text
    # mCE of AT-RS recomputed here from the stored cells (Hendrycks & Dietterich): sum of errors over
    # severities, relative to the baseline's, averaged over corruptions
    acc = {(r.defense, r.corruption, r.severity): 100 * cells_a[r.cell_id]["accuracy"]
           for r in layout.corruption_cells}
    suite = layout.variants["synthetic"].corruptions
    assert suite is not None
    ratios = []
    for cid, info in suite.corruptions.items():
        levels = suite.severities if info.graded else suite.severities[:1]
        err = {d: sum(100 - acc[(d, cid, s)] for s in levels) for d in ("none", "at_rs")}
        if err["none"] > 0:
            ratios.append(100 * err["at_rs"] / err["none"])
    summary = text.split("Robustness to corruptions", 1)[1]
    row = next(x for x in summary.splitlines() if x.startswith("| AT-RS |")).split("|")
    assert float(row[-3]) == pytest.approx(float(np.mean(ratios)), abs=0.006)
    none_row = next(x for x in summary.splitlines() if x.startswith("| None |")).split("|")
    assert float(none_row[-3]) == pytest.approx(100.0)
