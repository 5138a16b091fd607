"""The date range of an analytics page: whole UTC days, parsed from a form."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

# The longest range the pages accept: the per-day series has one point per day.
MAX_RANGE_DAYS = 3 * 366
DEFAULT_RANGE_DAYS = 30
# Typed dates outside these: the range's arithmetic (a default start 30 days before,
# the end the day after) would fall off Python's calendar, years 1 to 9999.
EARLIEST_DAY = date(1970, 1, 1)
LATEST_DAY = date(9999, 12, 30)


class AnalyticsRangeError(ValueError):
    """A date range the user typed that cannot be used; the message is for them."""


@dataclass(frozen=True)
class DateRange:
    """Whole UTC days, `first` to `last` inclusive; queries use [start, end)."""

    first: date
    last: date

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time(0), tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.last + timedelta(days=1), time(0), tzinfo=UTC)

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]


def default_range(today: date) -> DateRange:
    return DateRange(today - timedelta(days=DEFAULT_RANGE_DAYS - 1), today)


def parse_range(first: str | None, last: str | None, *, today: date) -> DateRange:
    """ISO dates from a form; a missing side takes the default's. Raises AnalyticsRangeError."""
    fallback = default_range(today)
    try:
        first_day = date.fromisoformat(first.strip()) if first and first.strip() else None
        last_day = date.fromisoformat(last.strip()) if last and last.strip() else None
    except ValueError:
        raise AnalyticsRangeError("Dates must look like 2026-01-31.") from None
    if any(
        day is not None and not EARLIEST_DAY <= day <= LATEST_DAY for day in (first_day, last_day)
    ):
        raise AnalyticsRangeError(f"Choose dates between {EARLIEST_DAY} and {LATEST_DAY}.")
    first_day = first_day or (
        last_day - timedelta(days=DEFAULT_RANGE_DAYS - 1) if last_day else fallback.first
    )
    last_day = last_day or fallback.last
    if first_day > last_day:
        raise AnalyticsRangeError("The start date is after the end date.")
    if (last_day - first_day).days >= MAX_RANGE_DAYS:
        raise AnalyticsRangeError(f"Choose at most {MAX_RANGE_DAYS} days.")
    return DateRange(first_day, last_day)
