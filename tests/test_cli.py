"""End to end through the command line on the tiny protocol (seconds per run)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from conftest import TINY_PROTOCOL
from robench.cli import main
from robench.store import ResultsStore, unpack_bits


def run_cli(*args: str) -> int:
    return main(list(args))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One complete run of the tiny protocol, shared by the read-only tests below."""
    store = tmp_path_factory.mktemp("run") / "r.sqlite"
    assert run_cli("run", str(TINY_PROTOCOL), "--store", str(store), "--progress", "plain") == 0
    return store


def test_run_writes_every_cell(tiny_run: Path) -> None:
    store = ResultsStore(tiny_run)
    df = store.dataframe()
    assert len(df) == 8
    assert set(df["scenario"]) == {"clean", "R", "S", "RS"}
    assert set(df["defense"]) == {"none", "at"}
    assert (df["n"] == 12).all()
    clean = df[df.scenario == "clean"].set_index("model_id")["accuracy"]
    for _, r in df[df.scenario != "clean"].iterrows():
        assert r["accuracy"] <= clean[r["model_id"]] + 1e-12  # an attack never helps
    run = store.latest_runs()["tiny"]
    assert (run["status"] == "complete" and run["git_commit"] is not None) or run["git_commit"] is None
    assert len(store.models()) == 2


