"""The code's own checks run with the test suite (and so in CI): ruff over the repository, mypy over robench/.

Both tools and their versions come from the ``test`` extra; their settings are in ``pyproject.toml``
(mypy: ``disallow_untyped_defs`` on ``robench/``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO


@pytest.mark.parametrize("tool, args", [("ruff", ["check", "."]), ("mypy", [])])
def test_tool_passes(tool: str, args: list[str]) -> None:
    exe = shutil.which(tool, path=str(Path(sys.executable).parent)) or shutil.which(tool)
    assert exe is not None, f"{tool} is not installed: pip install -e '.[test]'"
    done = subprocess.run([exe, *args], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{tool} {' '.join(args)} failed:\n{done.stdout[-6000:]}{done.stderr[-2000:]}"
