"""Reports of the paper protocols (run at test size): tables vs the store, paper values, figures, claims, HTML."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import sys
import textwrap
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from conftest import REPO, TINY_PROTOCOL
from robench.cli import main
from robench.errors import ProtocolError, RobenchError
from robench.plan import make_plan
from robench.protocol import load_protocol
from robench.report.render import build_report, render
from robench.run_layout import LAYOUT_FORMAT, LayoutFormatError, RunLayout
from robench.store import ResultsStore

DATA = REPO / "tests" / "data"
VERDICTS = {"reproduced", "partly", "not reproduced", "no data"}


@pytest.fixture(scope="module")
def paper_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Table 1, Figure 4, Table 3 (Figure 4's models) and a two-point Figure 2 at test size, in one store."""
    folder = tmp_path_factory.mktemp("paper")
    store = folder / "r.sqlite"
    table3 = folder / "tiny_table3.yaml"
    table3.write_text(f"include: [{REPO / 'robench' / 'protocols' / 'table3.yaml'}, {DATA / 'tiny_profile.yaml'}]\n")
    for path, extra in ((DATA / "tiny_table1.yaml", []), (DATA / "tiny_figure4.yaml", []), (table3, []),
                        (DATA / "tiny_figure2.yaml", ["--set", "eps=[0, 8/255]", "--set", "attacks.pgd.steps=2",
                                                      "--set", "attacks.cw.steps=2"])):
        assert main(["run", str(path), "--profile", "tiny", "--store", str(store), "--progress", "quiet", *extra]) == 0
    return store


@pytest.fixture(scope="module")
def report(paper_store: Path, tmp_path_factory: pytest.TempPathFactory):
    return build_report(ResultsStore(paper_store), None, tmp_path_factory.mktemp("figs"))


def test_table1_values_come_from_the_store(paper_store: Path, report) -> None:
    table = next(t for t in report.tables if t.id == "table1")
    assert table.row_header == "Attack" and table.column_ids == ["clean", "R", "S", "RS", "Avg", "uni_r", "uni_s"]
    cells = ResultsStore(paper_store).cells()
    for block in table.blocks:
        for row in block.rows:
            for col in ("clean", "R", "S", "RS", "uni_r", "uni_s"):
                v = row.values[col]
                assert v.value is not None and len(v.cells) == 1
                assert v.value == pytest.approx(100 * cells[v.cells[0]]["accuracy"])
                assert v.ci is not None and v.ci[0] <= v.value <= v.ci[1] and v.n == cells[v.cells[0]]["n"]
            r, s, rs = (row.values[c].value for c in ("R", "S", "RS"))
            assert row.values["Avg"].value == pytest.approx((r + s + rs) / 3)
            assert row.values["R"].value <= row.values["clean"].value  # attacks never help
        # the unimodal columns are the clean accuracy of the one-branch models, the same on every row
        assert len({row.values["uni_r"].value for row in block.rows}) == 1
    assert not any(block.best for block in table.blocks)  # bold: false


def test_paper_values_and_differences(report) -> None:
    table = next(t for t in report.tables if t.id == "table1")
    ntu = table.blocks[0]
    pgd = next(r for r in ntu.rows if r.id == "pgd10")
    assert pgd.values["R"].paper == 6.39 and pgd.values["uni_s"].paper == 81.46
    assert pgd.values["R"].diff == pytest.approx(pgd.values["R"].value - 6.39)


def test_amr_weights_table_matches_model_summaries(paper_store: Path, report) -> None:
    figure = next(p for p in report.protocols if p.name == "figure4@tiny")
    assert [f.kind for f in figure.figures] == ["amr_weights"]
    models = ResultsStore(paper_store).models()
    amr = next(m for m in models.values() if m["spec"]["defense"]["type"] == "amr")["summary"]["amr"]
    assert [a["index"] for a in amr] == [1, 2, 3]
    assert all(len(a["channel_means_rgb"]) > 0 and len(a["channel_means_skeleton"]) > 0 for a in amr)


