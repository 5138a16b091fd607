"""Time zones: the one list of valid IANA names, and the zone to use for a stored name."""

from __future__ import annotations

from zoneinfo import ZoneInfo, available_timezones

# Read once: the system's tz database does not change while the process runs.
TIMEZONES: frozenset[str] = frozenset(available_timezones())
# For pickers (the contact form's suggestions), in alphabetical order.
TIMEZONE_CHOICES: tuple[str, ...] = tuple(sorted(TIMEZONES))
UTC_ZONE = ZoneInfo("UTC")


def is_known_timezone(name: str) -> bool:
    return name in TIMEZONES


def zone_or_utc(name: str | None) -> ZoneInfo:
    """The zone called `name`, or UTC for an empty or unknown name: a stale or mistyped
    zone on a user or contact must not break a page or the schedule."""
    return ZoneInfo(name) if name and name in TIMEZONES else UTC_ZONE
