"""The package as users get it: the wheel and the sdist build, and the wheel works from anywhere.

The wheel is installed into a fresh virtual environment outside the repository, with no access to
the checkout: its dependencies (torch and the rest, several GB) come from this test environment's
site-packages through a path file, which Python reads as plain paths (the checkout's editable-install
hook in that folder is not run). Then, from an empty temporary folder, the installed ``robench``
runs a tiny protocol end to end, renders the report and a leaderboard, answers ``--help`` for its
cluster and data commands and ``--version``, and every module of the installed package imports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

from robench import __version__

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "tests" / "data" / "tiny.yaml"
pytestmark = pytest.mark.slow

IMPORT_ALL = """
import importlib, pkgutil, sys
import robench
assert robench.__file__.startswith(sys.prefix), robench.__file__
names = [m.name for m in pkgutil.walk_packages(robench.__path__, "robench.") if not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
print(len(names), "modules from", robench.__file__)
"""


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel and the sdist, built from a copy of the checkout (building writes build/ folders into its source)."""
    out = tmp_path_factory.mktemp("dist")
    source = tmp_path_factory.mktemp("source") / "robench"
    skip = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "results", "cache", "__pycache__",
                                  ".pytest_cache", "site")
    shutil.copytree(REPO, source, ignore=skip)
    done = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--wheel", "--sdist", "--outdir", str(out),
                           str(source)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "deprecat" not in (done.stdout + done.stderr).lower(), "the build warns of something deprecated"
    return out


@pytest.fixture(scope="module")
def venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment outside the repository with the wheel installed; returns its bin folder."""
    root = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=300)
    bin_dir = root / ("Scripts" if os.name == "nt" else "bin")
    site = subprocess.run([str(bin_dir / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # the dependencies, read from this environment's site-packages as a plain path (no .pth hooks run)
    (Path(site) / "_robench_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    (wheel,) = dist.glob("*.whl")
    done = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return bin_dir


def test_the_wheel_and_the_sdist_hold_the_package_and_its_data(dist: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    assert wheel.name == f"robench-{__version__}-py3-none-any.whl"
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("robench/cluster/slurm.py", "robench/attacks/apgd.py", "robench/defenses/amr.py",
                   "robench/protocols/quickstart.yaml", "robench/protocols/synthetic/defenses.yaml",
                   "robench/leaderboard/tracks/synthetic.yaml", "robench/report/templates/report.md.j2",
                   "robench/leaderboard/templates/board.html.j2", "robench/leaderboard/templates/board.js",
                   "robench/models/weights/i3d-synthetic.pt", "robench/models/weights/i3d-synthetic.json",
                   "robench/zoo/weights/synthetic/manifest.json", "robench/zoo/weights/synthetic/amr.safetensors"):
        assert needed in names, needed
    assert not [n for n in names if n.startswith(("tests/", "examples/", "benchmarks/", "docs/"))]
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "License-Expression: MIT" in text
    with tarfile.open(sdist) as tar:
        members = {m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name}
    assert {"pyproject.toml", "README.md", "robench/cli.py", "robench/protocols/table2.yaml"} <= members


def _robench(bin_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ROBENCH_STORE", "ROBENCH_CACHE")}
    env.update(OMP_NUM_THREADS="1", ROBENCH_DEVICE="cpu")
    return subprocess.run([str(bin_dir / "robench"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def test_the_installed_wheel_runs_from_any_folder(venv: Path, tmp_path: Path) -> None:
    work = tmp_path / "elsewhere"
    work.mkdir()
    shutil.copy(TINY, work / "tiny.yaml")
    version = _robench(venv, work, "--version")
    assert version.returncode == 0 and version.stdout.strip() == f"robench {__version__}", version
    run = _robench(venv, work, "run", "tiny.yaml", "--set", "training.epochs=1", "--progress", "plain")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (work / "results" / "robench.sqlite").is_file()
    report = _robench(venv, work, "report", "--format", "markdown")
    assert report.returncode == 0 and "| AT-RS |" in report.stdout, report.stderr[-2000:]
    board = _robench(venv, work, "leaderboard", "render", "--format", "markdown", "--track", "synthetic",
                     "--root", str(REPO / "leaderboard"), "--out", str(work / "board.md"))
    assert board.returncode == 0 and "AMR" in (work / "board.md").read_text(), board.stderr[-2000:]
    zoo = _robench(venv, work, "leaderboard", "get", "synthetic", "amr")  # the shipped weights, no network
    assert zoo.returncode == 0 and "(verified)" in zoo.stdout and str(venv.parent) in zoo.stdout, zoo.stderr[-2000:]
    for command in (("store", "merge", "--help"), ("slurm", "--help"), ("prepare", "--help"),
                    ("list", "protocols")):
        done = _robench(venv, work, *command)
        assert done.returncode == 0, (command, done.stderr[-2000:])
    assert "quickstart" in done.stdout and "table2" in done.stdout  # bundled protocols found from anywhere
    imports = subprocess.run([str(venv / "python"), "-c", IMPORT_ALL], cwd=work, capture_output=True, text=True,
                             timeout=600, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert imports.returncode == 0, imports.stderr[-3000:]
    assert str(venv.parent) in imports.stdout
