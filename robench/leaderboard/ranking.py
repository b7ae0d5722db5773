"""Ranking with paired tests: which rank differences between entries are real.

Every verified entry of a track is evaluated on the same clips, so two neighbouring entries can be
compared clip by clip. McNemar's exact test looks only at the discordant clips: ``b`` clips the upper
entry gets right and the lower one wrong, ``c`` the other way round; under "equally robust" each
discordant clip is a fair coin, so the two-sided p-value is ``min(1, 2 P[Binomial(b + c, 1/2) <= min(b,
c)])``. Entries are sorted by the track's ranking column (the worst case on RS); walking down, a new
rank starts where a neighbour differs at ``alpha`` (5%), and entries that do not differ share the rank
of the first of their group (shown ``2=``). Flagged entries are ranked like the others, by their worst
case, and marked. Unverified entries (reported numbers only) are listed after, unranked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: significance level of the neighbour tests
ALPHA = 0.05


def mcnemar_exact(upper: np.ndarray, lower: np.ndarray) -> tuple[float, int, int]:
    """Two-sided exact McNemar p-value of two per-clip correctness vectors, and ``(b, c)``."""
    if upper.shape != lower.shape:
        raise ValueError(f"paired test needs the same clips: {upper.shape} vs {lower.shape}")
    b = int(np.sum(upper & ~lower))
    c = int(np.sum(~upper & lower))
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0, b, c
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0 ** n
    return min(1.0, 2.0 * tail), b, c


@dataclass(frozen=True)
class Ranked:
    """One entry's place: ``rank`` (1-based, shared by ties), ``tied`` (shares it with a neighbour) and
    the test against the entry above (``p_above``, ``None`` for the first)."""

    key: str
    score: float
    rank: int
    tied: bool
    p_above: float | None
    b_above: int | None = None
    c_above: int | None = None

    @property
    def label(self) -> str:
        return f"{self.rank}=" if self.tied else str(self.rank)


def rank(scores: dict[str, float], bits: dict[str, np.ndarray], alpha: float = ALPHA) -> list[Ranked]:
    """Order ``scores`` (higher first; ties by key) and group neighbours that a paired test cannot separate."""
    order = sorted(scores, key=lambda k: (-scores[k], k))
    out: list[Ranked] = []
    group_rank = 1
    for i, key in enumerate(order):
        if i == 0:
            out.append(Ranked(key, scores[key], 1, False, None))
            continue
        p, b, c = mcnemar_exact(bits[order[i - 1]], bits[key])
        if p < alpha:
            group_rank = i + 1
        out.append(Ranked(key, scores[key], group_rank, False, p, b, c))
    counts: dict[int, int] = {}
    for r in out:
        counts[r.rank] = counts.get(r.rank, 0) + 1
    return [Ranked(r.key, r.score, r.rank, counts[r.rank] > 1, r.p_above, r.b_above, r.c_above) for r in out]