def test_amr_table3_is_amrs_contribution_with_paper_values(paper_store: Path, report) -> None:
    """Table 3 (kind amr_weights, contributed by the AMR defense): mean W_R / W_S per AMR, with the paper's values."""
    table = next(t for t in report.tables if t.id == "table3")
    assert table.kind == "amr_weights" and table.digits == 4 and table.column_ids == ["AMR 1", "AMR 2", "AMR 3"]
    models = ResultsStore(paper_store).models()
    layout = RunLayout.from_json(ResultsStore(paper_store).latest_runs()["table3@tiny"]["layout"])
    for block in table.blocks:
        (model_id,) = layout.model_ids(block.dataset, "amr3")
        amrs = models[model_id]["summary"]["amr"]
        rgb, skeleton = block.rows
        assert (rgb.id, rgb.label, skeleton.label) == ("rgb", "Mean value of W_R", "Mean value of W_S")
        assert [rgb.values[f"AMR {i}"].value for i in (1, 2, 3)] == pytest.approx([a["mean_rgb"] for a in amrs])
        assert skeleton.values["AMR 1"].value == pytest.approx(amrs[0]["mean_skeleton"])
        assert rgb.values["AMR 1"].seeds == 1 and block.has_reference
    ntu = table.blocks[0]
    assert ntu.rows[0].values["AMR 2"].paper == 0.3065
    assert ntu.rows[0].values["AMR 2"].diff == pytest.approx(ntu.rows[0].values["AMR 2"].value - 0.3065)
    text = render(report, "markdown")
    assert "|  (Tiny NTU stand-in) | AMR 1 | AMR 2 | AMR 3 |" in text  # no row header
    assert "| *paper* | *0.3067* | *0.3065* | *0.3067* |" in text
    assert re.search(r"\| Mean value of W_R \| \d\.\d{4} \| \d\.\d{4} \| \d\.\d{4} \|", text)


def test_figures_are_written_as_png_and_svg(report) -> None:
    figures = [f for p in report.protocols for f in p.figures]
    assert {f.kind for f in figures} == {"eps_curves", "amr_weights"}
    for f in figures:
        assert f.png.stat().st_size > 1000 and f.svg.read_text().lstrip().startswith("<?xml")
        assert mpimg.imread(f.png).shape[2] in (3, 4)
    curves = next(f for f in figures if f.kind == "eps_curves")
    # FGSM, PGD and CW on R, S and both, on each dataset: 9 series per panel, eps 0 and 8/255 -> x = 0 and 4
    assert len(curves.data["series"]) == 18
    assert all([x for x, _ in pts] == [0.0, 4.0] for pts in curves.data["series"].values())


def test_claims_have_verdicts_and_evidence(report) -> None:
    claims = report.claims
    assert {c.id for c in claims} == {"skeleton_more_robust", "fusion_not_more_robust"}
    for c in claims:
        assert c.verdict in VERDICTS and c.details and c.evidence


