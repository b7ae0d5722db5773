"""Transfer between entries (``robench leaderboard transfer``): each entry's model is attacked with the track's PGD
and every entry's model classifies the adversarial clips; the matrix is stored next to the records and shown on the
board. One tiny board (seconds): the challenge tests' weak track (a one-step PGD) and two entries fitted from two
seeds, on the RS scenario only."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import robench
from robench.cli import main
from robench.leaderboard.record import bits_of, encode_bits, read_record
from robench.leaderboard.tracks import load_track
from robench.leaderboard.transfer import (
    HEADING,
    TRANSFER_FILE,
    TransferError,
    accuracy,
    bits,
    digest_of,
    read_transfer,
    transfer_min,
)

WEAK_TRACK = """\
name: weak
title: A track with a weak attack (tests)
version: 1
description: the tiny protocol's data with a one-step PGD of 1/255, which most clips survive
dataset: {name: synthetic, classes: 4, train_clips_per_class: 6, test_clips_per_class: 3, frames_rgb: 8,
          frames_skeleton: 16, resolution: 32, train_performers: 3, test_performers: 2}
evaluation: {split: test, max_samples: null, batch_size: 16, seed: 0}
clips: {count: 12, digest: null}
threat: {rgb: {scale: 1.0, bounds: [0, 1]}, skeleton: {scale: 1.0, bounds: null}}
eps: 8/255
scenarios: [clean, R, S, RS]
attacks:
  pgd: {type: pgd, label: PGD-2, steps: 2, step_size: 4/255, random_start: true}
rank_by: RS
"""
BACKBONES = {"rgb": {"backbone": "i3d", "width": 0.0625, "bn_momentum": 0.1},
             "skeleton": {"backbone": "hcn", "width": 0.125, "window": 16, "dropout": 0.0}}


def _where(work: Path) -> list[str]:
    return ["--cache", str(work / "cache"), "--progress", "quiet", "--root", str(work / "board")]


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The weak track, two entries (``alpha``, ``beta``: models fitted from two seeds), their records, the board's
    Markdown and HTML pages, then the transfer on RS."""
    work = tmp_path_factory.mktemp("transfer")
    track = work / "weak.yaml"
    track.write_text(WEAK_TRACK)
    clips = robench.dataset(track, split="test", cache=work / "cache" / "data")
    inputs, labels = next(clips.batches(12))
    for seed, entry_id in enumerate(("alpha", "beta")):
        torch.manual_seed(seed)
        model = robench.build_model(track, **BACKBONES)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        model.train()
        for _ in range(30):
            loss = torch.nn.functional.cross_entropy(model(inputs), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        folder = work / "entries" / entry_id
        folder.mkdir(parents=True)
        torch.save(model.state_dict(), folder / "model.pt")
        (folder / "entry.yaml").write_text(textwrap.dedent(f"""\
            schema: 1
            id: {entry_id}
            name: Model {entry_id}
            authors: [A. Author]
            architecture: I3D + HCN
            defense: none
            model: {{rgb: {json.dumps(BACKBONES['rgb'])}, skeleton: {json.dumps(BACKBONES['skeleton'])},
                     weights: model.pt}}
            """))
        assert main(["leaderboard", "add", str(folder / "entry.yaml"), "--track", str(track), "--store",
                     str(work / "store.sqlite"), *_where(work)]) == 0
    root = work / "board"
    for fmt in ("markdown", "html"):
        assert main(["leaderboard", "render", "--format", fmt, "--track", str(track), "--root", str(root)]) == 0
    folder = root / "weak"
    before = {name: (folder / name).read_text() for name in ("README.md", "index.html")}
    assert main(["leaderboard", "transfer", "--track", str(track), "--scenario", "RS", *_where(work)]) == 0
    return {"work": work, "track": track, "folder": folder, "before": before}


def test_diagonal_is_the_white_box_pgd(board: dict[str, Any]) -> None:
    data = read_transfer(board["folder"] / TRANSFER_FILE, load_track(board["track"]))
    assert data["scenarios"] == ["RS"] and sorted(data["models"]) == ["alpha", "beta"]
    matrix = bits(data, "RS")
    for entry_id in ("alpha", "beta"):
        record = read_record(board["folder"] / f"{entry_id}.json")
        clean, attacks, _ = bits_of(record)
        # the record's PGD cell: a clip counts when it is right clean and after the attack
        assert np.array_equal(matrix[entry_id][entry_id] & clean, attacks["pgd"]["RS"])
    acc = accuracy(data, "RS")
    low = transfer_min(data, "RS")
    assert low["alpha"] == (acc["beta"]["alpha"], "beta") and low["beta"] == (acc["alpha"]["beta"], "alpha")


def test_round_trip_and_tampering(board: dict[str, Any], tmp_path: Path) -> None:
    path = board["folder"] / TRANSFER_FILE
    data = read_transfer(path)
    assert data["digest"] == digest_of(data)
    edited = json.loads(path.read_text())
    flipped = ~bits(data, "RS")["alpha"]["beta"]  # every clip's result turned round: a better transfer accuracy
    edited["cells"]["RS"]["alpha"]["beta"] = encode_bits(flipped)
    bad = tmp_path / TRANSFER_FILE
    bad.write_text(json.dumps(edited))
    with pytest.raises(TransferError, match="digest"):
        read_transfer(bad)
    edited["cells"]["RS"]["alpha"]["beta"] = "!!"  # a consistent digest, but not bits
    edited["digest"] = digest_of(edited)
    bad.write_text(json.dumps(edited))
    with pytest.raises(TransferError, match=r"cells\.RS\.alpha\.beta"):
        read_transfer(bad)
    bad.write_text("[1, 2")
    with pytest.raises(TransferError, match="not readable JSON"):
        read_transfer(bad)
    other = load_track("synthetic")
    with pytest.raises(TransferError, match="made for track weak"):
        read_transfer(path, other)


def test_pages_gain_the_section(board: dict[str, Any]) -> None:
    folder = board["folder"]
    md, page = (folder / "README.md").read_text(), (folder / "index.html").read_text()
    old_md, old_page = board["before"]["README.md"], board["before"]["index.html"]
    assert HEADING not in old_md and HEADING not in old_page
    assert md.startswith(old_md) and HEADING in md[len(old_md):] and "Transfer (min)" in md
    assert "transfer.png" in md and (folder / "transfer.png").read_bytes()[:4] == b"\x89PNG"
    cut = old_page.rfind("</body>")
    assert page.startswith(old_page[:cut]) and page.endswith(old_page[cut:]) and HEADING in page
    # the board itself still reads only the records (the artefact is not one)
    assert main(["leaderboard", "render", "--format", "csv", "--track", str(board["track"]), "--root",
                 str(folder.parent)]) == 0
