"""The leaderboard: tracks, entries (a protocol's model and an outside one), records, ranking and pages.

The end-to-end part submits, on a tiny track, two models of the tiny protocol and an outside model written
as a new user would (a plugin file with its own backbones and a weights file, not a robench defense), then
renders every format and drives the HTML page in headless Chromium.
"""

from __future__ import annotations

import json
import os
import shutil
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from robench.cli import main
from robench.leaderboard.ranking import mcnemar_exact, rank
from robench.leaderboard.record import (
    RecordError,
    bits_of,
    check_numbers,
    columns_of,
    per_sample_of,
    read_record,
    results_from_bits,
    write_record,
)
from robench.leaderboard.tracks import bundled_tracks, load_track
from robench.store import ResultsStore, unpack_bits

DATA = Path(__file__).parent / "data"
TINY_PROTOCOL = DATA / "tiny.yaml"
VERSIONS = DATA / "track_versions.json"

TINY_TRACK = """\
name: tiny
title: Tiny track (tests)
version: 1
description: the tiny protocol's data, PGD-2 and a two-step AutoAttack
dataset: {name: synthetic, classes: 4, train_clips_per_class: 6, test_clips_per_class: 3, frames_rgb: 8,
          frames_skeleton: 16, resolution: 32, train_performers: 3, test_performers: 2}
evaluation: {split: test, max_samples: null, batch_size: 16, seed: 0}
clips: {count: 12, digest: null}
threat: {rgb: {scale: 1.0, bounds: [0, 1]}, skeleton: {scale: 1.0, bounds: null}}
eps: 8/255
scenarios: [clean, R, S, RS]
attacks:
  pgd: {type: pgd, label: PGD-2, steps: 2, step_size: 4/255}
  aa: {type: autoattack, label: AutoAttack, version: standard, steps: 2, targets: 1, queries: 4}
rank_by: RS
baseline: none
"""

# an outside model as a new user writes it: backbones of their own against robench's public interface
PLUGIN = '''
import torch
from torch import nn

import robench
from robench.models import Backbone


@robench.register_backbone("user_rgb")
class UserRGB(Backbone):
    """A small 3-D CNN on RGB clips."""

    modality = "rgb"

    def __init__(self, channels: int = 6) -> None:
        super().__init__()
        self.stages["conv1"] = nn.Sequential(nn.Conv3d(3, channels, 3, padding=1), nn.ReLU())
        self.stages["conv2"] = nn.Sequential(nn.Conv3d(channels, channels, 3, stride=2, padding=1), nn.ReLU())
        self.feature_dim = channels
        self.feature_stages = ("conv1", "conv2")

    def pool(self, x):
        return x.mean(dim=(2, 3, 4))

    def head(self, x):
        return self.pool(x)

    def example_input(self, batch=1):
        return torch.zeros(batch, 3, 8, 32, 32)


@robench.register_backbone("user_skeleton")
class UserSkeleton(Backbone):
    """An MLP over joints, pooled over time and persons."""

    modality = "skeleton"

    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        self.stages["mlp"] = nn.Sequential(nn.Linear(3 * 25, hidden), nn.ReLU())
        self.feature_dim = hidden
        self.feature_stages = ("mlp",)

    def preprocess(self, x):  # [B, 3, T, 25, M] -> [B, M, T, 75]
        return x.permute(0, 4, 2, 1, 3).flatten(3)

    def pool(self, x):
        return x.mean(dim=(1, 2))

    def head(self, x):
        return self.pool(x)

    def example_input(self, batch=1):
        return torch.zeros(batch, 3, 16, 25, 2)
'''


