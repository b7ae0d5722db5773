"""Leaderboard tracks beyond the paper's threat model: a corruption track (accuracy under natural corruptions, per
family and on average, ranked by the mean with paired tests on the pooled outcomes) and a track under the
plausible-skeleton threat model (issue 24).

Entries are the untrained tiny model of the tiny track (no training): two evaluated on a tiny corruption track and
one on the tiny track with plausible skeletons, seconds each; the ranking cases are records derived from them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import TINY_TRACK, tiny_entry
from robench.cli import main
from robench.errors import RobenchError
from robench.leaderboard.ranking import mcnemar_exact
from robench.leaderboard.record import (
    RecordError,
    corruption_bits_of,
    corruption_per_sample,
    corruption_results,
    digest_of_corruption_bits,
    read_record,
    sealed,
    validate_record,
    write_record,
)
from robench.leaderboard.render import board, render
from robench.leaderboard.tracks import builtin_corruptions, bundled_tracks, load_track
from robench.store import ResultsStore

DATA = Path(__file__).parent / "data"
VERSIONS = DATA / "track_versions.json"
LIMITS = {"bone": 0.01, "angle": 0.1, "velocity": 0.1, "acceleration": 0.1}
#: the tiny track's data, under two graded corruptions and two one-level ones (a missing input, a person swap)
CORRUPTION_TRACK = """\
name: tiny-corruptions
title: Tiny track under corruptions (tests only)
version: 1
description: the tiny track's clips under four corruptions at severities 1 and 3
dataset: {name: synthetic, classes: 4, train_clips_per_class: 6, test_clips_per_class: 3, frames_rgb: 8,
          frames_skeleton: 16, resolution: 32, train_performers: 3, test_performers: 2}
evaluation: {split: test, max_samples: null, batch_size: 16, seed: 0}
clips: {count: 12, digest: null}
scenarios: [clean]
corruptions: {severities: [1, 3], types: [gaussian-noise, joint-jitter, rgb-missing, second-person-swap]}
rank_by: corruptions
"""
SEVERITIES = [1, 3]
ONE_LEVEL = ("rgb-missing", "second-person-swap")


def _where(work: Path, track: Path, root: str = "board") -> list[str]:
    return ["--track", str(track), "--root", str(work / root), "--store", str(work / "store.sqlite"),
            "--cache", str(work / "cache"), "--progress", "quiet"]


def _add(work: Path, track: Path, name: str, seed: int) -> Path:
    """Evaluate the untrained tiny model (weights drawn with ``seed``) as entry ``name`` on ``track``."""
    folder = work / "entries" / name
    folder.mkdir(parents=True)
    torch.manual_seed(seed)
    tiny_entry(folder, name.capitalize(), entry_id=name)
    assert main(["leaderboard", "add", str(folder / "entry.yaml"), *_where(work, track)]) == 0
    return work / "board" / load_track(track).name / f"{name}.json"


@pytest.fixture(scope="module")
def corruption_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two entries (``first``, ``second``) evaluated on the tiny corruption track, ``work/track.yaml``."""
    work = tmp_path_factory.mktemp("corruption-track")
    (work / "track.yaml").write_text(CORRUPTION_TRACK)
    for seed, name in enumerate(("first", "second")):
        _add(work, work / "track.yaml", name, seed)
    return work


# -- corruption tracks ---------------------------------------------------------------------------------------

