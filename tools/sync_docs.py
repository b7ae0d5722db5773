"""Keep the numbers in the README and the documentation equal to the artefacts they come from.

A measured number may appear in ``README.md`` or ``docs/*.md`` only inside an include block, which is
a copy of (part of) a committed artefact: a rendered report, a leaderboard page, a benchmark's output.

    <!-- include: reports/quickstart/README.md table 1 -->
    ...the copy...
    <!-- end include -->

What is copied: the whole file (no selector), its N-th markdown table (``table N``, counted from 1,
with any ``Note:`` or bullet lines right after it), or the section under the first heading whose text
starts with TITLE (``section "TITLE"``, up to the next heading of the same or a higher level).

    python tools/sync_docs.py           # refresh every block from its source
    python tools/sync_docs.py --check   # exit 1 and name every block that differs, or prose with numbers

``--check`` also refuses, in prose outside a block, a number with two or more decimals or a percentage
with decimals (versions such as 2.14.1 and code spans excepted; a constant that is not a measurement goes
in a code span), so a measured number typed by hand cannot go stale.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: the files whose blocks are kept in sync
PAGES = ("README.md", "docs/*.md")
BEGIN = re.compile(r"^<!-- include: (?P<spec>.+?) -->$")
END = "<!-- end include -->"
#: a measured-looking number in prose: two or more decimals (94.38) or a percentage with decimals (12.5%);
#: whole percentages (a 95% interval, a 5% test level) are settings, not measurements
NUMBER = re.compile(r"\d+\.\d{2,}|\d+\.\d+\s?%")
#: what may look like a number without being a measurement: versions, eps fractions, code spans
ALLOWED = re.compile(r"`[^`]*`|\b\d+\.\d+\.\d+\b|\bPython \d\.\d+\b|\b\d+/255\b")


@dataclass(frozen=True)
class Block:
    """One include block of a page: its lines ``[start, end)`` (the markers excluded) and its source."""

    page: Path
    start: int
    end: int
    source: str
    selector: list[str]

    @property
    def label(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.start}: {self.source} {' '.join(self.selector)}".strip()


def pages() -> list[Path]:
    return sorted({p for pattern in PAGES for p in REPO.glob(pattern)})


def blocks(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = BEGIN.match(lines[i].strip())
        if m:
            parts = shlex.split(m.group("spec"))
            j = next((k for k in range(i + 1, len(lines)) if lines[k].strip() == END), None)
            if j is None:
                raise SystemExit(f"{page}:{i + 1}: include block without '{END}'")
            out.append(Block(page, i + 1, j, parts[0], parts[1:]))
            i = j
        i += 1
    return out


def extract(source: str, selector: list[str]) -> list[str]:
    """The lines of ``source`` a block copies (see the module docstring)."""
    path = REPO / source
    if not path.is_file():
        raise SystemExit(f"include source {source} does not exist")
    lines = path.read_text(encoding="utf-8").rstrip("\n").splitlines()
    if not selector:
        return lines
    kind, arg = selector[0], " ".join(selector[1:])
    if kind == "table":
        return _table(lines, int(arg), source)
    if kind == "section":
        return _section(lines, arg, source)
    raise SystemExit(f"include {source}: unknown selector {selector!r}; allowed: table N, section \"TITLE\"")


def _table(lines: list[str], n: int, source: str) -> list[str]:
    starts = [i for i, ln in enumerate(lines) if ln.startswith("|") and (i == 0 or not lines[i - 1].startswith("|"))]
    if not 1 <= n <= len(starts):
        raise SystemExit(f"include {source}: table {n} of {len(starts)}")
    i = starts[n - 1]
    j = i
    while j < len(lines) and lines[j].startswith("|"):
        j += 1
    while j < len(lines) and ((not lines[j].strip() and j + 1 < len(lines) and lines[j + 1].startswith(("Note:", "- ")))
                              or lines[j].startswith(("Note:", "- "))):
        j += 1
    return lines[i:j]


def _section(lines: list[str], title: str, source: str) -> list[str]:
    for i, ln in enumerate(lines):
        m = re.match(r"^(#+) (.*)$", ln)
        if m and m.group(2).startswith(title):
            level = len(m.group(1))
            j = i + 1
            while j < len(lines) and not (re.match(r"^(#+) ", lines[j]) and len(lines[j].split()[0]) <= level):
                j += 1
            body = lines[i + 1 : j]
            while body and not body[0].strip():
                body = body[1:]
            while body and not body[-1].strip():
                body = body[:-1]
            return body
    raise SystemExit(f"include {source}: no heading starting with {title!r}")


def expected(block: Block) -> list[str]:
    return extract(block.source, block.selector)


def stale_blocks() -> list[Block]:
    """Blocks whose copy differs from their source."""
    out = []
    for page in pages():
        lines = page.read_text(encoding="utf-8").splitlines()
        for b in blocks(page):
            if lines[b.start : b.end] != expected(b):
                out.append(b)
    return out


def prose_numbers() -> list[str]:
    """``page:line: text`` for each decimal number or percentage outside include blocks and code."""
    found = []
    for page in pages():
        lines = page.read_text(encoding="utf-8").splitlines()
        inside = {k for b in blocks(page) for k in range(b.start, b.end)}
        fenced = False
        for k, line in enumerate(lines):
            if line.strip().startswith("```"):
                fenced = not fenced
                continue
            if fenced or k in inside or line.strip().startswith("<!--"):
                continue
            text = ALLOWED.sub("", line)
            if NUMBER.search(text):
                found.append(f"{page.relative_to(REPO)}:{k + 1}: {line.strip()[:100]}")
    return found


def sync() -> int:
    """Rewrite every block from its source; returns how many changed."""
    changed = 0
    for page in pages():
        lines = page.read_text(encoding="utf-8").splitlines()
        for b in reversed(blocks(page)):
            new = expected(b)
            if lines[b.start : b.end] != new:
                lines[b.start : b.end] = new
                changed += 1
        page.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return changed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block or prose is off")
    args = parser.parse_args()
    if not args.check:
        print(f"{sync()} block(s) refreshed")
        return 0
    problems = [f"stale: {b.label}" for b in stale_blocks()] + [f"number in prose: {p}" for p in prose_numbers()]
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
