"""Reports of the paper protocols (run at test size): tables vs the store, paper values, figures, claims, HTML."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from conftest import REPO
from robench.cli import main
from robench.report.render import build_report, render
from robench.store import ResultsStore

DATA = REPO / "tests" / "data"
VERDICTS = {"reproduced", "partly", "not reproduced", "no data"}


@pytest.fixture(scope="module")
def paper_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Table 1, Figure 4 (+ Table 3's models) and a two-point Figure 2 at test size, in one store."""
    store = tmp_path_factory.mktemp("paper") / "r.sqlite"
    for name, extra in (("tiny_table1.yaml", []), ("tiny_figure4.yaml", []),
                        ("tiny_figure2.yaml", ["--set", "eps=[0, 8/255]", "--set", "attacks.pgd.steps=2",
                                               "--set", "attacks.cw.steps=2"])):
        assert main(["run", str(DATA / name), "--profile", "tiny", "--store", str(store), "--progress", "quiet",
                     *extra]) == 0
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
        assert len(tables) == 2 and all(t.is_displayed() for t in tables)
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
