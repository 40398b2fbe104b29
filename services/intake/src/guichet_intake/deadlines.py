"""Implicit-decision dates: pure computation, no I/O.

Rules (LEGAL_RULES.md, "Computing a delay"): the day of reception does not
count; a delay in days ends at the end of the Nth day after reception; in
weeks, at the end of the same weekday N weeks later; in months, at the end of
the day of the final month bearing the reception day's number, or that month's
last day when it has none. The decision is born at the end of that day (24:00
in the tenant's time zone) and can be relied on from the next day.
"""

from __future__ import annotations

import calendar
from datetime import date, timedelta


def add_delay(reception: date, value: int, unit: str) -> date:
    """The last day of the delay: the decision is born at its end."""
    if value < 0:
        raise ValueError("a delay cannot be negative")
    if unit == "days":
        return reception + timedelta(days=value)
    if unit == "weeks":
        return reception + timedelta(weeks=value)
    if unit == "months":
        months = reception.year * 12 + (reception.month - 1) + value
        year, month = divmod(months, 12)
        last_day = calendar.monthrange(year, month + 1)[1]
        return date(year, month + 1, min(reception.day, last_day))
    raise ValueError(f"unknown delay unit: {unit}")
