"""External evaluations (``robench leaderboard challenge``): a file of adversarial inputs for an entry's clips is
checked against the track's threat model as robench's own attacks are, run through the entry's model, and the clips
it breaks lower the entry's worst case from then on; a file that breaks a rule, or breaks nothing, changes nothing.

One tiny board (seconds): a track whose only attack is a one-step PGD of 1/255 (most clips survive it), and two
entries with the same outside model under two ids, so their records are equal and the board orders them by id. The
adversarial file is made outside the leaderboard, by robench's own PGD with 40 steps on the entry's model.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import robench
from conftest import WEAK_BACKBONES, fit, weak_entry, weak_track
from robench.cli import main
from robench.leaderboard.challenge import with_challenges
from robench.leaderboard.record import (
    RecordError,
    bits_of,
    challenged_columns,
    columns_of,
    ranking_of,
    read_record,
    sealed,
    validate_record,
    write_record,
)
from robench.leaderboard.render import board, render
from robench.leaderboard.tracks import load_track

ATTACKS = "  pgd: {type: pgd, label: PGD-1, steps: 1, step_size: 1/255, random_start: false}"


def _where(work: Path) -> list[str]:
    return ["--store", str(work / "store.sqlite"), "--cache", str(work / "cache"), "--progress", "quiet"]


@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The weak track, a model fitted to its 12 test clips, and two records of it (``alpha``, ``beta``)."""
    work = tmp_path_factory.mktemp("challenge")
    track = weak_track(work, ATTACKS)
    clips = robench.dataset(track, split="test", cache=work / "cache" / "data")
    inputs, labels = next(clips.batches(12))
    torch.manual_seed(0)
    # (12 of 12 clips right in eval mode, and after the track's attack)
    model = fit(robench.build_model(track, **WEAK_BACKBONES), inputs, labels, 60)
    for entry_id in ("alpha", "beta"):
        entry = weak_entry(work / "entries" / entry_id, entry_id, model)
        assert main(["leaderboard", "add", str(entry), "--track", str(track), "--root", str(work / "board"),
                     *_where(work)]) == 0
    # the stronger attack, run outside the leaderboard on the entry's model
    pgd = robench.attack("pgd", "RS", eps="8/255", steps=40, step_size="2/255", random_start=True)
    torch.manual_seed(1)
    adv = pgd(model, inputs, labels)
    return {"work": work, "track": track, "model": model, "inputs": inputs, "labels": labels, "adv": adv,
            "alpha": work / "board" / "weak" / "alpha.json", "beta": work / "board" / "weak" / "beta.json"}


def _file(path: Path, tensors: dict[str, torch.Tensor], scenario: str = "RS", author: str = "C. Hallenger",
          attack: str = "PGD-40, eps 8/255", **meta: str) -> Path:
    metadata = {"scenario": scenario, "author": author, "attack": attack, **meta}
    save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata={k: v for k, v in metadata.items() if v})
    return path


def _challenge(arena: dict[str, Any], record: Path, file: Path) -> int:
    return main(["leaderboard", "challenge", str(record), "--adversarial", str(file), "--track", str(arena["track"]),
                 *_where(arena["work"])])


def _ids(n: int = 12) -> torch.Tensor:
    return torch.arange(n, dtype=torch.int64)


def _order(arena: dict[str, Any]) -> list[str]:
    return [r.entry["id"] for r in board(load_track(str(arena["track"])), arena["alpha"].parent).rows]


