"""Ranking with paired tests: which rank differences between entries are real.

Every verified entry of a track is evaluated on the same clips, so two neighbouring entries can be
compared clip by clip. McNemar's exact test looks only at the discordant clips: ``b`` clips the upper
entry gets right and the lower one wrong, ``c`` the other way round; under "equally robust" each
discordant clip is a fair coin, so the two-sided p-value is ``min(1, 2 P[Binomial(b + c, 1/2) <= min(b,
c)])``, computed exactly in integers (a corruption track compares thousands of pooled outcomes). Entries are
sorted by the track's ranking column (the worst case on RS, or a corruption track's Mean over its pooled
(clip, corruption, severity) outcomes: :func:`robench.leaderboard.record.pooled`); walking down, a new
rank starts where a neighbour differs at ``alpha`` (5%), and entries that do not differ share the rank
of the first of their group (shown ``2=``). Only reliable entries are ranked: an entry with a sanity flag
saying its numbers may overstate its robustness (a random forward pass, probability outputs, vanishing
gradients, ...: :func:`doubtful`) is listed after the ranked ones, without a rank, and never shares a rank
with one; a flag that describes the model without doubting its numbers (:data:`INFORMATIVE_FLAGS`) only
marks it. Unverified entries (reported numbers only) are listed last, unranked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

#: significance level of the neighbour tests
ALPHA = 0.05
#: flags that describe a model without doubting its measured numbers (it ignores one input: its robustness is
#: measured correctly, it just is not multimodal); every other flag, known or not, keeps an entry out of the ranking
INFORMATIVE_FLAGS = frozenset({"ignores-input"})


def doubtful(flags: Iterable[Mapping[str, Any]]) -> list[str]:
    """The codes of ``flags`` (a record's) that put its numbers in doubt, each once, in order: an entry with any is
    not ranked."""
    return list(dict.fromkeys(str(f.get("code")) for f in flags if str(f.get("code")) not in INFORMATIVE_FLAGS))


def mcnemar_exact(upper: np.ndarray, lower: np.ndarray) -> tuple[float, int, int]:
    """Two-sided exact McNemar p-value of two per-clip correctness vectors, and ``(b, c)``."""
    if upper.shape != lower.shape:
        raise ValueError(f"paired test needs the same clips: {upper.shape} vs {lower.shape}")
    b = int(np.sum(upper & ~lower))
    c = int(np.sum(~upper & lower))
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0, b, c
    # exact in integers, one rounding at the end: 2.0 ** n overflows a float beyond n = 1023 discordant outcomes
    # (a corruption track pools every (clip, corruption, severity): thousands)
    term = tail = 1
    for i in range(1, k + 1):
        term = term * (n - i + 1) // i
        tail += term
    return min(1.0, 2 * tail / (1 << n)), b, c


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
