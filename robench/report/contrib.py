"""What a defense contributes to reports: the small result type of :meth:`Defense.summary_table`.

A defense that lists table kinds in ``report_tables`` returns, for each dataset of such a table, a
:class:`SummaryTable` built from the stored ``summary()`` of the row's trained models; robench adds
the paper's reference values and differences (``reference:`` in the protocol) and renders it in
every report format like its accuracy tables. This module imports nothing heavy, so a defense file
can import it at no cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SummaryRow:
    """One row of a contributed table.

    Attributes:
        id: row id (what a protocol's ``reference:`` names).
        label: what the report prints in the row header.
        values: column id -> value (in the units the table's title says), None where unknown;
            columns left out count as unknown.
    """

    id: str
    label: str
    values: dict[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class SummaryTable:
    """A contributed table for one dataset: column ids (also their labels), in order, and the rows.

    Attributes:
        columns: column ids, in the order printed (a protocol's ``reference:`` lists values in it).
        rows: the rows, in the order printed.
        digits: decimals printed.
    """

    columns: list[str]
    rows: list[SummaryRow]
    digits: int = 2
