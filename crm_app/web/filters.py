"""Jinja filters for dates in a given time zone."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from flask import Flask


def local_time(
    moment: datetime | None, tz_name: str = "UTC", fmt: str = "%a %d %b %Y %H:%M"
) -> str:
    if moment is None:
        return "—"
    try:
        zone = ZoneInfo(tz_name or "UTC")
    except Exception:
        zone = ZoneInfo("UTC")
    local = moment.astimezone(zone)
    return f"{local.strftime(fmt)} {local.tzname()}"


def register_filters(app: Flask) -> None:
    app.add_template_filter(local_time, "local_time")
