"""The worst case over attacks, an ensemble's accuracy after each member, and flags in every report format,
on a real (tiny) protocol run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from robench.cli import main
from robench.report.render import build_report, render
from robench.report.tables import build_tables
from robench.store import ResultsStore, unpack_bits

PROTOCOL = f"""
include: {REPO / 'tests' / 'data' / 'tiny.yaml'}
name: tiny_worst
attacks:
  pgd: {{type: pgd, label: PGD-2, steps: 2, step_size: 4/255}}
  fgsm: {{type: fgsm, label: FGSM}}
  aa: {{type: autoattack, label: AA, steps: 3, targets: 2, queries: 20}}
tables:
  - {{id: worst, title: worst, attack: worst, eps: 8/255, baseline: none}}
  - id: members
    title: members
    eps: 8/255
    columns: [R, S, RS]
    baseline: null
    rows:
      - {{id: ce, defense: at_rs, attack: "aa@apgd-ce", label: after APGD-CE}}
      - {{id: t, defense: at_rs, attack: "aa@apgd-t", label: after APGD-T}}
      - {{id: sq, defense: at_rs, attack: "aa@square", label: after Square}}
      - {{id: aa, defense: at_rs, attack: aa, label: AA}}
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("worst")
    protocol = folder / "tiny_worst.yaml"
    protocol.write_text(PROTOCOL)
    path = folder / "r.sqlite"
    assert main(["run", str(protocol), "--store", str(path), "--cache", str(folder / "cache"),
                 "--progress", "quiet"]) == 0
    return path


def test_worst_case_is_the_per_clip_and_over_attacks(store: Path) -> None:
    s = ResultsStore(store)
    tables = {t.id: t for t in build_tables(s, ["tiny_worst"])}
    cells = s.cells()
    for row in tables["worst"].blocks[0].rows:
        for col in ("R", "S", "RS"):
            v = row.values[col]
            assert len(v.cells) == 3, "pgd, fgsm and aa"
            bits = [unpack_bits(cells[c]["per_sample"], cells[c]["n"]) for c in v.cells]
            assert v.value == pytest.approx(100 * np.logical_and.reduce(bits).mean())
            assert v.value <= min(100 * cells[c]["accuracy"] for c in v.cells) + 1e-9


def test_ensemble_accuracy_after_each_member(store: Path) -> None:
    s = ResultsStore(store)
    t = next(t for t in build_tables(s, ["tiny_worst"]) if t.id == "members")
    rows = {r.id: r for r in t.blocks[0].rows}
    for col in ("R", "S", "RS"):
        seq = [rows[k].values[col].value for k in ("ce", "t", "sq")]
        assert all(x is not None for x in seq)
        assert seq == sorted(seq, reverse=True), seq  # each member only removes clips
        assert seq[-1] == pytest.approx(rows["aa"].values[col].value)


@pytest.mark.parametrize("fmt", ["markdown", "html", "latex", "csv"])
def test_every_format_renders_with_the_flags_column(store: Path, fmt: str) -> None:
    text = render(build_report(ResultsStore(store), ["tiny_worst"]), fmt)
    assert "worst" in text
    if fmt == "csv":
        assert text.splitlines()[0].endswith(",flags")
