"""The static site of the leaderboard (issue 25, "One site"): ``robench leaderboard site --out DIR``.

Built from the committed board (every track: attack, plausible, corruption and reported-only ones) and from copies
of its records: every link resolves inside the site, each entry page holds its record's numbers, flags and
provenance and links its weights by SHA-256, hostile names are escaped, nothing is written outside ``out``, bad input
is one error; and, in headless Chromium, index -> track -> sort -> filter -> entry -> weights download.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import shutil
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from conftest import REPO
from robench.cli import main
from robench.errors import RobenchError
from robench.leaderboard.record import read_record, write_record
from robench.leaderboard.render import board, environment
from robench.leaderboard.site import build_site, entry_view
from robench.leaderboard.tracks import load_track
from robench.leaderboard.transfer import TRANSFER_FILE, accuracy, read_transfer

BOARD = REPO / "leaderboard"
TRACKS = ("synthetic", "synthetic-plausible", "synthetic-corruptions", "ntu60-xsub", "imigue")
MANIFEST = json.loads((REPO / "robench" / "zoo" / "weights" / "synthetic" / "manifest.json").read_text())


class _Page(HTMLParser):
    """The links (tag, attribute, value, classes) and the element ids of one page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str, str, str]] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if "id" in found:
            self.ids.add(found["id"])
        for attr in ("href", "src"):
            if attr in found:
                self.links.append((tag, attr, found[attr], found.get("class", "")))


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _copy_board(root: Path, tracks: tuple[str, ...] = ("synthetic",)) -> Path:
    """A leaderboard folder holding copies of the committed records of ``tracks``."""
    for t in tracks:
        (root / t).mkdir(parents=True)
        for record in (BOARD / t).glob("*.json"):
            shutil.copy(record, root / t / record.name)
    return root


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site of the committed board, built by the command line (the board is read, never written)."""
    out = tmp_path_factory.mktemp("site") / "site"
    before = _tree(BOARD)
    assert main(["leaderboard", "site", "--out", str(out), "--root", str(BOARD)]) == 0
    assert _tree(BOARD) == before
    return out


def test_the_site_has_an_index_a_page_per_track_and_per_entry(site: Path) -> None:
    index = (site / "index.html").read_text()
    for t in TRACKS:
        track = load_track(t)
        assert f'href="{t}/index.html">{track.title}</a>' in index.replace("&#x27;", "'")
        assert f'<tr data-track="{t}">' in index and f"<td>v{track.version}</td>" in index
        records = sorted(p.stem for p in (BOARD / t).glob("*.json") if p.name != TRANSFER_FILE)
        assert sorted(p.stem for p in (site / t).glob("*.html") if p.stem != "index") == records
        for r in records:  # each record copied byte for byte beside its page
            assert (site / t / f"{r}.json").read_bytes() == (BOARD / t / f"{r}.json").read_bytes()
    # the top entries: every entry the synthetic board ranks first, with the worst case it ranks by (challenges
    # counted); reported-only tracks rank none
    synthetic = index.split('<tr data-track="synthetic">')[1].split("</tr>")[0]
    first = [r for r in board(load_track("synthetic"), BOARD / "synthetic").rows if r.ranked and r.ranked.rank == 1]
    assert synthetic.count('class="top"') == len(first) > 0
    for r in first:
        assert (f'href="synthetic/{r.entry["id"]}.html">{html.escape(r.entry["name"])}</a> <small>'
                f'{r.ranked.label}, XRS {r.ranked.score:.2f}') in synthetic  # type: ignore[union-attr]
    assert "none ranked: reported numbers only" in index.split('<tr data-track="imigue">')[1].split("</tr>")[0]
    assert (site / "site.css").is_file() and (site / "site.js").is_file()


def test_every_link_resolves_to_a_file_of_the_site(site: Path) -> None:
    pages = sorted(site.rglob("*.html"))
    assert len(pages) == 1 + sum(1 + len([p for p in (BOARD / t).glob("*.json") if p.name != TRANSFER_FILE])
                                 for t in TRACKS)
    parsed = {p.resolve(): _parse(p) for p in pages}
    external = 0
    for path, page in parsed.items():
        assert page.links, path
        for tag, _attr, link, cls in page.links:
            parts = urlsplit(link)
            if parts.scheme:  # only an entry's paper, as a plain link; nothing is loaded from elsewhere
                assert parts.scheme == "https" and tag == "a" and "external" in cls, (path, link)
                external += 1
                continue
            assert not link.startswith("/") and not parts.netloc, (path, link)  # relative: file:// and any host
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            assert target.is_file() and target.is_relative_to(site.resolve()), (path, link)
            if parts.fragment:
                assert parts.fragment in parsed[target].ids, (path, link)
    assert external > 0


def test_an_entry_page_holds_everything_its_record_has(site: Path) -> None:
    record = read_record(BOARD / "synthetic" / "at-r.json")
    text = (site / "synthetic" / "at-r.html").read_text()
    res = record["results"]
    # the board's numbers: the record's, and where other entries' transferred clips lowered a column, that too
    shown = next(r for r in board(load_track("synthetic"), BOARD / "synthetic").rows if r.entry["id"] == "at-r")
    for col in ("clean", "R", "S", "RS", "worst"):
        now = shown.record["results"][col]
        assert f"{res[col]['accuracy']:.2f}" in text and f"{now['correct']} / {now['n']}" in text
    for attack in res["by_attack"].values():  # every attack and every AutoAttack member, per scenario
        assert attack["label"] in text
        for s in ("R", "S", "RS"):
            assert f"{attack[s]['accuracy']:.2f} <span class=\"iv\">" in text
    for member, per in res["autoattack"].items():
        assert f'<tr data-member="{member}">' in text
        assert all(f"{per[s]['accuracy']:.2f}" in text for s in per)
    assert 'id="flag-ignores-input"' in text and "ignores-input" in text  # the flag the board links to
    for key in ("git_commit", "torch", "device", "protocol_hash", "evaluated_at"):
        assert str(record["provenance"][key]) in text, key
    assert record["per_sample_digest"] in text and record["seal"]["value"] in text
    assert hashlib.sha256((BOARD / "synthetic" / "at-r.json").read_bytes()).hexdigest() in text
    # the weights the zoo names for it: copied once into the site, linked relatively, with their SHA-256
    sha = MANIFEST["entries"]["at-r"]["weights"]["sha256"]
    assert f'href="../weights/{sha}.safetensors"' in text and f'<code class="sha256">{sha}</code>' in text
    assert hashlib.sha256((site / "weights" / f"{sha}.safetensors").read_bytes()).hexdigest() == sha
    assert sorted(p.name for p in (site / "weights").iterdir()) == sorted(
        f"{e['weights']['sha256']}.safetensors" for e in MANIFEST["entries"].values())
    # a track that shares the synthetic track's zoo files (the same models), a reported-only entry, a corruption
    # track's entry
    assert f'href="../weights/{sha}.safetensors"' in (site / "synthetic-plausible" / "at-r.html").read_text()
    unverified = (site / "ntu60-xsub" / "amr.html").read_text()
    assert "unverified" in unverified and "No weights are published" in unverified
    reported = read_record(BOARD / "ntu60-xsub" / "amr.json")["reported"]
    assert all(f"{v:.2f}" in unverified for v in reported.values())
    corrupted = (site / "synthetic-corruptions" / "amr.html").read_text()
    corruptions = read_record(BOARD / "synthetic-corruptions" / "amr.json")["results"]["corruptions"]
    assert all(f'<tr data-corruption="{c}">' in corrupted for c in corruptions)
    assert ("Challenges" in text) == bool(record.get("challenges")) and '<section id="transfer">' in text


def test_challenges_and_transfer_are_shown_when_a_record_has_them() -> None:
    track = load_track("synthetic")
    b = board(track, BOARD / "synthetic")
    row = next(r for r in b.rows if r.entry["id"] == "amr")
    row.record["challenges"] = [{"author": "<b>Eve</b>", "attack": "APGD-DLR, 100 steps", "date": "2026-12-06",
                                 "sha256": "sha256:" + "ab" * 32, "scenario": "RS", "clips": 20,
                                 "clips_broken": [3, 5], "robench": "0.1.0", "device": "cpu"}]
    weights = {"href": None, "sha256": None, "format": None, "size": None, "model_id": None, "command": None,
               "note": "No weights are published for this entry."}
    page = environment().get_template("site_entry.html.j2").render(
        base="../", version="0", track=track, e=entry_view(b, row), weights=weights,
        record={"href": "amr.json", "sha256": "0" * 64, "size": 1})
    section = page.split('<section id="challenges">')[1].split("</section>")[0]
    assert "&lt;b&gt;Eve&lt;/b&gt;" in section and "<b>Eve" not in section
    assert "APGD-DLR, 100 steps" in section and "2 of 20" in section and "ab" * 32 in section and "XRS" in section
    results = page.split('<section id="results">')[1].split("</section>")[0]
    assert "and the accepted challenges" in results and results.count('class="before"') == 2  # XRS and worst case
    # the entry's row and column of the track's transfer matrix (leaderboard/synthetic/transfer.json)
    data = read_transfer(BOARD / "synthetic" / TRANSFER_FILE, track)
    acc = accuracy(data, track.rank_by)
    section = page.split('<section id="transfer">')[1].split("</section>")[0]
    rows = section.split("<tbody>")[1].split("</tbody>")[0].split("</tr>")[:-1]
    assert len(rows) == len(data["models"])
    for source, text in zip(data["models"], rows, strict=True):
        name = html.escape(data["models"][source]["name"])
        assert name in text and f"{acc[source]['amr']:.2f}" in text and f"{acc['amr'][source]:.2f}" in text
        assert ("(white-box)" in text) == (source == "amr")
    for scenario, low in row.transfer.items():  # and what transfer lowered, as the board says it
        assert f"{low.before:.2f} → {low.after:.2f}, lowered by {len(low.broken)} clip" in section, scenario


def test_hostile_names_are_escaped_and_links_stay_http(tmp_path: Path) -> None:
    root = _copy_board(tmp_path / "board")
    record = read_record(root / "synthetic" / "amr.json")
    record["entry"].update(name="<script>alert(1)</script>", authors=["<b>A</b>"], venue="<img src=x onerror=alert(2)>",
                           paper="javascript:alert(3)", defense='" onmouseover="alert(4)',
                           footnote="</td><script>alert(5)</script>")
    record["flags"] = [{"code": "x\"><script>alert(6)</script>", "message": "<script>alert(7)</script>",
                        "cell": None, "where": None}]
    write_record(root / "synthetic" / "amr.json", record)
    out = tmp_path / "site"
    build_site(root, out)
    for page in out.rglob("*.html"):
        text = page.read_text()
        assert "<script>alert" not in text and "<b>A</b>" not in text and "<img" not in text, page
        assert 'href="javascript:' not in text and '" onmouseover="' not in text, page
    entry = (out / "synthetic" / "amr.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in entry and "&lt;img src=x onerror=alert(2)&gt;" in entry
    assert "javascript:alert(3)" in entry  # shown as text, not a link
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in (out / "synthetic" / "index.html").read_text()


def test_nothing_is_written_outside_out(tmp_path: Path) -> None:
    root = _copy_board(tmp_path / "board", ("synthetic", "ntu60-xsub"))
    outside = tmp_path / "outside"
    outside.mkdir()
    before = _tree(tmp_path)
    out = tmp_path / "nested" / "site"
    site = build_site(root, out)
    after = _tree(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("nested/site/")} == before
    assert all(p.resolve().is_relative_to(out.resolve()) for p in site.files)
    assert set(after) - set(before) == {f"nested/site/{p.relative_to(out.resolve())}" for p in site.files}
    # a symlink in out that leads elsewhere: refused before anything is written, the other folder untouched
    second = tmp_path / "second"
    second.mkdir()
    (second / "synthetic").symlink_to(outside, target_is_directory=True)
    with pytest.raises(RobenchError, match="outside the site folder"):
        build_site(root, second)
    assert not any(outside.iterdir()) and sorted(p.name for p in second.iterdir()) == ["synthetic"]


def test_an_entry_whose_page_would_be_the_tracks_is_refused(tmp_path: Path) -> None:
    root = _copy_board(tmp_path / "board")
    record = read_record(root / "synthetic" / "none.json")
    record["entry"]["id"] = "index"
    write_record(root / "synthetic" / "index.json", record)
    with pytest.raises(RobenchError, match=r"synthetic/index.html, a file the site already has"):
        build_site(root, tmp_path / "site")
    assert not (tmp_path / "site").exists()


def test_weights_that_are_not_the_manifests_are_refused(tmp_path: Path) -> None:
    root = _copy_board(tmp_path / "board")
    zoo = tmp_path / "zoo" / "synthetic"
    zoo.mkdir(parents=True)
    (zoo / "amr.safetensors").write_bytes(b"not the weights")
    entry = MANIFEST["entries"]["amr"]
    manifest = {"schema": 1, "track": "synthetic", "entries": {"amr": entry}}
    (zoo / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RobenchError, match="SHA-256"):
        build_site(root, tmp_path / "site", zoo=tmp_path / "zoo")
    assert not (tmp_path / "site").exists()
    # the zoo names another model under the entry's id: nothing is linked
    manifest["entries"]["amr"] = {**entry, "model_id": "0123456789abcdef"}
    (zoo / "manifest.json").write_text(json.dumps(manifest))
    build_site(root, tmp_path / "site", zoo=tmp_path / "zoo")
    text = (tmp_path / "site" / "synthetic" / "amr.html").read_text()
    assert "not the model this record evaluated" in text and 'class="weights"' not in text
    assert not (tmp_path / "site" / "weights").exists()


@pytest.mark.parametrize("case", ["missing_root", "root_is_a_file", "out_is_a_file", "no_records"])
def test_bad_input_is_one_clear_error(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, out = tmp_path / "board", tmp_path / "site"
    if case == "root_is_a_file":
        root.write_text("x")
    elif case == "out_is_a_file":
        _copy_board(root)
        out.write_text("keep")
    elif case == "no_records":
        root.mkdir()
    capsys.readouterr()
    assert main(["leaderboard", "site", "--out", str(out), "--root", str(root)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err.count("robench: error:") == 1 and "Traceback" not in err, err
    said = {"missing_root": "does not exist", "root_is_a_file": "not a folder", "out_is_a_file": "a file is there",
            "no_records": "no records under"}[case]
    assert said in err, err
    assert out.read_text() == "keep" if case == "out_is_a_file" else not out.exists()


# -- in a real browser -------------------------------------------------------------------------------------

def _browser_paths() -> tuple[str | None, str | None]:
    return (shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome"),
            shutil.which("chromedriver"))


def test_the_site_works_from_file_urls_in_a_real_browser(tmp_path: Path) -> None:
    chrome, driver = _browser_paths()
    if not (chrome and driver):
        if os.environ.get("ROBENCH_REQUIRE_BROWSER"):
            pytest.fail("ROBENCH_REQUIRE_BROWSER is set but chromium/chromedriver are not installed")
        pytest.skip("chromium and chromedriver are not installed (CI installs them: see .ci/run)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    root = _copy_board(tmp_path / "board", ("synthetic", "ntu60-xsub"))
    out = tmp_path / "site"
    build_site(root, out)
    records = {p.stem: read_record(p) for p in (root / "synthetic").glob("*.json") if p.name != TRANSFER_FILE}
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = chrome
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 f"--user-data-dir={tmp_path / 'chrome-profile'}", "--window-size=1400,1000"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    browser = webdriver.Chrome(service=Service(driver), options=options)
    wait = WebDriverWait(browser, 20)

    def visible_ids() -> list[str]:
        return [str(r.get_attribute("data-id")) for r in browser.find_elements(By.CSS_SELECTOR, "#board tbody tr")
                if r.is_displayed()]

    def clean(k: str) -> float:
        return float(records[k]["results"]["clean"]["accuracy"])

    try:
        browser.get((out / "index.html").resolve().as_uri())
        assert browser.title == "robench leaderboard"
        assert len(browser.find_elements(By.CSS_SELECTOR, "#tracks tbody tr")) == 2
        browser.find_element(By.CSS_SELECTOR, 'tr[data-track="synthetic"] a.track').click()
        wait.until(lambda b: b.current_url.endswith("/synthetic/index.html"))
        assert sorted(visible_ids()) == sorted(records)
        # the shared style sheet applies (loaded relatively from file://)
        assert browser.find_element(By.CSS_SELECTOR, "th").value_of_css_property("position") == "sticky"
        header = browser.find_element(By.CSS_SELECTOR, 'th[data-col="clean"]')
        header.click()  # ascending
        assert [clean(k) for k in visible_ids()] == sorted(clean(k) for k in records)
        header.click()  # descending
        assert [clean(k) for k in visible_ids()] == sorted((clean(k) for k in records), reverse=True)
        box = browser.find_element(By.ID, "filter")
        box.send_keys("minsim")
        assert sorted(visible_ids()) == ["minsim", "minsim-exfmem"]
        hidden = [r for r in browser.find_elements(By.CSS_SELECTOR, "#board tbody tr") if not r.is_displayed()]
        assert len(hidden) == len(records) - 2
        box.clear()
        box.send_keys("madry")  # an author: the three adversarial-training entries
        assert sorted(visible_ids()) == ["at-r", "at-rs", "at-s"]
        browser.find_element(By.CSS_SELECTOR, 'tr[data-id="at-rs"] a.entry').click()
        wait.until(lambda b: b.current_url.endswith("/synthetic/at-rs.html"))
        res = records["at-rs"]["results"]
        assert browser.find_element(By.TAG_NAME, "h1").text == "AT with XRS"
        results = browser.find_element(By.ID, "results").text
        assert f"{res['clean']['accuracy']:.2f}" in results and f"{res['RS']['accuracy']:.2f}" in results
        assert len(browser.find_elements(By.CSS_SELECTOR, "#attacks tbody tr")) == len(res["by_attack"])
        assert len(browser.find_elements(By.CSS_SELECTOR, "#autoattack tbody tr")) == len(res["autoattack"])
        assert records["at-rs"]["provenance"]["git_commit"] in browser.find_element(By.ID, "provenance").text
        # follow the weights link: the browser downloads the file the page names, with its SHA-256
        sha = browser.find_element(By.CSS_SELECTOR, "#weights code.sha256").text
        assert sha == MANIFEST["entries"]["at-rs"]["weights"]["sha256"]
        link = browser.find_element(By.CSS_SELECTOR, "a.weights")
        linked = Path(unquote(urlsplit(str(link.get_attribute("href"))).path))
        assert linked.is_file() and hashlib.sha256(linked.read_bytes()).hexdigest() == sha
        link.click()
        got = downloads / linked.name
        deadline = time.monotonic() + 20
        while not (got.is_file() and got.stat().st_size == linked.stat().st_size) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert hashlib.sha256(got.read_bytes()).hexdigest() == sha
        # and back: the crumbs lead to the track and the index
        browser.find_element(By.CSS_SELECTOR, "nav.crumbs a[href='index.html']").click()
        wait.until(lambda b: b.current_url.endswith("/synthetic/index.html"))
        browser.find_element(By.CSS_SELECTOR, "nav.crumbs a[href='../index.html']").click()
        wait.until(lambda b: b.current_url.endswith("/site/index.html"))
        severe = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
        assert not severe, severe
    finally:
        browser.quit()