def test_rerun_skips_everything(tiny_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("run", str(TINY_PROTOCOL), "--store", str(tiny_run), "--progress", "quiet") == 0
    out = capsys.readouterr().out
    assert "0 cell(s) written, 8 already stored" in out and "0 model(s) trained" in out
    assert ResultsStore(tiny_run).count() == 8


def test_dry_run_shows_plan_and_store_state(tiny_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("run", str(TINY_PROTOCOL), "--store", str(tiny_run), "--dry-run",
                   "--set", "attacks.pgd.steps=3") == 0
    out = capsys.readouterr().out
    assert "2 model(s): 0 to train, 2 cached" in out
    assert "8 cell(s): 2 in the store, 6 to evaluate" in out  # clean cells are shared, attacked ones change


@pytest.mark.parametrize("fmt, marker", [("markdown", "| None |"), ("html", "<table class=\"results\">"),
                                         ("latex", r"\toprule"), ("csv", "protocol,table,dataset")])
def test_report_formats(tiny_run: Path, tmp_path: Path, fmt: str, marker: str) -> None:
    out = tmp_path / f"report.{fmt}"
    assert run_cli("report", "--store", str(tiny_run), "--format", fmt, "--out", str(out)) == 0
    text = out.read_text()
    assert marker in text
    assert "AT-RS" in text


def test_markdown_report_layout(tiny_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("report", "--store", str(tiny_run)) == 0
    text = capsys.readouterr().out
    header = next(line for line in text.splitlines() if line.startswith("| Defense"))
    assert header == "| Defense (synthetic) | Clean | XR | XS | XRS | Avg | RI |"
    rows = [line for line in text.splitlines() if line.startswith("| None") or line.startswith("| AT-RS")]
    assert len(rows) == 2
    assert rows[0].endswith("| 0.00 |") or rows[0].endswith("| **0.00** |")  # RI of the baseline
    assert "**" in text  # best per column in bold
    store = ResultsStore(tiny_run)
    none_clean = store.dataframe().query("defense == 'none' and scenario == 'clean'")["accuracy"].iloc[0]
    assert f"{100 * none_clean:.2f}" in rows[0]


def test_report_unknown_protocol_is_clear(tiny_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("report", "--store", str(tiny_run), "--protocol", "nope") == 2
    assert "no run of protocol(s) nope" in capsys.readouterr().err


def test_list_and_validate(capsys: pytest.CaptureFixture[str]) -> None:
    for kind in ("defenses", "attacks", "datasets", "backbones", "protocols"):
        assert run_cli("list", kind) == 0
    out = capsys.readouterr().out
    for name in ("none", "at", "pgd", "fgsm", "cw", "synthetic", "i3d", "hcn", "quickstart"):
        assert name in out
    assert run_cli("validate", str(TINY_PROTOCOL)) == 0
    assert "2 model(s) to train, 8 cell(s)" in capsys.readouterr().out


def test_bad_protocol_exits_2_with_file_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"include: {TINY_PROTOCOL}\nname: bad\ntraining: {{epochs: many}}\n")
    assert run_cli("validate", str(bad)) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "training.epochs" in err and "many" in err and "an integer" in err
    assert run_cli("run", str(tmp_path / "missing.yaml")) == 2
    assert "allowed: an existing YAML file or a bundled protocol" in capsys.readouterr().err


def test_plugin_defense_from_outside_the_package(tmp_path: Path) -> None:
    """A defense written against the public API in a temp dir runs through `robench run`.

    It uses every hook AMR-like defenses need: it inserts a module between backbone stages
    (prepare), trains on the protocol's training attack (ctx.adversarial) and reports a fact about
    the trained model (summary), which lands in the results store.
    """
    (tmp_path / "my_defense.py").write_text(textwrap.dedent('''
        from dataclasses import dataclass
        import torch
        import torch.nn.functional as F
        from torch import nn
        from robench import Defense, LossOutput, register_defense

        class Gate(nn.Module):
            def __init__(self):
                super().__init__()
                self.gain = nn.Parameter(torch.ones(()))
            def forward(self, x):
                return x * self.gain

        @register_defense("gated_at_cli_test")
        @dataclass
        class GatedAT(Defense):
            """Skeleton adversarial training with a learned gain after HCN conv5 (test plugin)."""
            sigma: float = 0.01
            uses_training_attack = True

            def prepare(self, model):
                model.backbones["skeleton"].insert("conv5", Gate())

            def loss(self, model, inputs, labels, ctx):
                adv = ctx.adversarial(model, inputs, labels, ["skeleton"])
                logits = model(adv)
                return LossOutput(F.cross_entropy(logits, labels), logits, {"sigma": self.sigma})

            def summary(self, model):
                return {"gain": float(model.backbones["skeleton"].taps["conv5"].gain.detach())}
    '''))
    protocol = tmp_path / "plugin.yaml"
    protocol.write_text(textwrap.dedent(f'''
        include: {TINY_PROTOCOL}
        name: plugin
        plugins: [my_defense.py]
        defenses:
          gated: {{type: gated_at_cli_test, label: Gated AT, sigma: 0.02}}
        training: {{epochs: 1}}
        scenarios: [clean, S]
        tables: [{{attack: pgd, rows: [gated], columns: [clean, S], baseline: null}}]
    '''))
    store = tmp_path / "r.sqlite"
    assert run_cli("run", str(protocol), "--store", str(store), "--progress", "quiet") == 0
    results = ResultsStore(store)
    df = results.dataframe()
    gated = df[df.defense == "gated_at_cli_test"]
    assert len(gated) == 2 and gated.iloc[0]["defense_params"] == {"sigma": 0.02}
    summary = results.models()[gated.iloc[0]["model_id"]]["summary"]
    assert summary["gain"] != 1.0  # trained


def test_paper_defenses_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """MinSim, ExFMem, MinSim+ExFMem and AMR train, store their summaries and are attacked end to end;
    ExFMem reuses the undefended model and MinSim+ExFMem the MinSim model (trained once each)."""
    protocol = tmp_path / "defenses.yaml"
    protocol.write_text(textwrap.dedent(f'''
        include: {TINY_PROTOCOL}
        name: tiny-defenses
        defenses:
          minsim: {{type: minsim, label: MinSim}}
          exfmem: {{type: exfmem, label: ExFMem, bank_size: 16, finetune_epochs: 1}}
          minsim_exfmem: {{type: minsim_exfmem, label: MinSim+ExFMem, bank_size: 16, finetune_epochs: 1}}
          amr: {{type: amr, label: AMR, count: 2}}
        training: {{epochs: 1}}
    '''))
    store = tmp_path / "r.sqlite"
    assert run_cli("run", str(protocol), "--store", str(store), "--dry-run") == 0
    plan_text = capsys.readouterr().out
    assert "6 model(s): 6 to train" in plan_text and "(from " in plan_text
    assert run_cli("run", str(protocol), "--store", str(store), "--progress", "quiet") == 0
    out = capsys.readouterr().out
    assert "6 model(s) trained" in out and "24 cell(s) written" in out
    results = ResultsStore(store)
    models = results.models()
    by_type = {m["spec"]["defense"]["type"]: m for m in models.values()}
    assert by_type["exfmem"]["spec"]["base"] == next(k for k, m in models.items()
                                                     if m["spec"]["defense"]["type"] == "none")
    assert by_type["minsim_exfmem"]["spec"]["base"] == next(k for k, m in models.items()
                                                           if m["spec"]["defense"]["type"] == "minsim")
    banks = by_type["exfmem"]["summary"]["exfmem"]
    assert banks["rgb"]["bank_size"] == 16 and banks["skeleton"]["mean_iterations"] >= 1
    amr = by_type["amr"]["summary"]["amr"]
    assert [a["rgb_stage"] for a in amr] == ["Mixed_5c", "Mixed_5b"] and len(amr[0]["channel_means_skeleton"]) > 0
    assert by_type["amr"]["history"][0]["loss_aux"] > 0
    assert run_cli("report", "--store", str(store)) == 0
    assert "MinSim+ExFMem" in capsys.readouterr().out


def _results(store: Path) -> dict[str, tuple[float, list[bool]]]:
    return {cid: (c["accuracy"], unpack_bits(c["per_sample"], c["n"]).tolist())
            for cid, c in ResultsStore(store).cells().items()}


def _weights(cache: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {p.parent.name: torch.load(p, weights_only=True) for p in (cache / "models").glob("*/model.pt")}


def test_killed_run_resumes_to_identical_results(tmp_path: Path) -> None:
    """Kill -9 mid-run, run again: same cells, same per-sample outcomes, same weights, no duplicates."""
    slow = ["--set", "training.epochs=4", "--threads", "2"]  # one thread count for both runs: the same bits
    ref_store = tmp_path / "ref" / "r.sqlite"
    assert run_cli("run", str(TINY_PROTOCOL), "--store", str(ref_store), "--progress", "quiet", *slow) == 0
    assert torch.get_num_threads() == 1, "an in-process run with --threads 2 left its thread count behind"

    store = tmp_path / "killed" / "r.sqlite"
    cmd = [sys.executable, "-m", "robench", "run", str(TINY_PROTOCOL), "--store", str(store), "--progress", "quiet",
           *slow]
    proc = subprocess.Popen(cmd, env={**os.environ, "ROBENCH_DEVICE": "cpu"})
    partial = list((tmp_path / "killed" / "cache" / "models").glob("*/partial.pt"))
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:  # kill inside the second model's training
        models = list((tmp_path / "killed" / "cache" / "models").glob("*/model.pt"))
        partial = list((tmp_path / "killed" / "cache" / "models").glob("*/partial.pt"))
        if models and partial:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_cells = ResultsStore(store).count()
    assert killed_cells < 8

    assert run_cli("run", str(TINY_PROTOCOL), "--store", str(store), "--progress", "quiet", *slow) == 0
    assert ResultsStore(store).count() == 8
    assert _results(store) == _results(ref_store)
    ref_w, w = _weights(tmp_path / "ref" / "cache"), _weights(tmp_path / "killed" / "cache")
    assert ref_w.keys() == w.keys()
    for mid in ref_w:
        assert all(torch.equal(ref_w[mid][k], w[mid][k]) for k in ref_w[mid]), f"model {mid} differs after resume"


# -- robench store merge ------------------------------------------------------------------------------

def _shard(src: Path, dst: Path, keep: Callable[[int], bool]) -> Path:
    """A copy of ``src`` holding only the cells whose position (in cell-id order) ``keep`` accepts."""
    import shutil
    import sqlite3

    shutil.copy(src, dst)
    con = sqlite3.connect(dst)
    ids = [r[0] for r in con.execute("SELECT cell_id FROM results ORDER BY cell_id")]
    con.executemany("DELETE FROM results WHERE cell_id=?", [(c,) for i, c in enumerate(ids) if not keep(i)])
    con.commit()
    con.close()
    return dst


def test_store_merge_joins_shards_once_and_refuses_conflicts(tiny_run: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Two shards of one run merge into the store the run wrote (same cells, bit for bit, same report);
    merging again adds nothing; a cell with another result is refused and nothing is written."""
    import sqlite3

    a = _shard(tiny_run, tmp_path / "a.sqlite", lambda i: i % 2 == 0)
    b = _shard(tiny_run, tmp_path / "b.sqlite", lambda i: i % 2 == 1)
    into = tmp_path / "merged.sqlite"
    assert run_cli("store", "merge", str(a), str(b), "--into", str(into)) == 0
    whole, merged = ResultsStore(tiny_run).cells(), ResultsStore(into).cells()
    assert set(merged) == set(whole) and len(merged) == 8
    for cid, row in whole.items():
        assert (merged[cid]["correct"], merged[cid]["per_sample"]) == (row["correct"], row["per_sample"])
    runs = ResultsStore(tiny_run).runs()
    assert len(ResultsStore(into).models()) == 2 and len(ResultsStore(into).runs()) == len(runs)  # each run once
    capsys.readouterr()
    assert run_cli("store", "merge", str(a), str(b), "--into", str(into)) == 0
    assert "0 cell(s), 0 model(s) and 0 run(s) added" in capsys.readouterr().out
    reports = []
    for store in (tiny_run, into):
        assert run_cli("report", "--store", str(store), "--format", "markdown") == 0
        reports.append(capsys.readouterr().out.replace(str(store), "STORE"))
    assert reports[0] == reports[1] and "AT-RS" in reports[0]
    # a conflicting shard: the same cell, another result
    bad = _shard(tiny_run, tmp_path / "bad.sqlite", lambda i: True)
    con = sqlite3.connect(bad)
    con.execute("UPDATE results SET correct = correct + 1, per_sample = NULL WHERE scenario = 'RS'")
    con.commit()
    con.close()
    before = into.read_bytes()
    assert run_cli("store", "merge", str(bad), "--into", str(into)) == 2
    err = capsys.readouterr().err
    assert "conflict" in err and "nothing written" in err and "Traceback" not in err
    assert into.read_bytes() == before
    assert run_cli("store", "merge", str(into), "--into", str(into)) == 2
    assert "also the target" in capsys.readouterr().err