def test_an_accepted_challenge_lowers_the_worst_case_re_ranks_and_stays(
        arena: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    alpha = arena["alpha"]
    before = read_record(alpha)
    robust = columns_of(*bits_of(before)[:2])["RS"]
    assert robust.sum() >= 4 and _order(arena) == ["alpha", "beta"]  # equal records: by id
    file = _file(tmp_path / "adv.safetensors", {**arena["adv"], "clip_ids": _ids()})
    capsys.readouterr()
    assert _challenge(arena, alpha, file) == 0, capsys.readouterr().err
    printed = " ".join(capsys.readouterr().out.split())
    after = read_record(alpha)
    (found,) = after["challenges"]
    with torch.no_grad():
        fooled = (arena["model"](arena["adv"]).argmax(1) != arena["labels"]).numpy()
    expected = [int(c) for c in np.flatnonzero(fooled & robust)]
    assert expected and found["clips_broken"] == expected
    assert found["author"] == "C. Hallenger" and found["attack"] == "PGD-40, eps 8/255" and found["scenario"] == "RS"
    assert found["sha256"].startswith("sha256:") and found["clips"] == 12 and found["date"][:2] == "20"
    k = len(expected)
    assert after["results"]["RS"]["correct"] == before["results"]["RS"]["correct"] - k
    assert after["results"]["worst"] == after["results"]["RS"]
    assert after["results"]["avg"] < before["results"]["avg"]
    for key in ("clean", "R", "S", "by_attack"):  # what robench measured stays
        assert after["results"][key] == before["results"][key]
    assert after["per_sample"] == before["per_sample"] and after["per_sample_digest"] == before["per_sample_digest"]
    assert f"XRS {before['results']['RS']['accuracy']:.2f} → {after['results']['RS']['accuracy']:.2f}" in printed
    score, bits = ranking_of(after)
    assert score == after["results"]["worst"]["accuracy"] and not bits[expected].any()
    assert _order(arena) == ["beta", "alpha"]  # re-ranked
    track = load_track(str(arena["track"]))
    md = render(board(track, alpha.parent), "markdown")
    page = render(board(track, alpha.parent), "html")
    arrow = f"{before['results']['RS']['accuracy']:.2f} → {after['results']['RS']['accuracy']:.2f}"
    note = f"lowered by {k} clip{'s' if k != 1 else ''} by C. Hallenger's PGD-40, eps 8/255 ({found['date'][:10]}"
    assert arrow in md and note in md and arrow in page and html.escape(note) in page
    # the same file again: accepted before, nothing changes
    saved = alpha.read_bytes()
    assert _challenge(arena, alpha, file) == 1
    assert "each file counts once" in " ".join(capsys.readouterr().out.split()) and alpha.read_bytes() == saved
    # verify re-evaluates robench's attacks and keeps the challenge; add of the same model carries it over
    assert main(["leaderboard", "verify", str(alpha), "--track", str(arena["track"]), *_where(arena["work"])]) == 0
    verified = read_record(alpha)
    assert verified["challenges"] == after["challenges"] and verified["verification"]["robench"]
    assert main(["leaderboard", "add", str(arena["work"] / "entries" / "alpha" / "entry.yaml"), "--track",
                 str(arena["track"]), "--root", str(arena["work"] / "board"), *_where(arena["work"])]) == 0
    again = read_record(alpha)
    assert again["challenges"] == after["challenges"] and again["results"]["RS"] == after["results"]["RS"]


def test_a_valid_file_that_breaks_nothing_changes_nothing(arena: dict[str, Any], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The clean clips as 'adversarial' inputs (inside every ball): valid, but they fool no robust clip."""
    beta = arena["beta"]
    saved = beta.read_bytes()
    file = _file(tmp_path / "clean.safetensors", {**arena["inputs"], "clip_ids": _ids()}, attack="none")
    capsys.readouterr()
    assert _challenge(arena, beta, file) == 1
    said = " ".join(capsys.readouterr().out.split())
    assert "valid (all 12 clips inside the threat model on XRS)" in said and "breaks no clip" in said, said
    assert "the record is unchanged" in said and beta.read_bytes() == saved


def _case(case: str, arena: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, str], tuple[str, ...]]:
    """A file that breaks one rule: its tensors, its metadata and what the error must say."""
    adv = {k: v.clone() for k, v in arena["adv"].items()}
    clean = arena["inputs"]
    tensors: dict[str, torch.Tensor] = {**adv, "clip_ids": _ids()}
    meta: dict[str, str] = {}
    if case == "outside_the_ball":
        tensors["rgb"][3] = (clean["rgb"][3] + 12 / 255).clamp(0, 1)
        return tensors, meta, ("clip 3 (clip_ids[3])", "rgb perturbation", "exceeds eps 0.0313725 (L-inf)")
    if case == "skeleton_outside_the_ball":
        tensors["skeleton"][7, 0, 0, 0, 0] = clean["skeleton"][7, 0, 0, 0, 0] + 0.05
        return tensors, meta, ("clip 7", "skeleton perturbation 0.05", "exceeds eps")
    if case == "outside_the_range":
        c = int(clean["rgb"].flatten(1).max(1).values.argmax())  # a clip with a white pixel: 1/255 brighter
        flat = clean["rgb"][c].flatten().clone()
        assert float(flat.max()) == 1.0
        flat[int(flat.argmax())] += 1 / 255  # (inside the ball, outside [0, 1])
        tensors["rgb"][c] = flat.view_as(clean["rgb"][c])
        return tensors, meta, (f"clip {c}", "leave the valid range [0.0, 1.0]")
    if case == "untouched_modality_changed":
        tensors["skeleton"] = clean["skeleton"].clone()
        tensors["skeleton"][5, 1, 2, 3, 0] += 1e-3
        meta["scenario"] = "R"
        return tensors, meta, ("clip 5", "modality 'skeleton' is not attacked but 1 values changed",
                               "scenario R leaves skeleton untouched")
    if case == "nan":
        tensors["rgb"][2, 0, 0, 0, 0] = float("nan")
        return tensors, meta, ("clip 2", "non-finite values in adversarial rgb")
    if case == "clip_id_outside_the_track":
        tensors["clip_ids"] = torch.tensor([*range(11), 12])
        return tensors, meta, ("clip_ids[11] is 12", "the track evaluates 12 clips, positions 0 to 11")
    if case == "clip_twice":
        tensors["clip_ids"] = torch.tensor([0, *range(11)])
        return tensors, meta, ("clip 0 appears twice", "clip_ids[0] and clip_ids[1]")
    if case == "clip_ids_not_int64":
        tensors["clip_ids"] = _ids().to(torch.int32)
        return tensors, meta, ("tensor 'clip_ids' is I32", "allowed: I64 (int64)")
    if case == "rgb_float64":
        tensors = {"rgb": adv["rgb"][:6].double(), "skeleton": adv["skeleton"][:6], "clip_ids": _ids(6)}
        return tensors, meta, ("tensor 'rgb' is F64", "allowed: F32 (float32)")
    if case == "rgb_of_another_size":
        tensors["rgb"] = adv["rgb"][:, :, :, :16, :16].contiguous()
        return tensors, meta, ("'rgb' holds clips of shape [3, 8, 16, 16]", "the track's rgb clips are [3, 8, 32, 32]")
    if case == "attacked_modality_missing":
        del tensors["skeleton"]
        return tensors, meta, ("scenario RS attacks rgb and skeleton", "no 'skeleton' tensor")
    if case == "no_author":
        meta["author"] = ""
        return tensors, meta, ("metadata 'author' is missing",)
    if case == "unknown_scenario":
        meta["scenario"] = "XRS"
        return tensors, meta, ("metadata 'scenario' is 'XRS'", "allowed: R, S or RS")
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["outside_the_ball", "skeleton_outside_the_ball", "outside_the_range",
                                  "untouched_modality_changed", "nan", "clip_id_outside_the_track", "clip_twice",
                                  "clip_ids_not_int64", "rgb_float64", "rgb_of_another_size",
                                  "attacked_modality_missing", "no_author", "unknown_scenario", "pickle"])
def test_a_file_that_breaks_a_rule_is_refused_and_changes_nothing(
        case: str, arena: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record = arena["beta"]
    saved = record.read_bytes()
    file = tmp_path / "adv.safetensors"
    if case == "pickle":
        torch.save({"rgb": arena["adv"]["rgb"], "clip_ids": _ids()}, file)
        expect: tuple[str, ...] = ("not a safetensors file",)
    else:
        tensors, meta, expect = _case(case, arena)
        _file(file, tensors, **meta)
    capsys.readouterr()
    assert _challenge(arena, record, file) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("robench: error:") == 1, err
    said = " ".join(err.split())
    for part in (*expect, "nothing was recorded"):
        assert part in said, f"{part!r} not in {said}"
    assert record.read_bytes() == saved


def test_challenges_are_sealed_and_checked_against_the_bits(arena: dict[str, Any], tmp_path: Path) -> None:
    """A record's challenges are part of what its seal covers and what its numbers are checked against: a clip a
    challenge names must have been robust before it, and the columns must count it as broken."""
    record = read_record(arena["beta"])
    robust = np.flatnonzero(columns_of(*bits_of(record)[:2])["RS"])
    track = load_track(str(arena["track"]))
    found = {"author": "X", "attack": "Y", "date": "2026-12-06T00:00:00+00:00", "sha256": "sha256:" + "0" * 64,
             "scenario": "RS", "clips": 12, "clips_broken": [int(robust[0])], "robench": "0", "device": "cpu"}
    target = tmp_path / "weak" / "beta.json"
    target.parent.mkdir()
    write_record(target, with_challenges(record, [found], track))
    done = read_record(target)
    assert done["results"]["RS"]["correct"] == record["results"]["RS"]["correct"] - 1
    assert not challenged_columns(done)["RS"][robust[0]]
    second = {**found, "sha256": "sha256:" + "1" * 64}  # another file, naming the clip the first one broke
    for change, said in (({}, "was not robust on RS before this challenge"),
                         ({"clips_broken": [12]}, "key 'challenges[1].clips_broken'"),
                         ({"clips_broken": [int(robust[2]), int(robust[1])]}, "key 'challenges[1].clips_broken'"),
                         ({"scenario": "clean"}, "key 'challenges[1].scenario'"),
                         ({"sha256": found["sha256"]}, "key 'challenges[1].sha256'"),
                         ({"colour": "blue"}, "key 'challenges[1]'")):
        edited = json.loads(json.dumps(done))
        edited["challenges"].append({**second, **change})
        with pytest.raises(RecordError, match=re.escape(said)):
            validate_record(sealed(edited), "edited")
    unlowered = json.loads(json.dumps(done))
    unlowered["results"] = record["results"]  # the challenge, without its effect on the numbers
    with pytest.raises(RecordError, match=re.escape("results.RS.correct")):
        validate_record(sealed(unlowered), "unlowered")
    forged = json.loads(json.dumps(done))
    forged["challenges"][0]["author"] = "someone else"  # edited without robench: the seal says so
    with pytest.raises(RecordError, match="changed after robench wrote it"):
        validate_record(forged, "forged")
    assert "challenges" not in record and validate_record(record, "no challenges")  # none: as valid as before


def test_a_challenge_is_judged_only_where_the_record_reproduces(arena: dict[str, Any], tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A record whose clean result on a clip is not what the model gives here (a platform's bits, or a record of
    another model) judges no challenge: a clip would otherwise count as broken without any attack."""
    from robench.leaderboard.record import digest_of_bits, per_sample_of, results_from_bits

    record = read_record(arena["beta"])
    clean, attacks, members = bits_of(record)
    for bits in [clean, *(b for per in attacks.values() for b in per.values()),
                 *(b for stages in members.values() for per in stages.values() for b in per.values())]:
        bits[0] = False  # the record now says clip 0 is wrong on the clean input
    labels = {a: v["label"] for a, v in record["results"]["by_attack"].items()}
    forged = {**record, "results": {**results_from_bits(clean, attacks, members, "RS", labels),
                                    "ri": None, "reliance": record["results"]["reliance"]},
              "per_sample": per_sample_of(clean, attacks, members),
              "per_sample_digest": digest_of_bits(clean, attacks, float(record["track"]["eps"]))}
    target = arena["work"] / "forged" / "weak" / "beta.json"  # (the same depth: its entry file still resolves)
    write_record(target, forged)
    saved = target.read_bytes()
    file = _file(tmp_path / "clean.safetensors", {**arena["inputs"], "clip_ids": _ids()}, attack="none")
    capsys.readouterr()
    assert _challenge(arena, target, file) == 2
    said = " ".join(capsys.readouterr().err.split())
    assert "does not give the record's clean results on clip(s) 0" in said and "nothing was recorded" in said, said
    assert target.read_bytes() == saved
