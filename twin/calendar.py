"""The twin's calendar: which date a simulated day is.

Day 0 is 1 January 2021, a non-leap year, so the demand model's day-of-year
(`day % 365`: yearly seasonality, holidays) matches the calendar in the first
year. Snapshots, forecasters' date indexes and anything that speaks in dates
convert with these.
"""

from __future__ import annotations

import datetime as dt

DAY_ZERO = dt.date(2021, 1, 1)


def calendar_date(day: int) -> dt.date:
    """The calendar date of twin day `day`."""
    return DAY_ZERO + dt.timedelta(days=int(day))


def twin_day(date: dt.date) -> int:
    """The twin day of calendar date `date` (the inverse of `calendar_date`; negative before day 0)."""
    return (date - DAY_ZERO).days
