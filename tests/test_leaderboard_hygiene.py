"""Leaderboard hygiene, as an outside submitter meets it: a model whose outputs are NaN, a flagged entry, hostile
strings, a bug in a plugin's model code, and a leaderboard folder that moves (issue: board hygiene).

Every case is one clear line with exit status 2 (or a page that does the right thing), on the tiny track: one
honest record is evaluated once (seconds), every other record is derived from it.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import TINY_TRACK, tiny_entry
from robench.cli import main
from robench.leaderboard.evaluate import NonFiniteOutputs, check_finite
from robench.leaderboard.record import (
    bits_of,
    digest_of_bits,
    per_sample_of,
    read_record,
    results_from_bits,
    write_record,
)
from robench.leaderboard.render import NOT_RANKED, board, render
from robench.leaderboard.tracks import load_track


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``work/entries/entry.yaml`` (the untrained tiny model, outside the leaderboard folder) evaluated into
    ``work/board/tiny/honest.json``; ``work/cache`` holds the track's data for the other tests."""
    work = tmp_path_factory.mktemp("hygiene")
    (work / "entries").mkdir()
    tiny_entry(work / "entries", "Honest", entry_id="honest")
    assert main(["leaderboard", "add", str(work / "entries" / "entry.yaml"), *_where(work)]) == 0
    yield work


def _where(work: Path, root: str = "board") -> list[str]:
    return ["--track", str(TINY_TRACK), "--root", str(work / root), "--store", str(work / "store.sqlite"),
            "--cache", str(work / "cache"), "--progress", "quiet"]


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("robench: error:") == 1, err
    return " ".join(err.split())  # (rich wraps long lines)


# -- 1. outputs that are not finite ----------------------------------------------------------------------