def test_markdown_report_with_figures(paper_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "report" / "README.md"
    assert main(["report", "--store", str(paper_store), "--out", str(out)]) == 0
    text = out.read_text()
    assert "| Attack (Tiny NTU stand-in) | Clean | XR | XS | XRS | Avg | Unimodal RGB clean |" in text
    assert "| *paper* | *88.09* | *6.39* | *25.18* | *1.66* | *11.08* | *81.46* | *81.46* |" in text
    links = re.findall(r"\]\((figures/[^)]+)\)", text)
    assert links and all((out.parent / link).is_file() for link in links)
    assert "### Claims of the paper" in text


def test_tables_state_eps_in_each_modalitys_units(report) -> None:
    from robench.report.tables import Block, Row, Value, threat_note

    table = next(t for t in report.tables if t.id == "table1")
    notes = [n for n in table.notes if n.startswith("Threat model (")]
    assert len(notes) == len(table.blocks)
    for note in notes:  # scale 1: the same number, as grey levels for RGB and metres for the skeleton
        found = re.search(r"eps (\d+)/255 is RGB \1 grey levels of 255; skeleton ([\d.]+) \(", note)
        assert found and float(found[2]) == pytest.approx(int(found[1]) / 255, rel=1e-3), note
    assert "Threat model (" in render(report, "markdown")
    # a skeleton scaled to the unit range of a 5.691 m span: the same nominal eps is 17.9 cm
    cells = {"a": {"spec": json.dumps({"attack": {"params": {"eps": {"rgb": 8 / 255, "skeleton": 5.691 * 8 / 255}}}})},
             "b": {"spec": json.dumps({"attack": None})}}
    block = Block("u", "unit range", [Row("none", "None", "none", "none", {"RS": Value(1.0, cells=["a", "b"])})])
    assert "skeleton 0.1785 (17.9 cm if metres)" in threat_note(block, 8 / 255, cells)
    assert threat_note(block, 8 / 255, {}) == ""  # nothing stored yet: nothing claimed


def test_markdown_shows_each_accuracy_with_its_interval(report) -> None:
    from robench.report.render import fmt_ci
    from robench.report.tables import Value

    assert fmt_ci(Value(93.75, n=128, correct=120, ci=(88.2, 96.9))) == " <sub>88–97</sub>"
    assert fmt_ci(Value(None)) == "" and fmt_ci(Value(1.5)) == ""  # missing, or not an accuracy (e.g. RI)
    text = render(report, "markdown")
    found = re.findall(r"(\d+\.\d+)\** <sub>(\d+)–(\d+)</sub>", text)
    assert len(found) > 10
    assert all(int(lo) <= float(v) <= int(hi) and int(hi) - int(lo) >= 1 for v, lo, hi in found)
    assert not any("<sub>" in line for line in text.splitlines() if line.startswith("| *paper*"))


def test_csv_has_paper_difference_and_interval(paper_store: Path, report) -> None:
    rows = list(csv.DictReader(io.StringIO(render(report, "csv"))))
    pgd_r = next(r for r in rows if r["table"] == "table1" and r["dataset"] == "ntu60" and r["row"] == "pgd10"
                 and r["column"] == "R")
    assert float(pgd_r["paper"]) == 6.39
    assert float(pgd_r["difference"]) == pytest.approx(float(pgd_r["value"]) - 6.39, abs=1e-3)
    assert float(pgd_r["ci95_low"]) <= float(pgd_r["value"]) <= float(pgd_r["ci95_high"]) and int(pgd_r["n"]) > 0


def test_html_is_self_contained(report) -> None:
    html = render(report, "html")
    assert html.count("data:image/png;base64,") == 2
    assert not re.search(r"""(src|href)=["']https?:""", html)
    assert "<table class=\"results\">" in html and "paper 6.39" in html


def _browser_paths() -> tuple[str | None, str | None]:
    return (shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome"),
            shutil.which("chromedriver"))


def test_html_report_renders_in_a_real_browser(paper_store: Path, tmp_path: Path) -> None:
    """Headless Chromium opens the page; its tables and images are visible (images decoded, non-zero size)."""
    chrome, driver = _browser_paths()
    if not (chrome and driver):
        if os.environ.get("ROBENCH_REQUIRE_BROWSER"):
            pytest.fail("ROBENCH_REQUIRE_BROWSER is set but chromium/chromedriver are not installed")
        pytest.skip("chromium and chromedriver are not installed (CI installs them: see .ci/run)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    page = tmp_path / "report.html"
    assert main(["report", "--store", str(paper_store), "--format", "html", "--out", str(page)]) == 0
    options = webdriver.ChromeOptions()
    options.binary_location = chrome
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'chrome-profile'}", "--window-size=1400,1000"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(driver), options=options)
    try:
        browser.get(page.resolve().as_uri())
        tables = browser.find_elements(By.CSS_SELECTOR, "table.results")
        assert len(tables) == 4 and all(t.is_displayed() for t in tables)  # Tables 1 and 3, one per dataset
        first_row = tables[0].find_elements(By.CSS_SELECTOR, "tbody tr")[0]
        assert first_row.text.startswith("FGSM")
        images = browser.find_elements(By.CSS_SELECTOR, "figure img")
        assert len(images) == 2
        for img in images:
            assert img.is_displayed()
            assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) > 100
            assert img.size["width"] > 100 and img.size["height"] > 50
    finally:
        browser.quit()


