"""Bad input, through the command line: every mistake gets one clear error and exit status 2.

Each case below is one thing a user can get wrong (a file, a key, a value, a store, a weights file,
a prepared dataset). For each, ``robench.cli.main`` must return 2 and print one
``robench: error: ...`` line naming the file (or ``--set``, or the store) and the key or the thing
that is wrong, with no traceback; a results store passed with ``--store`` must be byte for byte
what it was; and nothing in a file robench reads may run code (YAML tags, pickles). Protocol cases
run through both ``robench validate`` and ``robench run --dry-run``; a few run in a real subprocess.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shlex
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO, TINY_PROTOCOL, store_with_schema
from robench.cli import main
from robench.data.ntu import NTU60
from robench.data.prepare.writer import READERS, ClipSource, Settings, prepare_folder
from robench.store import ResultsStore

# -- helpers ---------------------------------------------------------------------------------------


def protocol(tmp: Path, body: str, name: str = "bad.yaml") -> Path:
    """A protocol that includes the tiny one and changes ``body`` (YAML text)."""
    path = tmp / name
    path.write_text(f"include: {TINY_PROTOCOL}\nname: bad\n" + textwrap.dedent(body))
    return path


def write(tmp: Path, name: str, data: str | bytes) -> Path:
    path = tmp / name
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


class RunsCode:
    """Pickles to a call of os.system that creates ``marker``: loading it must not run it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """"Billion laughs": each anchor is a list of ``width`` aliases of the one before (width**levels values)."""
    lines = ["lol0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"lol{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def newer_store(tmp: Path) -> Path:
    return store_with_schema(tmp / "newer.sqlite", 99)


def foreign_store(tmp: Path) -> Path:
    path = tmp / "other-program.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    con.execute("INSERT INTO notes (text) VALUES ('not robench')")
    con.commit()
    con.close()
    return path


# -- prepared data: a small, sound NTU-60 folder written without decoding any video ---------------

PREPARED = Settings(frames_rgb=4, resolution=32, frames_skeleton=16, crop="center", shard_size=3)
PREPARED_CLIPS = ["S001C001P001R001A001", "S001C002P001R001A002", "S001C001P003R001A003", "S001C002P003R001A001",
                  "S002C001P001R002A002", "S002C001P003R002A003"]


def _arrays(args: dict, settings: Settings) -> tuple[np.ndarray, np.ndarray, dict]:
    g = np.random.default_rng(args["seed"])
    skeleton = g.normal(0, 0.3, size=(3, settings.frames_skeleton, 25, settings.persons)).astype(np.float32)
    rgb = g.integers(0, 256, size=(3, settings.frames_rgb, settings.resolution, settings.resolution), dtype=np.uint8)
    return skeleton, rgb, {"frames": 20, "bodies": 1}


READERS["bad_input_arrays"] = _arrays


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sound prepared ntu60 folder (6 clips, two RGB shards); cases copy it and damage the copy."""
    out = tmp_path_factory.mktemp("prepared") / "ntu60"
    clips = [ClipSource(name, int(name[-3:]) - 1, "bad_input_arrays", {"seed": i},
                        {k: int(name[1 + 4 * j: 4 + 4 * j]) for j, k in enumerate(("setup", "camera", "subject",
                                                                                     "replication"))})
             for i, name in enumerate(PREPARED_CLIPS)]
    summary = prepare_folder(out, "ntu60", ["a"] * 60, clips, PREPARED)
    assert summary.written == 6 and not summary.failed
    NTU60(root=str(out), frames_rgb=4, resolution=32, frames_skeleton=16).check_available()  # sound as written
    return out


def prepared_copy(tmp: Path, source: Path, damage: Callable[[Path], None]) -> list[str]:
    folder = tmp / "ntu60"
    folder.mkdir()
    for f in source.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    damage(folder)
    path = write(tmp, "real.yaml", textwrap.dedent(f"""
        name: prepared
        dataset: {{name: ntu60, root: {folder}, frames_rgb: 4, resolution: 32, frames_skeleton: 16}}
        model:
          rgb: {{backbone: i3d, width: 0.0625}}
          skeleton: {{backbone: hcn, width: 0.125, window: 16}}
        training: {{epochs: 1, batch_size: 2}}
        defenses: {{none: {{label: None}}}}
        scenarios: [clean]
    """))
    return ["run", str(path), "--store", str(tmp / "store" / "r.sqlite"), "--progress", "quiet"]


def cut(name: str, keep: float) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: int(len(data) * keep)])
    return damage


# -- the cases -------------------------------------------------------------------------------------


@dataclass
class Case:
    """``make(tmp)`` writes what the case needs and returns the argv; ``expect`` must all be in stderr
    (``{tmp}`` stands for the case's folder). ``command`` None: ``make`` returns a protocol argv that
    runs through both ``validate`` and ``run --dry-run``; else ``make`` returns the whole argv."""

    id: str
    make: Callable[[Path], list[str]]
    expect: tuple[str, ...]
    command: str | None = None
    marker: bool = False  # a file ``{tmp}/PWNED`` must not exist afterwards
    fixture: str | None = None  # the name of a fixture ``make`` takes as second argument


def P(id: str, body: str, *expect: str, **kw: object) -> Case:  # a protocol file changing ``body``
    return Case(id, lambda tmp: [str(protocol(tmp, body))], ("{tmp}/bad.yaml", *expect), **kw)


def S(id: str, override: str, *expect: str) -> Case:  # one --set override of the tiny protocol
    return Case(id, lambda tmp: [str(TINY_PROTOCOL), "--set", override], ("--set", *expect))


def F(id: str, data: str | bytes, *expect: str, name: str = "p.yaml", **kw: object) -> Case:  # a file holding ``data``
    return Case(id, lambda tmp: [str(write(tmp, name, data))], (f"{{tmp}}/{name}", *expect), **kw)


def _include_cycle(tmp: Path) -> list[str]:
    write(tmp, "a.yaml", "include: b.yaml\nname: a\n")
    write(tmp, "b.yaml", "include: a.yaml\nname: b\n")
    return [str(tmp / "a.yaml")]


def _include_directory(tmp: Path) -> list[str]:
    (tmp / "sub").mkdir()
    return [str(write(tmp, "child.yaml", "include: sub\nname: c\n"))]


def _plugin(source: str | None) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        if source is not None:
            write(tmp, "my_plugin.py", source)
        return [str(protocol(tmp, "plugins: [my_plugin.py]\n"))]
    return make


def _checkpoint(save: Callable[[Path], None]) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        weights = tmp / "weights.pt"
        save(weights)
        return [str(protocol(tmp, f"model: {{rgb: {{backbone: i3d, width: 0.0625, checkpoint: {weights}}}}}\n"))]
    return make


def _store_run(make_store: Callable[[Path], Path]) -> Callable[[Path], list[str]]:
    return lambda tmp: ["run", str(TINY_PROTOCOL), "--dry-run", "--store", str(make_store(tmp))]


def _store_report(make_store: Callable[[Path], Path], *extra: str) -> Callable[[Path], list[str]]:
    return lambda tmp: ["report", "--store", str(make_store(tmp)), *extra]


def _empty_store(tmp: Path) -> Path:
    ResultsStore(tmp / "store" / "r.sqlite")
    return tmp / "store" / "r.sqlite"


def _pyskl_pickle(tmp: Path) -> list[str]:
    (tmp / "videos").mkdir()
    with open(tmp / "annotations.pkl", "wb") as fh:
        pickle.dump({"annotations": [{"frame_dir": "S001C001P001R001A001", "label": RunsCode(tmp / "PWNED")}]}, fh)
    return ["prepare", "pyskl", "--pickle", str(tmp / "annotations.pkl"), "--videos", str(tmp / "videos"),
            "--out", str(tmp / "out")]


TAG_OBJECT = 'name: !!python/object/apply:os.system ["touch {tmp}/PWNED"]\n'

CASES: list[Case] = [
    # -- the protocol file ------------------------------------------------------------------------
    F("yaml_syntax_error", "name: x\ntraining: {epochs: 2\n", "YAML syntax at line 3", "allowed: valid YAML"),
    F("binary_file_not_utf8", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe" + bytes(range(256)), "not UTF-8 text",
      "byte 0x89 at offset 0"),
    F("nul_bytes_in_text", "name: x\x00\nseeds: [0]\n", "#x0000", "printable YAML text"),
    F("empty_file", "", "(top level)", "an empty document", "a mapping of protocol keys"),
    F("comments_only", "# nothing here yet\n", "an empty document"),
    F("top_level_list", "- name: x\n- seeds: [0]\n", "(top level)", "list [{'name': 'x'}",
      "a mapping of protocol keys"),
    F("top_level_scalar", "42\n", "(top level)", "found 'int 42'", "a mapping of protocol keys"),
    F("two_yaml_documents", "name: a\n---\nname: b\n", "YAML syntax", "expected a single document"),
    Case("directory_not_file", lambda tmp: [str(_mkdir(tmp / "protocols.yaml"))],
         ("{tmp}/protocols.yaml", "a directory", "a YAML protocol file")),
    Case("file_does_not_exist", lambda tmp: [str(tmp / "missing.yaml")],
         ("missing.yaml", "key 'protocol'", "an existing YAML file or a bundled protocol", "quickstart")),
    Case("include_missing_file", lambda tmp: [str(write(tmp, "child.yaml", "include: nothere.yaml\nname: c\n"))],
         ("{tmp}/child.yaml: key 'include'", "nothere.yaml", "an existing YAML file", "no file {tmp}/nothere.yaml")),
    Case("include_cycle", _include_cycle, ("key 'include'", "{tmp}/a.yaml -> {tmp}/b.yaml -> {tmp}/a.yaml",
                                           "an include chain without cycles")),
    F("include_not_a_string", "include: 3\nname: x\n", "key 'include'", "found 3", "a file name or a list"),
    Case("include_a_directory", _include_directory, ("{tmp}/child.yaml: key 'include'", "{tmp}/sub (a directory)")),
    Case("yaml_tag_python_object_apply", lambda tmp: [str(write(tmp, "p.yaml", TAG_OBJECT.replace("{tmp}", str(tmp))))],
         ("{tmp}/p.yaml", "YAML tag at line 1", "!!python/object/apply:os.system", "plain YAML values"), marker=True),
    F("yaml_tag_python_name", "name: !!python/name:os.system\n", "!!python/name:os.system", "plain YAML values"),
    F("yaml_alias_bomb", alias_bomb(), "(YAML anchors and aliases)", "more than 100000 values", "include:"),
    F("yaml_recursive_alias", "name: x\ndescription: &d [a, *d]\n", "recursive alias at line 2"),
    F("duplicate_top_level_key", f"include: {TINY_PROTOCOL}\nname: x\nseeds: [0]\nseeds: [1]\n",
      "key 'seeds'", "second time at line 4 (first at line 3)", "each key once"),
    F("duplicate_nested_key", f"include: {TINY_PROTOCOL}\nname: x\ntraining:\n  epochs: 1\n  lr: 0.1\n  epochs: 3\n",
      "key 'training.epochs'", "second time at line 6 (first at line 4)"),
    # -- keys and types -----------------------------------------------------------------------------
    P("unknown_top_level_key", "trainig: {epochs: 2}\n", "key 'trainig'", "did you mean 'training'?"),
    P("misspelt_training_key", "training: {epoch: 2}\n", "key 'training.epoch'", "did you mean 'epochs'"),
    S("epochs_is_a_string", "training.epochs=ten", "key 'training.epochs'", "'ten'", "an integer"),
    S("lr_is_a_list", "training.lr=[0.1, 0.2]", "key 'training.lr'", "a finite number"),
    S("epochs_is_a_bool", "training.epochs=true", "key 'training.epochs'", "True", "an integer"),
    S("seed_past_64_bits", "seeds=[18446744073709551616]", "key 'seeds'", "2^63-1"),
    S("evaluation_seed_past_64_bits", "evaluation.seed=18446744073709551616", "key 'evaluation.seed'", "2^63-1"),
    S("training_eps_infinite", "training.attack.eps=.inf", "key 'training.attack.eps'", "a finite number"),
    S("step_size_infinite", "attacks.pgd.step_size=.inf", "key 'attacks.pgd.step_size'", "a finite number"),
    S("step_size_nan", "attacks.pgd.step_size=.nan", "key 'attacks.pgd.step_size'", "a finite number"),
    S("step_size_zero", "attacks.pgd.step_size=0", "key 'attacks.pgd.step_size'", "must be > 0"),
    S("eps_infinite", "eps=[.inf]", "key 'eps.0'", "a finite number"),
    P("unknown_defense_type", "defenses: {at_rs: {type: adversarial}}\n", "key 'defenses.at_rs.type'",
      "a registered defense: amr, at"),
    S("unknown_attack_type", "attacks.pgd.type=pgdd", "key 'attacks.pgd.type'", "a registered attack",
      "did you mean 'pgd'"),
    P("unknown_dataset", "dataset: {name: kinetics400}\n", "key 'dataset.name'", "a registered dataset", "ntu60"),
    S("unknown_backbone", "model.rgb.backbone=resnet50", "key 'model.rgb.backbone'", "a registered backbone: hcn, i3d"),
    S("backbone_for_wrong_modality", "model.skeleton.backbone=i3d", "key 'model.skeleton.backbone'",
      "a skeleton backbone (this one reads rgb)"),
    S("unknown_scenario", "scenarios=[clean, XR]", "key 'scenarios.1'", "'XR'", "a list drawn from clean, R, S, RS"),
    S("empty_scenarios", "scenarios=[]", "key 'scenarios'", "a list drawn from clean, R, S, RS"),
    P("table_unknown_attack", "tables: [{attack: fgsm}]\n", "key 'tables.0.attack'", "an attack id of this protocol"),
    P("table_unknown_row", "tables: [{attack: pgd, rows: [none, amr]}]\n", "key 'tables.0.rows.1'",
      "a defense id of this protocol: none, at_rs"),
    Case("profile_does_not_exist", lambda tmp: [str(TINY_PROTOCOL), "--profile", "gpu"],
         ("tiny.yaml", "key 'profiles'", "'gpu'", "a profile this protocol defines")),
    S("set_without_equals", "training.epochs", "key 'training.epochs'", "KEY.PATH=VALUE"),
    Case("set_into_null_section",
         lambda tmp: [str(protocol(tmp, "threat: null\n")), "--set", "threat.skeleton.scale=2"],
         ("--set", "key 'threat'", "a mapping to set a sub-key in", "null")),
    S("set_value_with_python_tag", "name=!!python/object/apply:os.system [true]", "key 'name'",
      "!!python/object/apply:os.system", "plain YAML values"),
    S("set_value_with_duplicate_key", "training={epochs: 1, epochs: 2}", "key 'training.epochs'", "each key once"),
    Case("plugin_file_missing", _plugin(None), ("{tmp}/bad.yaml", "key 'plugins.0'", "my_plugin.py", "a Python file")),
    Case("plugin_raises_on_import", _plugin("raise RuntimeError('needs a GPU driver')\n"),
         ("{tmp}/my_plugin.py", "failed to import", "RuntimeError: needs a GPU driver")),
    Case("plugin_syntax_error", _plugin("def broken(:\n    pass\n"),
         ("{tmp}/my_plugin.py", "failed to import", "SyntaxError")),
    # -- ranges -------------------------------------------------------------------------------------
    S("eps_negative", "eps=[-8/255]", "key 'eps.0'", "a number >= 0"),
    S("eps_not_a_number", "eps=[eight]", "key 'eps.0'", "'eight'", "a number or a fraction like 8/255"),
    S("eps_nan", "eps=[.nan]", "key 'eps.0'", "a finite number >= 0"),
    P("step_size_negative", "attacks: {pgd: {step_size: -2/255}}\n", "key 'attacks.pgd.step_size'", ">= 0"),
    S("step_size_not_a_number", "attacks.pgd.step_size=big", "key 'attacks.pgd.step_size'", "a finite number"),
    S("attack_steps_zero", "attacks.pgd.steps=0", "key 'attacks.pgd.steps'", "steps must be >= 1"),
    S("attack_steps_negative", "attacks.pgd.steps=-5", "key 'attacks.pgd.steps'", "steps must be >= 1"),
    S("restarts_negative", "attacks.pgd.restarts=-1", "key 'attacks.pgd.restarts'", "restarts must be >= 1"),
    S("training_attack_steps_zero", "training.attack.steps=0", "key 'training.attack.steps'", "steps must be >= 1"),
    S("dataset_classes_zero", "dataset.classes=0", "key 'dataset.classes'", "1..16"),
    S("training_attack_eps_negative", "training.attack.eps=-0.1", "key 'training.attack.eps'", "a number >= 0"),
    S("epochs_zero", "training.epochs=0", "key 'training.epochs'", "an integer >= 1"),
    S("batch_size_negative", "training.batch_size=-4", "key 'training.batch_size'", "an integer >= 1"),
    S("lr_nan", "training.lr=.nan", "key 'training.lr'", "a finite number"),
    S("grad_clip_negative", "training.grad_clip=-1", "key 'training.grad_clip'", "a finite number > 0"),
    S("max_samples_zero", "evaluation.max_samples=0", "key 'evaluation.max_samples'", "null or an integer >= 1"),
    S("evaluation_batch_size_zero", "evaluation.batch_size=0", "key 'evaluation.batch_size'", "an integer >= 1"),
    S("seeds_negative", "seeds=[0, -1]", "key 'seeds'", "distinct integers in 0..2^63-1"),
    S("seeds_duplicate", "seeds=[1, 1]", "key 'seeds'", "distinct integers"),
    S("threat_bounds_low_above_high", "threat.rgb.bounds=[1, 0]", "key 'threat.rgb.bounds'",
      "null or [low, high] with low < high"),
    S("threat_scale_negative", "threat.skeleton.scale=-1", "key 'threat.skeleton.scale'", "a number >= 0"),
    # -- the results store --------------------------------------------------------------------------
    Case("store_random_bytes", _store_run(lambda tmp: write(tmp, "r.sqlite", os.urandom(4096))),
         ("{tmp}/r.sqlite", "not an SQLite database", "leaves it as it is"), command="run"),
    Case("store_random_bytes_report", _store_report(lambda tmp: write(tmp, "r.sqlite", b"\x00garbage" * 512)),
         ("{tmp}/r.sqlite", "not an SQLite database"), command="report"),
    Case("store_truncated_sqlite",
         _store_run(lambda tmp: write(tmp, "r.sqlite", b"SQLite format 3\x00" + os.urandom(200))),
         ("{tmp}/r.sqlite", "cannot open results store", "damaged"), command="run"),
    Case("store_is_a_directory", _store_run(lambda tmp: _mkdir(tmp / "results")),
         ("{tmp}/results", "is a directory", "{tmp}/results/robench.sqlite"), command="run"),
    Case("store_folder_is_a_file", _store_run(lambda tmp: write(tmp, "results", "x") / "r.sqlite"),
         ("{tmp}/results/r.sqlite", "cannot create the folder"), command="run"),
    Case("store_of_another_program", _store_run(foreign_store),
         ("{tmp}/other-program.sqlite", "not a robench results store", "notes"), command="run"),
    Case("store_newer_schema_run", _store_run(newer_store), ("{tmp}/newer.sqlite", "schema 99", "newer"),
         command="run"),
    Case("store_newer_schema_report", _store_report(newer_store), ("{tmp}/newer.sqlite", "schema 99"),
         command="report"),
    Case("report_store_without_runs", _store_report(_empty_store), ("{tmp}/store/r.sqlite", "holds no runs yet",
                                                                     "robench run"), command="report"),
    Case("report_unknown_protocol", _store_report(_empty_store, "--protocol", "tabel2"),
         ("no run of protocol(s) tabel2", "{tmp}/store/r.sqlite"), command="report"),
    Case("report_out_is_a_directory", lambda tmp: ["report", "--store", str(_empty_store(tmp)), "--out", str(tmp)],
         ("report --out {tmp}", "is a directory"), command="report"),
    Case("run_threads_zero", lambda tmp: ["run", str(TINY_PROTOCOL), "--threads", "0", "--store",
                                          str(_empty_store(tmp))], ("--threads 0", "an integer >= 1"), command="run"),
    Case("run_workers_negative", lambda tmp: ["run", str(TINY_PROTOCOL), "--workers", "-2", "--store",
                                              str(_empty_store(tmp))], ("--workers -2", "an integer >= 0"),
         command="run"),
    Case("cache_is_a_file", lambda tmp: ["run", str(TINY_PROTOCOL), "--dry-run",
                                         "--cache", str(write(tmp, "cache", "x")),
                                         "--store", str(_empty_store(tmp))], ("{tmp}/cache", "not a folder"),
         command="run"),
    # -- robench prepare ----------------------------------------------------------------------------
    Case("prepare_shard_size_zero", lambda tmp: ["prepare", "ntu60", "--root", str(tmp), "--out", str(tmp / "out"),
                                                 "--shard-size", "0"], ("--shard-size 0", "an integer >= 1"),
         command="prepare"),
    Case("prepare_root_missing", lambda tmp: ["prepare", "ntu60", "--root", str(tmp / "raw"), "--out", str(tmp / "o")],
         ("--root {tmp}/raw does not exist",), command="prepare"),
    # -- backbone weights files ---------------------------------------------------------------------
    Case("checkpoint_random_bytes", _checkpoint(lambda p: p.write_bytes(os.urandom(3000))),
         ("{tmp}/bad.yaml", "key 'model.rgb.checkpoint'", "cannot read checkpoint {tmp}/weights.pt",
          "weights_only=True")),
    Case("checkpoint_truncated", _checkpoint(lambda p: p.write_bytes(_torch_bytes({"w": torch.ones(64)})[:300])),
         ("key 'model.rgb.checkpoint'", "cannot read checkpoint {tmp}/weights.pt")),
    Case("checkpoint_of_unrelated_tensors",
         _checkpoint(lambda p: torch.save({"embedding.weight": torch.zeros(5, 3)}, p)),
         ("key 'model.rgb.checkpoint'", "{tmp}/weights.pt does not fit I3D", "1 unexpected (stages.embedding.weight)")),
    Case("checkpoint_not_tensors", _checkpoint(lambda p: torch.save({"epoch": 3, "lr": 0.1}, p)),
         ("key 'model.rgb.checkpoint'", "holds no state dict of tensors", "torch.save(model.state_dict()")),
    Case("checkpoint_pickle_runs_code",
         _checkpoint(lambda p: torch.save({"state_dict": {"w": RunsCode(p.parent / "PWNED")}}, p)),
         ("key 'model.rgb.checkpoint'", "cannot read checkpoint {tmp}/weights.pt", "posix.system",
          "never pickled code"), marker=True),
    Case("checkpoint_unknown_builtin",
         lambda tmp: [str(protocol(tmp, "model: {rgb: {backbone: i3d, width: 0.0625, "
                                        "checkpoint: builtin:i3d-kinetics}}\n"))],
         ("key 'model.rgb.checkpoint'", "builtin:i3d-kinetics", "builtin:i3d-synthetic")),
    Case("prepare_pyskl_pickle_runs_code", _pyskl_pickle,
         ("{tmp}/annotations.pkl", "posix.system", "not plain data"), command="prepare", marker=True),
    # -- prepared datasets (found before any training; the store is left alone) --------------------
    Case("prepared_rgb_shard_truncated", lambda tmp, src: prepared_copy(tmp, src, cut("rgb-00001.npy", 0.6)),
         ("{tmp}/ntu60", "rgb-00001.npy is cut short", "robench prepare ntu60"), command="run", fixture="prepared"),
    Case("prepared_skeleton_truncated", lambda tmp, src: prepared_copy(tmp, src, cut("skeleton.npy", 0.3)),
         ("{tmp}/ntu60", "skeleton.npy is cut short", "robench prepare ntu60"), command="run", fixture="prepared"),
    Case("prepared_skeleton_header_only", lambda tmp, src: prepared_copy(tmp, src, cut("skeleton.npy", 0.01)),
         ("{tmp}/ntu60", "skeleton.npy", "robench prepare ntu60"), command="run", fixture="prepared"),
    Case("prepared_manifest_corrupt_json",
         lambda tmp, src: prepared_copy(tmp, src, cut("robench-dataset.json", 0.5)),
         ("{tmp}/ntu60/robench-dataset.json", "cannot read", "robench prepare ntu60"), command="run",
         fixture="prepared"),
    Case("prepared_manifest_not_a_mapping",
         lambda tmp, src: prepared_copy(tmp, src, lambda f: (f / "robench-dataset.json").write_text("[1, 2]")),
         ("{tmp}/ntu60/robench-dataset.json", "not a robench dataset manifest", "robench prepare ntu60"),
         command="run", fixture="prepared"),
    Case("prepared_clips_csv_bad_row",
         lambda tmp, src: prepared_copy(tmp, src, lambda f: (f / "clips.csv").write_text(
             (f / "clips.csv").read_text().replace(",0\n", ",99\n", 1))),
         ("{tmp}/ntu60", "clips.csv line 2", "'99'", "robench prepare ntu60"), command="run", fixture="prepared"),
    Case("prepared_labels_missing",
         lambda tmp, src: prepared_copy(tmp, src, lambda f: (f / "labels.npy").unlink()),
         ("{tmp}/ntu60", "missing files labels.npy", "robench prepare ntu60"), command="run", fixture="prepared"),
]


def _torch_bytes(obj: object) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _run(argv: list[str], capsys: pytest.CaptureFixture[str], expect: tuple[str, ...], tmp: Path,
         store: Path | None) -> str:
    """main(argv) fails with one clear error naming what ``expect`` lists, and leaves ``store`` as it was."""
    before = digest(store) if store is not None else None
    capsys.readouterr()
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, f"exit {rc} for {argv}: {err}"
    assert err.startswith("robench: error: ") and err.count("robench: error:") == 1, err
    assert "Traceback" not in err, err
    for e in expect:
        assert e.replace("{tmp}", str(tmp)) in err, f"{e!r} not in: {err}"
    if store is not None:
        assert digest(store) == before, f"{store} changed"
    return err.splitlines()[0]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_error(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      request: pytest.FixtureRequest) -> None:
    args = case.make(tmp_path, request.getfixturevalue(case.fixture)) if case.fixture else case.make(tmp_path)
    if case.command is None:  # a protocol: validate, and run --dry-run against an existing store
        store = _empty_store(tmp_path)
        first = _run(["validate", *args], capsys, case.expect, tmp_path, None)
        again = _run(["run", *args, "--dry-run", "--store", str(store)], capsys, case.expect, tmp_path, store)
        assert again == first
    else:
        store = Path(args[args.index("--store") + 1]) if "--store" in args else None
        if store is not None and case.fixture:  # a store robench writes to when it runs: it must not here
            _empty_store(tmp_path)
        _run(args, capsys, case.expect, tmp_path, store)
    if case.marker:
        assert not (tmp_path / "PWNED").exists(), "loading a file ran code"


def test_alias_bomb_is_refused_quickly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "bomb.yaml", alias_bomb(levels=12))  # 9**12 values if expanded
    t0 = time.perf_counter()
    assert main(["validate", str(path)]) == 2
    assert time.perf_counter() - t0 < 2.0
    assert "anchors and aliases" in capsys.readouterr().err


def test_cases_are_many_and_distinct() -> None:
    assert len(CASES) >= 45 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("kind", ["binary_protocol", "store_of_another_program", "checkpoint_pickle_runs_code"])
def test_no_traceback_from_a_real_process(kind: str, tmp_path: Path) -> None:
    """The same errors through ``python -m robench.cli``: status 2, one line on stderr, no traceback."""
    if kind == "binary_protocol":
        argv, where = ["validate", str(write(tmp_path, "p.yaml", b"name: \xff\xfe\x00 binary"))], "p.yaml"
    elif kind == "store_of_another_program":
        store = foreign_store(tmp_path)
        before = digest(store)
        argv, where = ["report", "--store", str(store)], str(store)
    else:
        argv = _checkpoint(lambda p: torch.save({"w": RunsCode(p.parent / "PWNED")}, p))(tmp_path)
        argv, where = ["validate", *argv], "weights.pt"
    proc = subprocess.run([sys.executable, "-m", "robench.cli", *argv], capture_output=True, text=True, timeout=120,
                          cwd=REPO, env={**os.environ, "ROBENCH_DEVICE": "cpu"}, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("robench: error: "), proc.stderr
    assert where in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    if kind == "store_of_another_program":
        assert digest(store) == before
    assert not (tmp_path / "PWNED").exists()
