"""The delay arithmetic of implicit decisions (R10), every date worked out by hand."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guichet_intake.deadlines import add_delay


@pytest.mark.parametrize(
    ("reception", "value", "unit", "last_day"),
    [
        # The circular's own example: 12 November + 2 months → 12 January.
        (date(2026, 11, 12), 2, "months", date(2027, 1, 12)),
        (date(2026, 5, 15), 2, "months", date(2026, 7, 15)),
        # No 31 February: the month's last day, leap year or not.
        (date(2026, 12, 31), 2, "months", date(2027, 2, 28)),
        (date(2027, 12, 31), 2, "months", date(2028, 2, 29)),
        (date(2026, 1, 31), 1, "months", date(2026, 2, 28)),
        (date(2028, 1, 31), 1, "months", date(2028, 2, 29)),
        (date(2026, 8, 31), 1, "months", date(2026, 9, 30)),
        (date(2026, 3, 31), 12, "months", date(2027, 3, 31)),
        # Days: the Nth day after reception (reception day not counted).
        (date(2026, 2, 20), 15, "days", date(2026, 3, 7)),
        (date(2028, 2, 20), 15, "days", date(2028, 3, 6)),
        # Weeks: the same weekday N weeks later (Monday 2 March → Monday 16 March).
        (date(2026, 3, 2), 2, "weeks", date(2026, 3, 16)),
    ],
)
def test_r10_delay_ends_on_hand_computed_day(
    reception: date, value: int, unit: str, last_day: date
) -> None:
    assert add_delay(reception, value, unit) == last_day


def test_r10_no_extension_for_weekends_or_holidays_by_default() -> None:
    # 1 March 2026 + 2 months = Friday 1 May 2026, a public holiday: kept as is.
    assert add_delay(date(2026, 3, 1), 2, "months") == date(2026, 5, 1)


def test_unknown_unit_and_negative_delay_are_refused() -> None:
    with pytest.raises(ValueError, match="unit"):
        add_delay(date(2026, 1, 1), 1, "fortnights")
    with pytest.raises(ValueError, match="negative"):
        add_delay(date(2026, 1, 1), -1, "days")


@given(
    st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 12, 31)),
    st.integers(min_value=1, max_value=24),
)
def test_month_delay_keeps_the_day_number_or_ends_the_month(reception: date, months: int) -> None:
    end = add_delay(reception, months, "months")
    assert (end.year * 12 + end.month) - (reception.year * 12 + reception.month) == months
    if end.day != reception.day:
        assert end.day < reception.day
        assert (end + timedelta(days=1)).day == 1, "only the month's last day may stand in"


@given(
    st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 12, 31)),
    st.integers(min_value=0, max_value=400),
)
def test_day_and_week_delays_never_count_the_reception_day(reception: date, n: int) -> None:
    assert (add_delay(reception, n, "days") - reception).days == n
    assert add_delay(reception, n, "weeks").weekday() == reception.weekday()
