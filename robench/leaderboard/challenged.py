"""What accepted challenges did to a record, as a board shows it: the column's accuracy under the track's own
attacks before them (:func:`lowered`) and one note per lowered column (:func:`challenge_notes`).

Accepting a challenge (:mod:`robench.leaderboard.challenge`) needs torch; reading what it did does not, so a board
renders without importing it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from robench.leaderboard.record import COLUMNS, CORRUPTION_KIND, bits_of, columns_of, kind_of, summary
from robench.leaderboard.tracks import SCENARIO_LABELS


def lowered(record: dict[str, Any], key: str) -> float | None:
    """The accuracy robench's own attacks give on column ``key`` (``R``, ``S``, ``RS`` or ``worst``) of a record whose
    accepted challenges lowered it (what its page shows before the arrow), else None."""
    if record.get("status") != "verified" or not record.get("challenges") or kind_of(record) == CORRUPTION_KIND:
        return None
    column = str(record["track"]["rank_by"]) if key == "worst" else key
    if column not in COLUMNS[1:] or not any(c["scenario"] == column for c in record["challenges"]):
        return None
    return float(summary(columns_of(*bits_of(record)[:2])[column])["accuracy"])


def challenge_notes(records: Iterable[dict[str, Any]]) -> list[str]:
    """One note per challenged column of each record, in the order given: ``AMR: XRS 35.00 → 30.62, lowered by 7
    clips by A. Author's APGD-DLR, 100 steps (2026-12-06, file sha256:…): external challenges (...); 35.00 is the
    track's attacks alone.``"""
    notes = []
    for record in records:
        for column in COLUMNS[1:]:
            before = lowered(record, column)
            if before is None:
                continue
            label = SCENARIO_LABELS.get(column, column)
            said = "; ".join(f"{len(c['clips_broken'])} clip{'s' if len(c['clips_broken']) != 1 else ''} by "
                             f"{possessive(str(c['author']))} {c['attack']} ({str(c['date'])[:10]}, file "
                             f"{str(c['sha256'])[:19]}…)" for c in record["challenges"] if c["scenario"] == column)
            notes.append(f"{record['entry']['name']}: {label} {before:.2f} → "
                         f"{float(record['results'][column]['accuracy']):.2f}, lowered by {said}: external "
                         f"challenges (robench leaderboard challenge); {before:.2f} is the track's attacks alone.")
    return notes


def possessive(name: str) -> str:
    """``A. Author's``, ``the maintainers'``."""
    return f"{name}'" if name.endswith("s") else f"{name}'s"