def test_a_corruption_record_has_families_and_a_mean_that_counts_one_level_corruptions_at_every_severity(
        corruption_work: Path) -> None:
    track = load_track(corruption_work / "track.yaml")
    record = read_record(corruption_work / "board" / "tiny-corruptions" / "first.json")
    assert record["track"]["kind"] == "corruptions" and record["track"]["rank_by"] == "corruptions"
    assert "eps" not in record["track"] and record["track"]["digest"] == track.digest
    res = record["results"]
    assert set(res) >= {"clean", "corruptions", "families", "mean"} and "RS" not in res
    clean, cells = corruption_bits_of(record)
    # what was evaluated: graded corruptions at every severity, one-level ones once, at the first
    assert {c: sorted(per) for c, per in cells.items()} == {
        "gaussian-noise": SEVERITIES, "joint-jitter": SEVERITIES, "rgb-missing": [1], "second-person-swap": [1]}
    store = ResultsStore(corruption_work / "store.sqlite", read_only=True)
    stored = store.cells(record["provenance"]["cell_ids"])
    assert sorted(c["scenario"] for c in stored.values()).count("corrupted") == 6  # 2 x 2 + 2 x 1
    # the numbers: a corruption's accuracy is its mean over the severities, a one-level one's result standing for
    # both; a family is the mean of its corruptions; Mean pools every (clip, corruption, severity), n = 12 x 4 x 2
    acc = {c: [100.0 * per[s if s in per else 1].mean() for s in SEVERITIES] for c, per in cells.items()}
    for c in cells:
        assert res["corruptions"][c]["accuracy"] == pytest.approx(np.mean(acc[c]))
    assert res["families"] == pytest.approx({"noise": np.mean(acc["gaussian-noise"]),
                                             "pose": np.mean(acc["joint-jitter"]),
                                             "missing": np.mean(acc["rgb-missing"]),
                                             "persons": np.mean(acc["second-person-swap"])})
    correct = sum(int(per[s if s in per else 1].sum()) for per in cells.values() for s in SEVERITIES)
    assert res["mean"] == {"accuracy": pytest.approx(100.0 * correct / 96), "correct": correct, "n": 96}
    assert res["mean"]["accuracy"] == pytest.approx(np.mean([np.mean(v) for v in acc.values()]))
    assert res["clean"]["n"] == 12 and res["clean"]["correct"] == int(clean.sum())
    # a record whose mean does not follow from its bits, or that drops a severity, is refused with the key named
    forged = json.loads(json.dumps(record))
    forged["results"]["mean"]["accuracy"] += 1.0
    with pytest.raises(RecordError, match=re.escape("results.mean.accuracy")):
        validate_record(sealed(forged), "forged")
    forged = json.loads(json.dumps(record))
    del forged["per_sample"]["corruptions"]["joint-jitter"]["3"]
    with pytest.raises(RecordError, match=re.escape("per_sample.corruptions.joint-jitter")):
        validate_record(sealed(forged), "forged")


def _derived(record: dict[str, Any], name: str, cells: dict[str, dict[int, np.ndarray]]) -> dict[str, Any]:
    """``record`` as entry ``name`` with the per-clip results ``cells`` (clean as it was): numbers recomputed."""
    out = json.loads(json.dumps(record))
    clean, _ = corruption_bits_of(record)
    info = record["track"]["corruptions"]["types"]
    out["entry"].update(id=name, name=name.capitalize())
    out["results"] = {**corruption_results(clean, cells, info, SEVERITIES), "reliance": {}}
    out["per_sample"] = corruption_per_sample(clean, cells)
    out["per_sample_digest"] = digest_of_corruption_bits(clean, cells)
    return out


def test_a_corruption_board_ranks_by_mean_with_paired_tests_on_the_pooled_outcomes(corruption_work: Path,
                                                                                   tmp_path: Path) -> None:
    """Three entries that differ only on the missing RGB input: ``top`` gets every clip right, ``middle`` 4 clips
    fewer, ``low`` 2 fewer than ``middle``. Pooled over severities 1 and 3 (the one-level corruption counted at
    each), ``top`` and ``middle`` differ on 8 outcomes all one way (p = 2^-7 < 5%: separated; counted once, 4
    outcomes, p = 1/8 would tie them), ``middle`` and ``low`` on 4 (p = 1/8: tied)."""
    track = load_track(corruption_work / "track.yaml")
    source = read_record(corruption_work / "board" / "tiny-corruptions" / "first.json")
    _, cells = corruption_bits_of(source)
    folder = tmp_path / "tiny-corruptions"
    folder.mkdir()
    pooled = {}
    for name, wrong in (("top", 0), ("middle", 4), ("low", 6)):
        mine = {c: {s: bits.copy() for s, bits in per.items()} for c, per in cells.items()}
        mine["rgb-missing"][1] = np.arange(12) >= wrong
        write_record(folder / f"{name}.json", _derived(source, name, mine))
        # the pooled vector as the docs define it: corruptions by name, severities, clips; one-level ones repeated
        pooled[name] = np.concatenate([mine[c][s if c not in ONE_LEVEL else 1] for c in sorted(mine)
                                       for s in SEVERITIES])
    rows = board(track, folder).rows
    assert [r.entry["id"] for r in rows] == ["top", "middle", "low"]
    assert [r.ranked.label for r in rows if r.ranked] == ["1", "2=", "2="]
    for upper, lower, row in (("top", "middle", rows[1]), ("middle", "low", rows[2])):
        p, b, c = mcnemar_exact(pooled[upper], pooled[lower])
        assert row.ranked is not None and (row.ranked.p_above, row.ranked.b_above, row.ranked.c_above) == (p, b, c)
    assert (rows[1].ranked.b_above, rows[1].ranked.p_above) == (8, pytest.approx(2 ** -7))  # type: ignore[union-attr]
    means = [r.record["results"]["mean"]["accuracy"] for r in rows]
    assert means[0] - means[1] == pytest.approx(100 * 8 / 96) and means == sorted(means, reverse=True)
    # the pages: Clean, one column per family (noise, pose, persons, missing: the page order), Mean
    md = render(board(track, folder), "markdown")
    assert "| Rank | Model | Defense | Clean | Noise | Pose | Persons | Missing | Mean | Extra data | Passes | " \
        "Checked |" in md and "XRS" not in md and "Reliance" not in md
    assert "not independent draws" in md and "counted at every severity" in md
    html = render(board(track, folder), "html")
    assert 'data-col="family:missing"' in html and 'data-col="mean"' in html and "rgb-missing" in html
    csv = render(board(track, folder), "csv").splitlines()
    head = csv[0].split(",")
    assert head[6:15] == ["clean", "clean_lo", "clean_hi", "family:noise", "family:pose", "family:persons",
                          "family:missing", "mean", "corruption:gaussian-noise"]
    assert csv[1].split(",")[0] == "1" and float(csv[1].split(",")[head.index("corruption:rgb-missing")]) == 100.0
    assert render(board(track, folder), "latex").count("Missing") == 1


