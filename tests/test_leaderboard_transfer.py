"""Transfer between entries (``robench leaderboard transfer``): each entry's model is attacked with the track's PGD
and every entry's model classifies the adversarial clips; the matrix is stored next to the records and shown on the
board. One tiny board (seconds): the challenge tests' weak track (here a two-step PGD and APGD-CE) and two entries
fitted from two seeds, on the RS scenario only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import robench
from conftest import WEAK_BACKBONES, fit, weak_entry, weak_track
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

ATTACKS = """\
  pgd: {type: pgd, label: PGD-2, steps: 2, step_size: 4/255, random_start: true}
  aa: {type: autoattack, label: AA, version: standard, members: [apgd-ce], steps: 2}"""


def _where(work: Path) -> list[str]:
    return ["--cache", str(work / "cache"), "--progress", "quiet", "--root", str(work / "board")]


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The weak track, two entries (``alpha``, ``beta``: models fitted from two seeds), their records, the board's
    Markdown and HTML pages, then the transfer on RS."""
    work = tmp_path_factory.mktemp("transfer")
    track = weak_track(work, ATTACKS)
    clips = robench.dataset(track, split="test", cache=work / "cache" / "data")
    inputs, labels = next(clips.batches(12))
    for seed, entry_id in enumerate(("alpha", "beta")):
        torch.manual_seed(seed)
        model = fit(robench.build_model(track, **WEAK_BACKBONES), inputs, labels, 30)
        entry = weak_entry(work / "entries" / entry_id, entry_id, model)
        assert main(["leaderboard", "add", str(entry), "--track", str(track), "--store", str(work / "store.sqlite"),
                     *_where(work)]) == 0
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
    # the track's PGD, and AutoAttack's APGD-CE at the track's size
    assert sorted(data["attacks"]) == ["apgd-ce", "pgd"] and data["attacks"]["apgd-ce"]["label"] == "APGD-CE (2 steps)"
    pgd, apgd, both = bits(data, "RS", "pgd"), bits(data, "RS", "apgd-ce"), bits(data, "RS")
    for entry_id in ("alpha", "beta"):
        record = read_record(board["folder"] / f"{entry_id}.json")
        clean, attacks, members = bits_of(record)
        # the record's PGD cell and AutoAttack's first member: a clip counts when it is right clean and after the
        # attack
        assert np.array_equal(pgd[entry_id][entry_id] & clean, attacks["pgd"]["RS"])
        assert np.array_equal(apgd[entry_id][entry_id] & clean, members["aa"]["apgd-ce"]["RS"])
        for other in ("alpha", "beta"):  # a clip survives a source when it survives both attacks' clips
            assert np.array_equal(both[entry_id][other], pgd[entry_id][other] & apgd[entry_id][other])
    acc = accuracy(data, "RS")
    low = transfer_min(data, "RS")
    assert low["alpha"] == (acc["beta"]["alpha"], "beta") and low["beta"] == (acc["alpha"]["beta"], "alpha")


def test_round_trip_and_tampering(board: dict[str, Any], tmp_path: Path) -> None:
    path = board["folder"] / TRANSFER_FILE
    data = read_transfer(path)
    assert data["digest"] == digest_of(data)
    edited = json.loads(path.read_text())
    flipped = ~bits(data, "RS", "pgd")["alpha"]["beta"]  # every clip's result turned round
    edited["cells"]["pgd"]["RS"]["alpha"]["beta"] = encode_bits(flipped)
    bad = tmp_path / TRANSFER_FILE
    bad.write_text(json.dumps(edited))
    with pytest.raises(TransferError, match="digest"):
        read_transfer(bad)
    edited["cells"]["pgd"]["RS"]["alpha"]["beta"] = "!!"  # a consistent digest, but not bits
    edited["digest"] = digest_of(edited)
    bad.write_text(json.dumps(edited))
    with pytest.raises(TransferError, match=r"cells\.pgd\.RS\.alpha\.beta"):
        read_transfer(bad)
    del edited["attacks"]["pgd"]["eps"]  # a consistent digest, but an attack without its identity
    edited["cells"]["pgd"]["RS"]["alpha"]["beta"] = encode_bits(flipped)
    edited["digest"] = digest_of(edited)
    bad.write_text(json.dumps(edited))
    with pytest.raises(TransferError, match="key 'attacks'"):
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
    assert HEADING in md and "Transfer (min)" in md and "| Transfer |" not in old_md
    assert "transfer.png" in md and (folder / "transfer.png").read_bytes()[:4] == b"\x89PNG"
    # the table gains a Transfer column: each entry's lowest accuracy under the other's adversarial clips
    data = read_transfer(folder / TRANSFER_FILE)
    low = transfer_min(data, "RS")
    header = next(line for line in md.splitlines() if line.startswith("| Rank |"))
    col = header.split(" | ").index("Transfer")
    for entry_id in ("alpha", "beta"):
        line = next(line for line in md.splitlines() if line.startswith("| ") and f"Model {entry_id}" in line)
        assert line.split(" | ")[col] == f"{low[entry_id][0]:.2f}"  # type: ignore[index]
    assert HEADING in page and HEADING not in old_page and 'data-col="transfer"' in page
    # the board itself still reads only the records (the artefact is not one)
    assert main(["leaderboard", "render", "--format", "csv", "--track", str(board["track"]), "--root",
                 str(folder.parent)]) == 0


