"""The documentation: the site builds without a warning, every number is its artefact's, every link resolves.

- ``mkdocs build --strict`` (MkDocs, Material, mkdocstrings): a broken link, a missing page or an API
  page whose docstring does not match its signature fails the build;
- every include block of the README and the pages equals its source, and no measured-looking number
  sits in prose outside one (``tools/sync_docs.py``);
- every relative link of the README and of the markdown files under ``docs/`` points at a file of
  the repository, and nothing in the repository cites a file outside it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))

import sync_docs  # noqa: E402  (a tool script beside the repository, not a package)


@pytest.mark.slow
def test_the_site_builds_strictly(tmp_path: Path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's notice about its successor, not a warning
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    pages = {p.relative_to(tmp_path / "site").as_posix() for p in (tmp_path / "site").rglob("index.html")}
    for page in ("index.html", "api/index.html", "attacks/index.html", "leaderboard/index.html",
                 "performance/index.html", "reproduction/index.html", "flags/index.html"):
        assert page in pages, page
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    for name in ("robench.api.evaluate", "robench.api.attack", "robench.api.dataset", "TwoInputs"):
        assert name in api, name


def test_every_number_in_the_readme_and_the_docs_is_its_artefacts() -> None:
    stale = [b.label for b in sync_docs.stale_blocks()]
    assert not stale, "blocks differ from their source (run python tools/sync_docs.py): " + "; ".join(stale)
    assert not sync_docs.prose_numbers(), "numbers typed in prose: " + "; ".join(sync_docs.prose_numbers())
    assert sum(len(sync_docs.blocks(p)) for p in sync_docs.pages()) >= 10


def test_the_number_checks_catch_a_stale_block_and_a_typed_number(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "art.md").write_text("# A\n\n| x | y |\n|---|---|\n| 1 | 94.38 |\nNote: n = 160\n\nafter\n")
    page = tmp_path / "docs" / "p.md"
    page.write_text("text\n<!-- include: art.md table 1 -->\n| x | y |\n|---|---|\n| 1 | 93.00 |\n"
                    "<!-- end include -->\nWe measured 12.50 and 40.5%.\n"
                    "`0.25` in code is fine, so are 2.14.1 and a 95% interval.\n")
    monkeypatch.setattr(sync_docs, "REPO", tmp_path)
    monkeypatch.setattr(sync_docs, "PAGES", ("docs/*.md",))
    assert [b.source for b in sync_docs.stale_blocks()] == ["art.md"]
    assert [p.split(":")[1] for p in sync_docs.prose_numbers()] == ["7"]
    assert sync_docs.sync() == 1 and not sync_docs.stale_blocks()
    assert "| 1 | 94.38 |\nNote: n = 160\n<!-- end include -->" in page.read_text()


LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_relative_links_resolve_and_nothing_cites_a_file_outside_the_repository() -> None:
    broken = []
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert not broken, broken
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    citing = [f for f in tracked if f.endswith((".py", ".md", ".yaml", ".j2", ".toml")) and f != "tests/test_docs.py"
              and (REPO / f).is_file() and "REFERENCE.md" in (REPO / f).read_text(encoding="utf-8", errors="replace")]
    assert not citing, citing
