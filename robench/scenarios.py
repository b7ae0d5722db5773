"""The evaluation scenarios: which modalities each one attacks (the paper's clean, XR, XS and XRS).

This is the one definition; protocol validation, the run plan, table columns and reports read it from
here. The module imports nothing from robench, so that any module can use it without an import cycle.
"""

from __future__ import annotations

from typing import Final

#: scenario name -> attacked modalities, in the order of the tables' columns
SCENARIOS: Final[dict[str, tuple[str, ...]]] = {
    "clean": (),
    "R": ("rgb",),
    "S": ("skeleton",),
    "RS": ("rgb", "skeleton"),
}
#: the scenarios that attack at least one modality, in the same order (a table's Avg is their mean)
ATTACKED_SCENARIOS: Final[tuple[str, ...]] = tuple(s for s, attacked in SCENARIOS.items() if attacked)