def test_a_nan_model_stops_the_evaluation_with_one_clear_error(work: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    tiny_entry(tmp_path, "NaN model", entry_id="nan-model")
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    torch.save({k: v * float("nan") if v.is_floating_point() else v for k, v in state.items()}, tmp_path / "model.pt")
    capsys.readouterr()
    code = main(["leaderboard", "add", str(tmp_path / "entry.yaml"), *_where(work)])
    err = _error(capsys)
    assert code == 2, err
    for said in ("entry nan-model (NaN model)", "NaN for 12 of the 12 clips", "classified without gradients", "finite"):
        assert said in err, (said, err)
    assert not (work / "board" / "tiny" / "nan-model.json").exists()


def test_non_finite_outputs_are_checked_where_the_evaluation_classifies() -> None:
    from robench.leaderboard.entry import Entry, ObjectModel
    from robench.models.provided import ProvidedModel

    entry = Entry(id="m", name="M", authors=("A",), architecture="a", defense="d", path=Path("m.py"),
                  model=ObjectModel(ProvidedModel(torch.nn.Identity(), ("rgb",))))
    logits = torch.zeros(4, 3)
    logits[1, 0], logits[3, 2] = float("inf"), float("-inf")
    with torch.no_grad(), pytest.raises(NonFiniteOutputs, match=r"entry m \(M\): .* inf for 2 of the 4 clips"):
        check_finite(entry, logits)
    check_finite(entry, logits.requires_grad_())  # an attack's gradient step: classified (and checked) later
    with torch.no_grad():
        check_finite(entry, torch.zeros(4, 3))


# -- 2. flagged entries are never ranked ----------------------------------------------------------------

def _derived(record: dict[str, Any], entry_id: str, name: str, flags: list[dict[str, Any]],
             perfect: bool = False) -> dict[str, Any]:
    """``record`` as another entry's: its id and name, ``flags``, and (``perfect``) every clip robust to everything."""
    clean, attacks, members = bits_of(record)
    if perfect:
        clean = np.ones_like(clean)
        attacks = {a: {s: np.ones_like(b) for s, b in per.items()} for a, per in attacks.items()}
        members = {a: {m: {s: np.ones_like(b) for s, b in per.items()} for m, per in st.items()}
                   for a, st in members.items()}
    labels = {a: v["label"] for a, v in record["results"]["by_attack"].items()}
    results = results_from_bits(clean, attacks, members, record["track"]["rank_by"], labels)
    return {**record, "entry": {**record["entry"], "id": entry_id, "name": name}, "flags": flags,
            "results": {**results, "ri": None, "reliance": record["results"]["reliance"]},
            "per_sample": per_sample_of(clean, attacks, members),
            "per_sample_digest": digest_of_bits(clean, attacks, float(record["track"]["eps"]))}


def test_a_flagged_entry_is_never_ranked_with_or_above_a_reliable_one(work: Path, tmp_path: Path) -> None:
    root = tmp_path / "board"
    shutil.copytree(work / "board", root)
    honest = read_record(root / "tiny" / "honest.json")
    random_forward = {"code": "random-forward", "message": "two forward passes of the same clips gave different "
                      "outputs"}
    flags = [{**random_forward, "cell": "c1", "where": "PGD-2 on XR"},
             {**random_forward, "cell": "c2", "where": "AutoAttack on XRS"},
             {"code": "probability-outputs", "message": "every output row is in [0, 1] and sums to 1", "cell": "c1",
              "where": "PGD-2 on XR"}]
    write_record(root / "tiny" / "perfect.json", _derived(honest, "perfect", "Perfect but flagged", flags, True))
    ignores = [{"code": "ignores-input", "message": "replacing the rgb input of 12 clips changed no prediction",
                "cell": "c1"}]
    write_record(root / "tiny" / "mono.json", _derived(honest, "mono", "Ignores RGB", ignores))
    b = board(load_track(TINY_TRACK), root / "tiny")
    order = [(r.entry["id"], r.ranked.label if r.ranked else None) for r in b.rows]
    # the flagged entry is perfect, and still below every ranked one, with no rank; an informative flag is ranked
    assert order == [("honest", "1="), ("mono", "1="), ("perfect", None)], order
    md = render(b, "markdown")
    lines = md.splitlines()
    row = next(i for i, line in enumerate(lines) if "Perfect but flagged" in line)
    assert lines[row].startswith(f"| *{NOT_RANKED}* |") and row > max(
        i for i, line in enumerate(lines) if line.startswith("| 1= |"))
    # one line per flag code, with the cells it concerns, not one per cell
    assert md.count("random-forward (PGD-2 on XR, AutoAttack on XRS): two forward passes") == 1, md
    assert md.count("⚠ Perfect but flagged: random-forward") == 1
    assert "⚠ Perfect but flagged: probability-outputs (PGD-2 on XR)" in md
    assert "Not ranked: flagged: Perfect but flagged (random-forward, probability-outputs)" in md
    csv_rows = {line.split(",")[1]: line.split(",")[0] for line in render(b, "csv").splitlines()[1:]}
    assert csv_rows == {"honest": "1=", "mono": "1=", "perfect": NOT_RANKED}
    page = render(b, "html")
    assert page.index('data-id="mono"') < page.index('data-id="perfect"')
    assert f'data-sort="9998">{NOT_RANKED}</td>' in page and page.count('class="flag"') == 3


# -- 3. hostile strings ------------------------------------------------------------------------------------

def test_hostile_strings_are_escaped_in_markdown_and_html(work: Path, tmp_path: Path) -> None:
    root = tmp_path / "board"
    shutil.copytree(work / "board", root)
    record = read_record(root / "tiny" / "honest.json")
    record["entry"].update(name="<script>alert(1)</script> | x", authors=["<b>A</b>"],
                           paper="https://example.org/a)[click](javascript:alert(2)", defense="=HYPERLINK(1)",
                           footnote="</td><script>alert(3)</script>")
    record["reported"] = {"<script>": 1.0}
    write_record(root / "tiny" / "honest.json", record)
    track = tmp_path / "track.yaml"  # a track file of one's own: title and description are prose (not in its digest)
    track.write_text(TINY_TRACK.read_text().replace("title: Tiny", "title: <script>alert(4)</script> Tiny"))
    pages = {}
    for fmt in ("markdown", "html", "csv"):
        out = tmp_path / f"board.{fmt}"
        assert main(["leaderboard", "render", "--format", fmt, "--track", str(track), "--root", str(root),
                     "--out", str(out)]) == 0
        pages[fmt] = out.read_text()
    md, page = pages["markdown"], pages["html"]
    for text in (md, page):
        assert "<script>alert" not in text and "<b>" not in text and "</td><script>" not in text
        assert "&lt;script&gt;alert(1)" in text and "&lt;script&gt;alert(4)" in text
    assert "](javascript:" not in md and "%29%5Bclick%5D%28javascript:alert%282" in md  # the link stays one link
    assert "&lt;script&gt;alert(1)&lt;/script&gt; \\| x" in md  # the table's pipe escaped
    assert 'href="javascript:' not in page
    assert ",'=HYPERLINK(1)," in pages["csv"]  # no formula for a spreadsheet


# -- 4. a bug in a plugin's model code ---------------------------------------------------------------------

PLUGIN = '''
import torch
from torch import nn

import robench
from robench.models import Backbone


@robench.register_backbone("{prefix}_rgb")
class RGB(Backbone):
    modality = "rgb"

    def __init__(self) -> None:
        super().__init__()
        self.stages["conv"] = nn.Sequential(nn.Conv3d(3, 4, 3, stride=2, padding=1), nn.ReLU())
        self.feature_dim, self.feature_stages = 4, ("conv",)

    def pool(self, x):
        return x.mean(dim=(2, 3, 4))

    def head(self, x):
        return self.pool(x)

    def example_input(self, batch=1):
        return torch.zeros(batch, 3, 8, 32, 32)


@robench.register_backbone("{prefix}_skeleton")
class Skeleton(Backbone):
    modality = "skeleton"

    def __init__(self) -> None:
        super().__init__()
        self.stages["mlp"] = nn.Sequential(nn.Linear(75, 8), nn.ReLU())
        self.feature_dim, self.feature_stages = 8, ("mlp",)

    def preprocess(self, x):
        return x.permute(0, 4, 2, 1, 3).flatten(3)

    def pool(self, x):
        if x.shape[0] > 1:  # real batches only (not the one-clip shape probe)
            {bug}
        return x.mean(dim=(1, 2))

    def head(self, x):
        return self.pool(x)

    def example_input(self, batch=1):
        return torch.zeros(batch, 3, 16, 25, 2)
'''

BUGS = {"name-error": ("x = torhc.relu(x)", "NameError: name 'torhc' is not defined"),
        "shape-error": ("x = x.reshape(x.shape[0], 7, -1)", "RuntimeError: shape '[")}


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_a_bug_in_a_plugins_model_code_is_one_line_naming_file_and_line(
        bug: str, work: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from robench.models import TwoStreamModel
    from robench.registry import BACKBONES, load_plugin_file

    prefix = f"hygiene_{bug.replace('-', '_')}"
    healthy = tmp_path / "healthy.py"  # the same architecture without the bug: the weights the submitter saved
    healthy.write_text(PLUGIN.replace("{prefix}", f"{prefix}_ok").replace("{bug}", "pass"))
    load_plugin_file(healthy)
    torch.manual_seed(0)
    model = TwoStreamModel({m: BACKBONES.get(f"{prefix}_ok_{m}")() for m in ("rgb", "skeleton")}, 4)
    torch.save(model.state_dict(), tmp_path / "model.pt")
    text = PLUGIN.replace("{prefix}", prefix).replace("{bug}", BUGS[bug][0])
    plugin = _buggy_entry(tmp_path, prefix, text)
    line = next(i for i, s in enumerate(text.splitlines(), start=1) if BUGS[bug][0] in s)
    capsys.readouterr()
    code = main(["leaderboard", "add", str(tmp_path / "entry.yaml"), *_where(work)])
    err = _error(capsys)
    assert code == 2, err
    for said in ("entry buggy: its model code raised", BUGS[bug][1], f"{plugin.resolve()}:{line} (in pool)",
                 BUGS[bug][0]):
        assert said in err, (said, err)
    assert not (work / "board" / "tiny" / "buggy.json").exists()


def test_a_plugin_that_fails_to_import_names_its_line(work: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    text = PLUGIN.replace("{prefix}", "hygiene_import").replace("{bug}", "pass") + "\ntorhc.manual_seed(0)\n"
    plugin = _buggy_entry(tmp_path, "hygiene_import", text)
    torch.save({}, tmp_path / "model.pt")
    capsys.readouterr()
    assert main(["leaderboard", "add", str(tmp_path / "entry.yaml"), *_where(work)]) == 2
    err = _error(capsys)
    assert "failed to import: NameError" in err and f"{plugin.resolve()}:{len(text.splitlines())} (in <module>)" in err


def _buggy_entry(folder: Path, prefix: str, plugin_text: str) -> Path:
    """``folder/entry.yaml`` of an outside model with the plugin ``folder/arch.py`` (returned) and ``model.pt``."""
    plugin = folder / "arch.py"
    plugin.write_text(plugin_text)
    (folder / "entry.yaml").write_text(textwrap.dedent(f"""\
        schema: 1
        id: buggy
        name: Buggy
        authors: [A. Author]
        architecture: 3D CNN + MLP
        defense: none
        model: {{plugins: [arch.py], rgb: {{backbone: {prefix}_rgb}}, skeleton: {{backbone: {prefix}_skeleton}},
                weights: model.pt}}
        """))
    return plugin


# -- 5. portable records -------------------------------------------------------------------------------------

def test_a_record_verifies_after_the_leaderboard_folder_moves(work: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    text = (work / "board" / "tiny" / "honest.json").read_text()
    record = json.loads(text)
    assert record["entry"]["source"] == "../entries/entry.yaml"  # relative to the leaderboard folder
    assert str(work) not in text and str(work.resolve()) not in text  # no path of this machine
    assert record["provenance"]["files"]["weights"].startswith("sha256:")  # the weights named by content
    moved = tmp_path / "elsewhere"
    for name in ("board", "entries"):
        shutil.copytree(work / name, moved / name)
    aside = work.with_name(work.name + "-aside")
    work.rename(aside)  # nothing of the old place is left to find
    try:
        capsys.readouterr()
        copy = moved / "board" / "tiny" / "honest.json"
        where = ["--track", str(TINY_TRACK), "--store", str(tmp_path / "s.sqlite"), "--cache",
                 str(aside / "cache"), "--progress", "quiet"]
        assert main(["leaderboard", "verify", str(copy), *where]) == 0, capsys.readouterr().err
        assert read_record(copy)["verification"]["robench"]
        # weights that are not the ones evaluated: named, and nothing is evaluated
        torch.save({k: v + 1 for k, v in torch.load(moved / "entries" / "model.pt").items()},
                   moved / "entries" / "model.pt")
        capsys.readouterr()
        assert main(["leaderboard", "verify", str(copy), "--no-stamp", *where]) == 1
        assert "weights: sha256:" in " ".join(capsys.readouterr().out.split())
        # a record of an older robench naming its entry by an absolute path that is not there: one clear line
        old = read_record(copy)
        old["entry"]["source"] = str(work / "entries" / "entry.yaml")
        write_record(copy, old)
        capsys.readouterr()
        assert main(["leaderboard", "verify", str(copy), *where]) == 2
        assert "names its entry by the absolute path" in _error(capsys)
    finally:
        aside.rename(work)