def test_the_paired_test_is_exact_for_thousands_of_pooled_outcomes() -> None:
    """A corruption track pools clips x corruptions x severities (16,800 on the synthetic one): the exact test must
    not overflow a float (2.0 ** n beyond n = 1023) and must agree with the binomial distribution (here summed
    in log space from lgamma, an independent route to the same tail)."""
    import math

    def two_sided(k: int, n: int) -> float:
        logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2)
                for i in range(k + 1)]
        top = max(logs)
        return min(1.0, 2.0 * math.exp(top) * math.fsum(math.exp(x - top) for x in logs))

    rng = np.random.default_rng(0)
    for n, flip in ((40, 0.3), (3000, 0.02), (16800, 0.1)):
        upper = rng.random(n) < 0.7
        lower = upper ^ (rng.random(n) < flip)
        p, b, c = mcnemar_exact(upper, lower)
        assert p == pytest.approx(two_sided(min(b, c), b + c), rel=1e-7, abs=1e-300), n
    all_one_way = mcnemar_exact(np.ones(2000, bool), np.zeros(2000, bool))
    assert all_one_way == (0.0, 2000, 0)  # 2 * 2^-2000 underflows to 0: separated, no error
    assert mcnemar_exact(np.arange(4000) % 2 == 0, np.arange(4000) % 2 == 1)[0] == 1.0


def test_a_corruption_record_verifies_against_a_fresh_evaluation(corruption_work: Path) -> None:
    record = corruption_work / "board" / "tiny-corruptions" / "second.json"
    assert main(["leaderboard", "verify", str(record), "--no-stamp",
                 *_where(corruption_work, corruption_work / "track.yaml")]) == 0


@pytest.mark.parametrize("change, said", [
    ({"attacks": {"pgd": {"type": "pgd"}}}, "key 'attacks': a corruption track has no attacks"),
    ({"rank_by": "RS"}, "rank_by: corruptions"),
    ({"corruptions": {"types": ["gaussian-noise", "fog"]}}, "fog is not a corruption robench ships"),
    ({"corruptions": {"severities": [0, 1]}}, "key 'corruptions.severities'"),
    ({"corruptions": {"levels": [1]}}, "key 'corruptions'"),
])
def test_a_bad_corruption_track_is_one_clear_error(tmp_path: Path, change: dict[str, Any], said: str) -> None:
    import yaml

    data = {**yaml.safe_load(CORRUPTION_TRACK), **change}
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(RobenchError, match=re.escape(said)):
        load_track(tmp_path / "t.yaml")


PLUGIN_CORRUPTION = """
from robench.corruptions.base import Corruption
from robench.registry import register_corruption


@register_corruption("tracks-test-easy")
class Easy(Corruption):
    \"\"\"Changes nothing: a corruption a submitter would like to be averaged in.\"\"\"

    modality = "rgb"
    family = "noise"
    levels = (1.0, 2.0, 3.0, 4.0, 5.0)
    unit = "none"

    def corrupt(self, x, severity, generator):
        return x.clone()
"""


def test_all_corruptions_are_robench_s_own_and_fixed_in_the_digest(tmp_path: Path) -> None:
    from robench.registry import CORRUPTIONS, load_plugin_file, plugin_module_name

    track = load_track("synthetic-corruptions")
    digest = track.digest
    assert track.corruption_types == builtin_corruptions() and len(track.corruption_types) == 21
    # a corruption a plugin (an entry's model code) registers is not one of `all`
    (tmp_path / "easy.py").write_text(PLUGIN_CORRUPTION)
    load_plugin_file(tmp_path / "easy.py")
    try:
        assert "tracks-test-easy" in CORRUPTIONS.names() and "tracks-test-easy" not in track.corruption_types
        assert track.digest == digest
    finally:
        CORRUPTIONS.forget_module(plugin_module_name(tmp_path / "easy.py"))
    explicit = track.path.read_text().replace("types: all", "types: [" + ", ".join(builtin_corruptions()) + "]")
    (tmp_path / "synthetic-corruptions.yaml").write_text(explicit)
    assert load_track(tmp_path / "synthetic-corruptions.yaml").digest == track.digest  # `all` is what it stands for
    fewer = track.path.read_text().replace("types: all", "types: [gaussian-noise]")
    (tmp_path / "fewer.yaml").write_text(fewer)
    assert load_track(tmp_path / "fewer.yaml").digest != track.digest