def _edited_copy(board: dict[str, Any], tmp_path: Path, edit: Any) -> Path:
    """A copy of the board's folder whose transfer artefact ``edit`` changed (then digested again, as a real run
    would write it); returns the copy's folder."""
    import shutil

    folder = tmp_path / "weak"
    shutil.copytree(board["folder"], folder)
    data = json.loads((folder / TRANSFER_FILE).read_text())
    edit(data)
    data["digest"] = digest_of(data)
    (folder / TRANSFER_FILE).write_text(json.dumps(data))
    return folder


def test_transfer_lowers_the_worst_case_by_the_clips_other_entries_fool(board: dict[str, Any], tmp_path: Path) -> None:
    from robench.leaderboard.record import challenged_columns
    from robench.leaderboard.render import board as make_board
    from robench.leaderboard.render import markdown

    track = load_track(board["track"])
    alpha = read_record(board["folder"] / "alpha.json")
    robust = challenged_columns(alpha)["RS"]
    assert robust.any(), "the weak track leaves alpha some robust clips"
    # beta's adversarial clips now fool alpha on every clip but the first robust one: a known answer
    keep = int(np.flatnonzero(robust)[0])
    fooled = np.zeros(robust.size, bool)
    fooled[keep] = True

    def edit(data: dict[str, Any]) -> None:
        for attack in data["cells"]:
            data["cells"][attack]["RS"]["beta"]["alpha"] = encode_bits(fooled)

    folder = _edited_copy(board, tmp_path, edit)
    b = make_board(track, folder)
    row = next(r for r in b.rows if r.entry["id"] == "alpha")
    before, after = 100 * robust.mean(), 100 / robust.size
    low = row.transfer["RS"]
    assert (low.before, low.after) == (pytest.approx(before), pytest.approx(after))
    assert low.broken == [int(i) for i in np.flatnonzero(robust) if i != keep] and low.sources == {
        "Model beta": int(robust.sum()) - 1}
    res = row.record["results"]
    assert res["RS"]["accuracy"] == pytest.approx(after) and res["worst"]["accuracy"] == pytest.approx(after)
    assert res["avg"] == pytest.approx((res["R"]["accuracy"] + res["S"]["accuracy"] + after) / 3)
    assert row.ranked is not None and row.ranked.score == pytest.approx(after)
    md = markdown(b)
    assert f"{before:.2f} → {after:.2f}" in md
    assert f"Model alpha: XRS {before:.2f} → {after:.2f}, lowered by {int(robust.sum()) - 1} clip" in md
    # the record on disk is the entry's own evaluation, untouched
    assert read_record(folder / "alpha.json")["results"]["RS"]["accuracy"] == pytest.approx(before)
    # a transfer that fools nothing more changes nothing
    untouched = make_board(track, board["folder"])
    assert all(r.record["results"]["RS"] == read_record(r.file)["results"]["RS"] or r.transfer
               for r in untouched.rows)


def test_a_stale_transfer_leaves_the_re_added_entry_out(board: dict[str, Any], tmp_path: Path) -> None:
    from robench.leaderboard.render import board as make_board
    from robench.leaderboard.render import markdown

    def edit(data: dict[str, Any]) -> None:
        data["models"]["beta"]["model_ids"] = ["0" * 16]  # the records now list other models
        data["cells"]["pgd"]["RS"]["beta"]["alpha"] = encode_bits(np.zeros(int(data["clips"]["count"]), bool))

    folder = _edited_copy(board, tmp_path, edit)
    b = make_board(load_track(board["track"]), folder)
    assert all(not r.transfer for r in b.rows)  # beta's clips no longer count against alpha
    assert "computed on other models of Model beta" in markdown(b)

    def drop(data: dict[str, Any]) -> None:  # an entry added after the transfer was computed
        del data["models"]["beta"]
        for per in data["cells"].values():
            for matrix in per.values():
                del matrix["beta"]
                for row in matrix.values():
                    del row["beta"]

    b = make_board(load_track(board["track"]), _edited_copy(board, tmp_path / "dropped", drop))
    assert "does not hold Model beta (added since)" in markdown(b)
    assert next(r for r in b.rows if r.entry["id"] == "beta").transfer_low is None