# -- the run layout ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [str(TINY_PROTOCOL), "table1", "table3", "table4", "figure2", "figure4"])
def test_run_layout_round_trips_through_json(name: str) -> None:
    """What a run stores (JSON) reads back to an equal typed layout."""
    profile = None if name == str(TINY_PROTOCOL) else "synthetic"
    layout = RunLayout.from_plan(make_plan(load_protocol(name, profile=profile)))
    assert layout.format == LAYOUT_FORMAT and layout.cells and layout.models
    stored = json.loads(json.dumps(layout.to_json()))
    assert RunLayout.from_json(stored) == layout
    assert RunLayout.from_json(stored).to_json() == stored


def test_run_layout_is_typed() -> None:
    layout = RunLayout.from_plan(make_plan(load_protocol("table4", profile="synthetic")))
    cell = layout.cells[0]
    assert (cell.variant, cell.defense, cell.seed) == ("ntu60", "none", 0) and cell.attack is None
    assert cell.scenario == "clean" and cell.eps == 0.0 and len(cell.cell_id) > 8
    ntu = layout.variants["ntu60"]
    assert ntu.defenses["amr2"].type == "amr" and ntu.defenses["amr2"].params["count"] == 2
    assert ntu.defenses["amr2"].modalities == ["rgb", "skeleton"] and ntu.attacks["cw"].type == "cw"
    assert ntu.train_clips() > layout.variants["imigue"].train_clips() > 0
    claim = next(c for c in layout.claims if c.id == "more_amrs_help_larger")
    assert claim.rows["by_count"] == ["at_rs", "amr1", "amr2", "amr3"] and claim.ranks["by_count"] == [0, 1, 2, 3]
    assert len(layout.model_ids("imigue", "amr3")) == 1