# -- the plausible-skeleton threat model -------------------------------------------------------------------

def test_a_plausible_track_constrains_every_skeleton_attack_and_is_a_track_of_its_own(tmp_path: Path) -> None:
    text = TINY_TRACK.read_text().replace("name: tiny\n", "name: tiny-plausible\n").replace(
        "  skeleton: {scale: 1.0, bounds: null}",
        "  skeleton: {scale: 1.0, bounds: null, plausible: {bone: 0.01, angle: 0.1, velocity: 0.1, acceleration: 0.1}}")
    assert "plausible" in text
    (tmp_path / "track.yaml").write_text(text)
    track, plain = load_track(tmp_path / "track.yaml"), load_track(TINY_TRACK)
    assert track.plausible == LIMITS and plain.plausible is None and track.digest != plain.digest
    path = _add(tmp_path, tmp_path / "track.yaml", "entry", 0)
    record = read_record(path)
    assert record["track"]["plausible"] == LIMITS
    stored = ResultsStore(tmp_path / "store.sqlite", read_only=True).cells(record["provenance"]["cell_ids"])
    attacked = [c for c in stored.values() if c["attack"] is not None]
    assert len(attacked) == 6  # PGD-2 and AutoAttack on XR, XS, XRS
    for cell in attacked:
        params = json.loads(cell["attack_params"])
        if cell["scenario"] == "R":  # nothing of the skeleton to constrain: the plain track's cell
            assert "plausible" not in params
        else:
            assert params["plausible"] == LIMITS, cell["scenario"]
    md = render(board(track, tmp_path / "board" / "tiny-plausible"), "markdown")
    assert "Plausible skeletons: every attack on the skeleton (XS, XRS) keeps bone lengths within 1%" in md
    # a bad limit is one clear error when the track is read
    (tmp_path / "bad.yaml").write_text(text.replace("bone: 0.01", "bone: -1"))
    with pytest.raises(RobenchError, match=re.escape("threat.skeleton.plausible")):
        load_track(tmp_path / "bad.yaml")


# -- the bundled tracks --------------------------------------------------------------------------------------

def test_the_bundled_corruption_and_plausible_tracks_are_the_synthetic_track_s_and_pinned() -> None:
    pinned = json.loads(VERSIONS.read_text())
    synthetic = load_track("synthetic")
    assert {"synthetic-corruptions", "synthetic-plausible"} <= set(bundled_tracks())
    for name in ("synthetic-corruptions", "synthetic-plausible"):
        track = load_track(name)
        assert pinned[name][str(track.version)] == track.digest, (
            f"track {name} changed without a version bump: bump 'version' in its file and add the new digest "
            f"{track.digest} under it in {VERSIONS.name}")
        assert track.version == synthetic.version and track.digest != synthetic.digest
        for key in ("dataset", "evaluation", "clips"):
            assert track.data[key] == synthetic.data[key], (name, key)
    corruptions = load_track("synthetic-corruptions")
    assert corruptions.kind == "corruptions" and corruptions.severities == [1, 2, 3, 4, 5]
    assert corruptions.scenarios == ["clean"] and "attacks" not in corruptions.data
    assert corruptions.data["threat"] == synthetic.data["threat"]  # the inputs' ranges (no attack uses them)
    plausible = load_track("synthetic-plausible")
    assert plausible.plausible == LIMITS and "synthetic track" in plausible.description
    same = {k: v for k, v in plausible.data.items() if k not in ("name", "title", "description", "threat")}
    assert same == {k: v for k, v in synthetic.data.items() if k not in ("name", "title", "description", "threat")}
    threat = json.loads(json.dumps(plausible.data["threat"]))
    del threat["skeleton"]["plausible"]
    assert threat == synthetic.data["threat"]


def test_the_committed_board_has_both_tracks() -> None:
    """The committed synthetic board's eight entries on both new tracks; the pages are what render writes."""
    root = Path(__file__).parent.parent / "leaderboard"
    for name in ("synthetic-corruptions", "synthetic-plausible"):
        if not (root / name).is_dir():
            pytest.skip(f"no committed records of {name}")
        records = sorted(p.stem for p in (root / name).glob("*.json"))
        assert records == sorted(p.stem for p in (root / "entries" / "synthetic").glob("*.yaml"))
        track = load_track(name)
        for fmt, file in (("markdown", "README.md"), ("html", "index.html")):
            assert render(board(track, root / name), fmt) == (root / name / file).read_text(), (name, file)
