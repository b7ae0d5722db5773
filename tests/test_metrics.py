"""Avg and RI against the paper's printed Table 2, and the Wilson interval against known values."""

from __future__ import annotations

import pytest

from robench.report.metrics import avg, relative_improvement, wilson_interval

# Table 2 (PGD-20), NTU RGB+D: clean, XR, XS, XRS, printed Avg, printed RI
TABLE2_NTU = {
    "None": (88.09, 2.09, 11.84, 0.15, 4.69, 0.0),
    "AT with XR": (75.59, 75.59, 4.75, 4.74, 28.36, 11.17),
    "AT with XS": (78.44, 2.09, 78.31, 2.06, 27.49, 13.15),
    "AT with XRS": (61.42, 61.41, 40.41, 40.32, 47.38, 16.02),
    "MinSim": (80.85, 2.93, 80.85, 3.03, 28.85, 16.92),
    "ExFMem": (84.19, 0.00, 60.04, 0.00, 20.01, 11.42),
    "MinSim+ExFMem": (82.81, 2.02, 75.77, 2.14, 26.64, 16.67),
    "AMR": (81.65, 68.54, 80.40, 66.52, 71.82, 60.69),
}
# Table 2, iMiGUE (rows whose printed Avg matches its own columns)
TABLE2_IMIGUE = {
    "None": (62.37, 0.11, 6.97, 0.07, 2.38, 0.0),
    "AT with XR": (47.32, 47.32, 0.00, 0.00, 15.77, -1.66),
    "AT with XS": (60.20, 0.00, 59.87, 0.00, 19.96, 15.41),
    "AT with XRS": (39.01, 39.01, 31.89, 31.95, 34.28, 8.54),
    "MinSim": (60.60, 0.00, 53.28, 0.00, 17.76, 13.61),
    "ExFMem": (60.53, 0.00, 43.00, 0.00, 14.33, 10.11),
    "MinSim+ExFMem": (60.62, 0.00, 55.05, 0.00, 18.35, 14.22),
}


#: rows whose printed Avg is not the mean of their printed columns (a typo in the paper)
PAPER_INCONSISTENT_AVG = {("ntu", "MinSim"): 28.94}


@pytest.mark.parametrize("name, table", [("ntu", TABLE2_NTU), ("imigue", TABLE2_IMIGUE)])
def test_avg_reproduces_table2(name, table) -> None:
    for row, (_, xr, xs, xrs, p_avg, _) in table.items():
        expected = PAPER_INCONSISTENT_AVG.get((name, row), p_avg)
        assert avg(xr, xs, xrs) == pytest.approx(expected, abs=0.005 + 1e-9), row  # two decimals


@pytest.mark.parametrize("table", [TABLE2_NTU, TABLE2_IMIGUE], ids=["ntu", "imigue"])
def test_ri_reproduces_table2(table) -> None:
    """RI from the printed clean and Avg columns, relative to the None row (Eq. 14)."""
    clean_n, _, _, _, avg_n, _ = table["None"]
    for row, (clean, _, _, _, p_avg, p_ri) in table.items():
        assert relative_improvement(clean, p_avg, clean_n, avg_n) == pytest.approx(p_ri, abs=0.005 + 1e-9), row


def test_minsim_row_is_a_paper_typo() -> None:
    """NTU MinSim: columns (2.93, 80.85, 3.03) average 28.94, printed 28.85; its RI uses 28.85."""
    assert round(avg(2.93, 80.85, 3.03), 2) == 28.94
    assert round(relative_improvement(80.85, 28.85, 88.09, 4.69), 2) == 16.92


def test_reference_example() -> None:
    """The paper's Table 2, AMR on NTU: Avg 71.82, RI 60.69."""
    a = avg(68.54, 80.40, 66.52)
    assert round(a, 2) == 71.82
    assert round(relative_improvement(81.65, round(a, 2), 88.09, 4.69), 2) == 60.69


def test_baseline_ri_is_zero() -> None:
    assert relative_improvement(50.0, 20.0, 50.0, 20.0) == 0.0


@pytest.mark.parametrize(
    "correct, n, expected",
    [(8, 10, (0.4902, 0.9433)), (0, 10, (0.0, 0.2775)), (10, 10, (0.7225, 1.0)), (50, 100, (0.4038, 0.5962))],
)
def test_wilson_interval_known_values(correct, n, expected) -> None:
    lo, hi = wilson_interval(correct, n)
    assert lo == pytest.approx(expected[0], abs=1e-4) and hi == pytest.approx(expected[1], abs=1e-4)


def test_wilson_interval_empty() -> None:
    lo, hi = wilson_interval(0, 0)
    assert lo != lo and hi != hi  # NaN


def test_wilson_interval_is_exact_at_the_ends() -> None:
    """0 of n and n of n give bounds of exactly 0 and 1 (not 1e-15 off), so the accuracy lies inside."""
    from robench.report.metrics import wilson_interval

    for n in (1, 7, 12, 160, 16487):
        assert wilson_interval(0, n)[0] == 0.0 and wilson_interval(n, n)[1] == 1.0
        assert wilson_interval(0, n)[1] > 0.0 and wilson_interval(n, n)[0] < 1.0