def test_layout_of_another_format_is_refused_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run recorded by another robench version (layout format 2: untyped lists) is refused, saying what to do."""
    old = {"format": 2, "name": "old-run", "variants": {}, "tables": [], "cells": [["synthetic", "none", 0, None,
                                                                                      "clean", 0.0, "abc"]]}
    with pytest.raises(LayoutFormatError, match=r"recorded by another robench version .*run the same protocol "
                                                r"again: stored cells are reused"):
        RunLayout.from_json(old)
    store = ResultsStore(tmp_path / "r.sqlite")
    run_id = store.start_run("old-run", "old.yaml", [], {}, old, "0.0.1", None, "cpu")
    store.finish_run(run_id, "complete")
    with pytest.raises(RobenchError, match=r"old-run .*another robench version \(run layout format 2, this version "
                                           rf"reads {LAYOUT_FORMAT}\); run the same protocol\(s\) again"):
        build_report(store)
    assert main(["report", "--store", str(store.path)]) == 2
    assert "run the same protocol(s) again" in capsys.readouterr().err


# -- report contributions of defenses, and protocol validation of them ---------------------------------

def _tiny_with(*overrides: str) -> None:
    load_protocol(TINY_PROTOCOL, ["defenses.amr3={type: amr, label: AMR, count: 1}", *overrides])


def test_unknown_contributed_kind_is_refused() -> None:
    with pytest.raises(ProtocolError, match=r"key 'tables.0.kind': found 'amr_weight'; allowed: accuracy, or a table "
                                            r"kind contributed by the type of the table's defense: amr_weights "
                                            r"\(defense amr3\)"):
        _tiny_with("tables=[{id: t3, kind: amr_weight, defense: amr3}]")
    with pytest.raises(ProtocolError, match=r"key 'tables.0.defense': found 'at_rs'; allowed: the id of a defense "
                                            r"whose type contributes tables of kind 'amr_weights': amr3"):
        _tiny_with("tables=[{id: t3, kind: amr_weights, defense: at_rs}]")
    with pytest.raises(ProtocolError, match=r"key 'figures.0.kind': found 'noise'; allowed: eps_curves, or a figure "
                                            r"kind .*: amr_weights \(defense amr3\)"):
        _tiny_with("figures=[{kind: noise, defense: amr3}]")
    with pytest.raises(ProtocolError, match=r"key 'tables.0.reference.synthetic.rbg': found 'rbg'; allowed: a row id "
                                            r"of this table: rgb, skeleton"):
        _tiny_with("tables=[{id: t3, kind: amr_weights, defense: amr3, reference: {synthetic: {rbg: [0.5]}}}]")
    with pytest.raises(ProtocolError, match=r"key 'tables.0.reference.synthetic.rgb': .*a list of 1 values"):
        _tiny_with("tables=[{id: t3, kind: amr_weights, defense: amr3, reference: {synthetic: {rgb: [0.5, 0.4]}}}]")
    ok = load_protocol(TINY_PROTOCOL, ["defenses.amr3={type: amr, count: 2}",
                                       "tables=[{id: t3, kind: amr_weights, defense: amr3}]"])
    assert ok.tables[0].kind == "amr_weights" and ok.tables[0].row_header == ""


def test_claims_select_rows_by_id_and_refuse_unknown_ones() -> None:
    table = "tables=[{id: main, attack: pgd}]"
    with pytest.raises(ProtocolError, match=r"key 'claims.0.rows.proposed': found 'nope'; allowed: a row id of table "
                                            r"'main': none, at_rs, amr3"):
        _tiny_with(table, "claims=[{id: amr_best, table: main, rows: {proposed: nope}}]")
    with pytest.raises(ProtocolError, match=r"key 'claims.0.rows.strong.1': found 'amr'; allowed: a row id"):
        _tiny_with(table, "claims=[{id: minsim_exfmem_weak_rgb, table: main, "
                          "rows: {weak: none, strong: [at_rs, amr]}}]")
    with pytest.raises(ProtocolError, match=r"key 'claims.0.rows.best': found 'best'; allowed: roles of claim "
                                            r"'amr_best': proposed"):
        _tiny_with(table, "claims=[{id: amr_best, table: main, rows: {best: amr3}}]")
    with pytest.raises(ProtocolError, match=r"key 'claims.0.rows.proposed': found '\(missing\)'"):
        _tiny_with(table, "claims=[{id: amr_best, table: main}]")
    p = load_protocol(TINY_PROTOCOL, ["defenses.amr3={type: amr, count: 1}", table,
                                      "claims=[{id: more_amrs_help_larger, table: main, "
                                      "rows: {by_count: {1: amr3, 0: at_rs}}},"
                                      " {id: skeleton_more_robust, table: main}]"])
    assert p.claims[0].rows == {"by_count": ["at_rs", "amr3"]} and p.claims[0].ranks == {"by_count": [0.0, 1.0]}
    assert p.claims[1].rows == {"undefended": ["none"]}  # the table's baseline row (its first) by default


NOISE_PLUGIN = '''
"""A defense in one file that contributes a summary table to reports (test plugin)."""
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from robench import Defense, LossOutput, register_defense
from robench.report.contrib import SummaryRow, SummaryTable


@register_defense("skeleton_noise_report_test")
@dataclass
class SkeletonNoise(Defense):
    """Train on skeletons with Gaussian joint noise; report the noise and the trained weights' norm."""

    sigma: float = 0.01  # metres
    report_tables = ("noise_stats",)

    def loss(self, model, inputs, labels, ctx):
        noisy = {**inputs, "skeleton": inputs["skeleton"] + self.sigma * torch.randn_like(inputs["skeleton"])}
        logits = model(noisy)
        return LossOutput(F.cross_entropy(logits, labels), logits)

    def summary(self, model):
        norm = float(sum(float((p.detach() ** 2).sum()) for p in model.parameters()) ** 0.5)
        return {"sigma_cm": 100 * self.sigma, "weight_norm": norm}

    @classmethod
    def summary_table(cls, kind: str, params: dict[str, Any], summaries: list[dict[str, Any]]) -> SummaryTable:
        def mean(key: str) -> float | None:
            found = [s[key] for s in summaries]
            return sum(found) / len(found) if found else None

        return SummaryTable(["sigma (cm)", "weight norm"],
                            [SummaryRow("noise", f"sigma {params['sigma']} m", {"sigma (cm)": mean("sigma_cm"),
                                                                                "weight norm": mean("weight_norm")})],
                            digits=3)
