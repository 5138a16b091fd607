"""Dates and words for people: the one Jinja filter that shows a UTC moment in a time
zone, the viewer's zone (every template gets it as `viewer_tz`), and the labels of
crm_app/drip/common/labels.py (`actor`, `enrollment_source`, `activity_kind`)."""

from __future__ import annotations

from datetime import datetime

from flask import Flask
from flask_login import current_user

from crm_app.drip.campaigns.naming import step_title, subject_title
from crm_app.drip.common.labels import activity_kind_label, actor_label, enrollment_source_label
from crm_app.drip.common.timezones import zone_or_utc


def local_time(
    moment: datetime | None, tz_name: str | None = "UTC", fmt: str = "%a %d %b %Y %H:%M"
) -> str:
    """`moment` on the wall clock of `tz_name` (UTC when unknown), with the zone's
    abbreviation, so a reader never has to guess which clock a time is on."""
    if moment is None:
        return "—"
    local = moment.astimezone(zone_or_utc(tz_name))
    return f"{local.strftime(fmt)} {local.tzname()}"


def viewer_timezone() -> str:
    """The logged-in user's time zone name; UTC for anyone else."""
    return getattr(current_user, "timezone", None) or "UTC"


def on_viewers_clock(tz_name: str | None) -> bool:
    """Whether a time shown on `tz_name`'s clock reads the same on the viewer's: then a
    page shows it once instead of twice."""
    return zone_or_utc(tz_name).key == zone_or_utc(viewer_timezone()).key


def register_filters(app: Flask) -> None:
    app.add_template_filter(local_time, "local_time")
    # An email's readable name: its subject for the sample contact, never template source.
    app.add_template_filter(step_title, "step_title")
    app.add_template_filter(subject_title, "subject_title")
    app.add_template_filter(actor_label, "actor")
    app.add_template_filter(enrollment_source_label, "enrollment_source")
    app.add_template_filter(activity_kind_label, "activity_kind")
    app.context_processor(lambda: {"viewer_tz": viewer_timezone()})