def _entry(folder: Path, name: str, body: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(body)
    return path


def _meta(name: str) -> str:
    return textwrap.dedent(f"""\
    schema: 1
    name: {name}
    authors: [Test Author]
    paper: https://example.org/{name.replace(' ', '-')}
    venue: Tests 2026
    architecture: two-stream
    defense: {name}
    extra_data: none
    forward_passes: 1
    """)


@pytest.fixture(scope="module")
def board_dir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three records on the tiny track: None and AT-RS of the tiny protocol, and an outside model."""
    tmp = tmp_path_factory.mktemp("leaderboard")
    track = tmp / "tiny_track.yaml"
    track.write_text(TINY_TRACK)
    entries = tmp / "entries"
    entries.mkdir()
    none = _entry(entries, "none", _meta("None") + f"model: {{protocol: {TINY_PROTOCOL}, defense: none}}\n"
                  "reported: {tiny: {clean: 50.0, RS: 10.0}}\n")
    at = _entry(entries, "at-rs", _meta("AT RS") + f"model: {{protocol: {TINY_PROTOCOL}, defense: at_rs}}\n")
    # the outside model: plugin + weights of a model built from its backbones (random weights suffice)
    user = tmp / "user"
    user.mkdir()
    (user / "arch.py").write_text(PLUGIN)
    from robench.registry import load_plugin_file

    load_plugin_file(user / "arch.py")
    from robench.models import TwoStreamModel
    from robench.registry import BACKBONES

    torch.manual_seed(0)
    model = TwoStreamModel({"rgb": BACKBONES.get("user_rgb")(), "skeleton": BACKBONES.get("user_skeleton")()}, 4)
    torch.save(model.state_dict(), user / "model.pt")
    outside = _entry(user, "user-model", _meta("User model") + textwrap.dedent("""\
    model:
      plugins: [arch.py]
      rgb: {backbone: user_rgb, channels: 6}
      skeleton: {backbone: user_skeleton, hidden: 16}
      weights: model.pt
    """))
    root = tmp / "board"
    common = ["--track", str(track), "--root", str(root), "--store", str(tmp / "store.sqlite"),
              "--cache", str(tmp / "cache"), "--progress", "quiet"]
    for entry in (none, at, outside):
        assert main(["leaderboard", "add", str(entry), *common]) == 0
    return {"root": root, "track": track, "store": tmp / "store.sqlite", "tmp": tmp, "common": common,  # type: ignore[dict-item]
            "outside": outside, "none": none}


# -- tracks ------------------------------------------------------------------------------------------

def test_bundled_tracks_load_and_their_versions_pin_their_content() -> None:
    """A track's digest may change only with its version: tests/data/track_versions.json pins them."""
    pinned = json.loads(VERSIONS.read_text())
    assert set(bundled_tracks()) == {"synthetic", "ntu60-xsub", "imigue", "synthetic-plausible",
                                     "synthetic-corruptions"}
    for name in bundled_tracks():
        track = load_track(name)
        if track.kind == "attacks":  # (the corruption track: tests/test_leaderboard_tracks.py)
            assert track.eps == pytest.approx(8 / 255) and track.rank_by == "RS"
            assert "aa" in track.data["attacks"] and track.data["attacks"]["aa"]["type"] == "autoattack"
        assert pinned[name][str(track.version)] == track.digest, (
            f"track {name} changed without a version bump: bump 'version' in its file and add the new digest "
            f"{track.digest} under it in {VERSIONS.name}")


# -- ranking -----------------------------------------------------------------------------------------

def test_mcnemar_exact_known_answers() -> None:
    ones, zeros = np.ones(10, bool), np.zeros(10, bool)
    assert mcnemar_exact(ones, ones) == (1.0, 0, 0)
    p, b, c = mcnemar_exact(ones[:5], zeros[:5])
    assert (b, c) == (5, 0) and p == pytest.approx(2 / 32)  # all five discordant one way: 2 * 0.5^5
    p, b, c = mcnemar_exact(np.array([1] * 9 + [0] * 2, bool), np.array([0] * 9 + [1, 0], bool))
    assert (b, c) == (9, 1) and p == pytest.approx(2 * (1 + 10) / 1024)
    with pytest.raises(ValueError, match="same clips"):
        mcnemar_exact(ones, ones[:3])


def test_rank_separates_only_what_the_paired_test_separates() -> None:
    n = 40
    strong = np.ones(n, bool)
    close = strong.copy()
    close[:2] = False  # 2 discordant clips: p = 0.5, a tie
    weak = np.zeros(n, bool)  # 38 discordant against close: p tiny, a new rank
    ranked = rank({"strong": 100.0, "close": 95.0, "weak": 0.0}, {"strong": strong, "close": close, "weak": weak})
    assert [(r.key, r.label) for r in ranked] == [("strong", "1="), ("close", "1="), ("weak", "3")]
    assert ranked[1].p_above == pytest.approx(0.5) and ranked[2].p_above is not None and ranked[2].p_above < 1e-9


# -- end to end --------------------------------------------------------------------------------------

def test_records_hold_the_stored_results_and_validate(board_dir: dict[str, Path]) -> None:
    root = board_dir["root"]
    files = sorted(p.name for p in (root / "tiny").glob("*.json"))
    assert files == ["at-rs.json", "none.json", "user-model.json"]
    store = ResultsStore(board_dir["store"])
    for name in files:
        record = read_record(root / "tiny" / name)
        res = record["results"]
        assert record["status"] == "verified" and record["provenance"]["precision"] == "fp32"
        assert record["track"]["clips"]["count"] == 12 and record["track"]["clips"]["digest"].startswith("sha256:")
        columns = columns_of(*bits_of(record)[:2])
        for col in ("clean", "R", "S", "RS"):
            assert res[col]["n"] == 12 and res[col]["interval"][0] <= res[col]["accuracy"] <= res[col]["interval"][1]
            assert int(columns[col].sum()) == res[col]["correct"]
        for scenario in ("R", "S", "RS"):  # the worst case is at most every attack alone, and at most clean
            assert res[scenario]["correct"] <= min(res["by_attack"][a][scenario]["correct"] for a in ("pgd", "aa"))
            assert res[scenario]["correct"] <= res["clean"]["correct"]
            members = res["autoattack"]
            assert set(members) == {"apgd-ce", "apgd-t", "fab-t", "square"}
            assert members["square"][scenario]["correct"] == res["by_attack"]["aa"][scenario]["correct"]
        assert res["worst"] == res["RS"]
        rel = res["reliance"]  # measured on the first batch; empty only for a model predicting one class there
        assert rel == {} or (set(rel) == {"rgb", "skeleton", "clips"} and 0 <= rel["rgb"] <= 1 and rel["clips"] == 12)
        # the accuracy with each input replaced, on every evaluated clip, follows from the bits the record holds
        assert set(res["replaced"]) == {"rgb", "skeleton"} and all(r["n"] == 12 for r in res["replaced"].values())
        edited = json.loads(json.dumps(record))
        edited["results"]["replaced"]["rgb"]["accuracy"] = 100.0 - edited["results"]["replaced"]["rgb"]["accuracy"] + 1
        with pytest.raises(RecordError, match=r"results\.replaced\.rgb"):
            check_numbers(edited, "edited")
        # the clean column is the stored clean cell, bit for bit
        cells = store.cells(record["provenance"]["cell_ids"])
        clean = [c for c in cells.values() if json.loads(c["spec"]).get("scenario") == "clean"]
        assert len(clean) == 1
        assert np.array_equal(unpack_bits(clean[0]["per_sample"], 12).astype(bool), bits_of(record)[0])
    none, at = read_record(root / "tiny" / "none.json"), read_record(root / "tiny" / "at-rs.json")
    assert none["results"]["ri"] == 0.0 and none["reported"] == {"clean": 50.0, "RS": 10.0}
    assert at["results"]["ri"] == pytest.approx((at["results"]["clean"]["accuracy"] + at["results"]["avg"])
                                               - (none["results"]["clean"]["accuracy"] + none["results"]["avg"]))


def test_an_outside_model_is_ranked_on_every_format(board_dir: dict[str, Path], tmp_path: Path) -> None:
    root = board_dir["root"]
    track = str(board_dir["track"])
    outputs = {}
    for fmt in ("html", "markdown", "latex", "csv", "bibtex"):
        out = tmp_path / f"board.{fmt}"
        assert main(["leaderboard", "render", "--format", fmt, "--track", track, "--root", str(root),
                     "--out", str(out)]) == 0
        outputs[fmt] = out.read_text()
    for fmt, text in outputs.items():
        assert "User model" in text and "AT RS" in text, fmt
    lines = [line for line in outputs["csv"].splitlines()[1:] if line]
    assert len(lines) == 3 and {line.split(",")[1] for line in lines} == {"none", "at-rs", "user-model"}
    assert outputs["html"].count('<tr data-id="') == 3 and "McNemar" in outputs["html"]
    assert "@misc{usermodel," in outputs["bibtex"]


def _forged(record: dict[str, Any], attack: str, scenario: str) -> dict[str, Any]:
    """``record`` with one clip more robust under ``attack`` on ``scenario`` than measured, every number recomputed
    from the changed bits and the record sealed again: a forgery made with robench's own code."""
    from robench.leaderboard.record import digest_of_bits

    clean, attacks, members = bits_of(record)
    fooled = np.flatnonzero(clean & ~attacks[attack][scenario])
    assert fooled.size, "the attack fooled no clean-correct clip: nothing to forge"
    attacks[attack][scenario][fooled[0]] = True
    for per in members.get(attack, {}).values():  # an ensemble's members: the clip survives every one
        per[scenario][fooled[0]] = True
    labels = {a: v["label"] for a, v in record["results"]["by_attack"].items()}
    out = {**record, "results": {**results_from_bits(clean, attacks, members, record["track"]["rank_by"], labels),
                                 "ri": record["results"]["ri"]},
           "per_sample": per_sample_of(clean, attacks, members),
           "per_sample_digest": digest_of_bits(clean, attacks, float(record["track"]["eps"]))}
    return out


def test_verify_recomputes_the_per_clip_results_and_trusts_no_stored_digest(board_dir: dict[str, Path]) -> None:
    """A fresh store, the same cache: the attacks run again and give the same bits, and the record says it was
    verified; a hand-edited record is refused before any work; a consistent forgery (numbers recomputed and the
    record sealed again) is caught by re-evaluating it, cell by cell."""
    record = board_dir["root"] / "tiny" / "at-rs.json"
    common = board_dir["common"][2:]  # type: ignore[index]
    track = ["--track", str(board_dir["track"])]
    copy = board_dir["tmp"] / "copy" / "tiny" / "at-rs.json"
    copy.parent.mkdir(parents=True)
    data = json.loads(record.read_text())
    data["entry"]["source"] = str((board_dir["root"] / data["entry"]["source"]).resolve())
    write_record(copy, data)
    assert main(["leaderboard", "verify", str(copy), *track, *common]) == 0
    assert read_record(copy)["verification"]["robench"]
    edited = json.loads(copy.read_text())
    edited["results"]["RS"]["accuracy"] = 99.0
    copy.write_text(json.dumps(edited))
    assert main(["leaderboard", "verify", str(copy), *track, *common]) == 2  # refused: the seal
    write_record(copy, _forged(read_record(record) | {"entry": data["entry"]}, "pgd", "RS"))
    assert read_record(copy)  # self-consistent and sealed
    assert main(["leaderboard", "verify", str(copy), *track, *common]) == 1


def _browser_paths() -> tuple[str | None, str | None]:
    return (shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome"),
            shutil.which("chromedriver"))


def test_html_page_sorts_and_filters_in_a_real_browser(board_dir: dict[str, Path], tmp_path: Path) -> None:
    chrome, driver = _browser_paths()
    if not (chrome and driver):
        if os.environ.get("ROBENCH_REQUIRE_BROWSER"):
            pytest.fail("ROBENCH_REQUIRE_BROWSER is set but chromium/chromedriver are not installed")
        pytest.skip("chromium and chromedriver are not installed (CI installs them: see .ci/run)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    page = tmp_path / "index.html"
    assert main(["leaderboard", "render", "--format", "html", "--track", str(board_dir["track"]),
                 "--root", str(board_dir["root"]), "--out", str(page)]) == 0
    records = {p.stem: read_record(p) for p in (board_dir["root"] / "tiny").glob("*.json")}
    options = webdriver.ChromeOptions()
    options.binary_location = chrome
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 f"--user-data-dir={tmp_path / 'chrome-profile'}", "--window-size=1400,1000"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(driver), options=options)
    try:
        browser.get(page.resolve().as_uri())

        def visible_ids() -> list[str]:
            return [r.get_attribute("data-id") for r in browser.find_elements(By.CSS_SELECTOR, "#board tbody tr")
                    if r.is_displayed()]

        assert sorted(visible_ids()) == sorted(records)
        clean_header = browser.find_element(By.CSS_SELECTOR, 'th[data-col="clean"]')
        clean_header.click()  # ascending
        by_clean = sorted(records, key=lambda k: (records[k]["results"]["clean"]["accuracy"]))
        got = visible_ids()
        assert [records[k]["results"]["clean"]["accuracy"] for k in got] == \
            [records[k]["results"]["clean"]["accuracy"] for k in by_clean]
        clean_header.click()  # descending
        assert [records[k]["results"]["clean"]["accuracy"] for k in visible_ids()] == \
            sorted((r["results"]["clean"]["accuracy"] for r in records.values()), reverse=True)
        box = browser.find_element(By.ID, "filter")
        box.send_keys("user")
        assert visible_ids() == ["user-model"]
        box.clear()
        box.send_keys("a")  # "AT RS" and every author "Test Author": all rows, in the current order
        assert len(visible_ids()) == 3
    finally:
        browser.quit()


# -- bad entries ---------------------------------------------------------------------------------------

class _RunsCode:
    """Unpickling this runs os.system: robench must refuse the file without running it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", ["missing_name", "authors_not_a_list", "forward_passes_string", "unknown_key",
                                  "weights_wrong_architecture", "weights_pickle_runs_code", "unknown_track",
                                  "unknown_defense_row", "reported_out_of_range"])
def test_bad_entries_get_one_clear_error_and_leave_the_board_unchanged(
        case: str, board_dir: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = board_dir["root"]
    before = _snapshot(root)
    folder = tmp_path / "bad"
    folder.mkdir()
    shutil.copy(board_dir["outside"].parent / "model.pt", folder / "model.pt")
    entry = folder / "user-model.yaml"  # the same plugin file (its backbones are registered once per process)
    text = board_dir["outside"].read_text().replace("plugins: [arch.py]",
                                                    f"plugins: [{board_dir['outside'].parent / 'arch.py'}]")
    entry.write_text(text)
    track = str(board_dir["track"])
    expect: tuple[str, ...]
    if case == "missing_name":
        entry.write_text(text.replace("name: User model\n", ""))
        expect = ("key 'name'", "(missing)")
    elif case == "authors_not_a_list":
        entry.write_text(text.replace("authors: [Test Author]", "authors: Test Author"))
        expect = ("key 'authors'", "a list")
    elif case == "forward_passes_string":
        entry.write_text(text.replace("forward_passes: 1", "forward_passes: one"))
        expect = ("key 'forward_passes'", "an integer")
    elif case == "unknown_key":
        entry.write_text(text + "colour: blue\n")
        expect = ("key 'colour'", "(unknown key)")
    elif case == "weights_wrong_architecture":
        entry.write_text(text.replace("channels: 6", "channels: 5"))
        expect = ("do not match the model's architecture", "other shapes")
    elif case == "weights_pickle_runs_code":
        torch.save({"state_dict": {"w": _RunsCode(folder / "PWNED")}}, folder / "model.pt")
        expect = ("cannot read checkpoint", "never pickled code")
    elif case == "unknown_track":
        track = "ntu61"
        expect = ("unknown track 'ntu61'", "synthetic")
    elif case == "unknown_defense_row":
        entry.write_text(board_dir["none"].read_text().replace("defense: none}", "defense: at_x}"))
        expect = ("key 'model.defense'", "at_x", "none, at_rs")
    else:
        entry.write_text(text + "reported: {tiny: {clean: 140}}\n")
        expect = ("key 'reported.tiny.clean'", "0..100")
    capsys.readouterr()
    code = main(["leaderboard", "add", str(entry), *[a if a != str(board_dir["track"]) else track
                                                      for a in board_dir["common"]]])  # type: ignore[union-attr]
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and err.count("robench: error:") == 1, err
    for e in expect:
        assert e in err, f"{e!r} not in {err}"
    assert not (folder / "PWNED").exists()
    assert _snapshot(root) == before