'''


def test_plugin_defense_contributes_a_report_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A defense written in one file adds its own table kind; `robench report` renders it with the paper values."""
    (tmp_path / "noise.py").write_text(NOISE_PLUGIN)
    protocol = tmp_path / "noise.yaml"
    protocol.write_text(textwrap.dedent('''
        name: noise-report
        plugins: [noise.py]
        seeds: [0, 1]
        dataset: {name: synthetic, classes: 4, train_clips_per_class: 2, test_clips_per_class: 2, frames_rgb: 8,
                  frames_skeleton: 16, resolution: 32, train_performers: 2, test_performers: 2}
        model:
          rgb: {backbone: i3d, width: 0.0625, bn_momentum: 0.1}
          skeleton: {backbone: hcn, width: 0.125, window: 16, dropout: 0.0}
        training: {epochs: 1, batch_size: 8, optimizer: adam, lr: 0.003, weight_decay: 0}
        defenses:
          noisy: {type: skeleton_noise_report_test, label: Noisy, sigma: 0.05}
        attacks:
          pgd: {type: pgd, label: PGD-1, steps: 1, step_size: 8/255}
        scenarios: [clean]
        eps: [8/255]
        tables:
          - {id: acc, title: Clean accuracy, attack: pgd, columns: [clean], baseline: null}
          - id: noise
            kind: noise_stats
            defense: noisy
            title: Noise and weights of the trained models (mean over seeds)
            row_header: Statistic
            reference: {synthetic: {noise: [5.0, null]}}
    '''))
    store = tmp_path / "r.sqlite"
    assert main(["run", str(protocol), "--store", str(store), "--progress", "quiet"]) == 0
    capsys.readouterr()
    assert main(["report", "--store", str(store), "--format", "markdown"]) == 0
    text = capsys.readouterr().out
    assert "### noise: Noise and weights of the trained models (mean over seeds)" in text
    assert "| Statistic (synthetic) | sigma (cm) | weight norm |" in text
    norms = [m["summary"]["weight_norm"] for m in ResultsStore(store).models().values()]
    assert len(norms) == 2  # one model per seed
    assert f"| sigma 0.05 m | 5.000 | {sum(norms) / 2:.3f} |" in text
    assert "| *paper* | *5.000* | *–* |" in text and "| *Δ* | *+0.000* | *–* |" in text
    csv_rows = [r for r in csv.DictReader(io.StringIO(render(build_report(ResultsStore(store)), "csv")))
                if r["table"] == "noise"]
    assert [(r["row"], r["column"], r["seeds"]) for r in csv_rows] == [("noise", "sigma (cm)", "2"),
                                                                         ("noise", "weight norm", "2")]

    # a later `robench report` process imports the run's plugin file only with the content the run recorded
    from robench.registry import DEFENSES, PLUGIN_DIGESTS, plugin_module_name

    def forget_plugin() -> None:  # what a fresh process knows: nothing of the plugin
        module = plugin_module_name(tmp_path / "noise.py")
        DEFENSES.forget_module(module)
        sys.modules.pop(module, None)
        PLUGIN_DIGESTS.pop(module, None)

    forget_plugin()
    (tmp_path / "noise.py").write_text(NOISE_PLUGIN + "\nEDITED = True\n")
    assert main(["report", "--store", str(store), "--format", "markdown"]) == 2
    err = capsys.readouterr().err
    assert "noise.py, which has changed since the run" in err
    (tmp_path / "noise.py").write_text(NOISE_PLUGIN)
    assert main(["report", "--store", str(store), "--format", "markdown"]) == 0
    assert "### noise: Noise and weights" in capsys.readouterr().out
