"""When an email may go out: step delays and the campaign's send window."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from crm_app.drip.common.timezones import zone_or_utc
from crm_app.models import Campaign, Contact, Enrollment


def add_local_days(moment: datetime, days: int, tz_name: str) -> datetime:
    """`days` calendar days later on the contact's wall clock (10:00 stays 10:00 over DST)."""
    zone = zone_or_utc(tz_name)
    local_wall = moment.astimezone(zone).replace(tzinfo=None) + timedelta(days=days)
    return local_wall.replace(tzinfo=zone).astimezone(UTC)


def _opening(day: date, start: time, end: time, zone: ZoneInfo) -> datetime | None:
    """The first moment of `day` whose wall clock reads `start` or later (before `end`),
    in UTC: what `is_inside_send_window` sees open. A start the clocks skip (spring
    forward) opens when they jump past it; None when they skip the whole window."""
    opens = datetime.combine(day, start, tzinfo=zone)
    at = opens.astimezone(UTC)
    if at.astimezone(zone).replace(tzinfo=None) == opens.replace(tzinfo=None):
        return at
    # In the gap: fold=1 reads it with the offset after the jump (a moment before the
    # jump), fold=0 with the one before (a moment after): find the jump between them.
    before = int(opens.replace(fold=1).astimezone(UTC).timestamp())
    after = int(at.timestamp())
    offset_after = at.astimezone(zone).utcoffset()
    while after - before > 1:
        middle = (before + after) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == offset_after:
            after = middle
        else:
            before = middle
    jump = datetime.fromtimestamp(after, UTC)
    return jump if jump.astimezone(zone).time() < end else None


def clamp_to_send_window(
    earliest: datetime, tz_name: str, weekdays: set[int], start: time, end: time
) -> datetime:
    """The first moment at or after `earliest` inside the window, in UTC."""
    if not weekdays:
        raise ValueError("a send window needs at least one weekday")
    zone = zone_or_utc(tz_name)
    local = earliest.astimezone(zone)
    for offset in range(15):  # a week, and one more when the clocks skip a window
        day = local.date() + timedelta(days=offset)
        if day.weekday() not in weekdays:
            continue
        if offset == 0 and local.time() >= start:
            if local.time() < end:
                return earliest.astimezone(UTC)
            continue
        opening = _opening(day, start, end, zone)
        if opening is not None and opening < earliest:
            # `earliest` is in the hour the clocks repeat (fall back), before `start` on
            # its second pass: the window opens when the clock reads `start` again.
            opening = datetime.combine(day, start, tzinfo=zone).replace(fold=1).astimezone(UTC)
        if opening is not None:
            return opening
    raise AssertionError("unreachable: two weeks always contain a window day")


def is_inside_send_window(moment: datetime, campaign: Campaign, tz_name: str) -> bool:
    local = moment.astimezone(zone_or_utc(tz_name))
    return (
        local.weekday() in campaign.send_weekdays
        and campaign.send_start <= local.time().replace(tzinfo=None) < campaign.send_end
    )


def send_time_for_step(
    campaign: Campaign,
    contact: Contact,
    delay_days: int,
    after: datetime,
    *,
    not_before: datetime | None = None,
) -> datetime:
    """When a step with `delay_days` after `after` may go out for this contact (never
    before `not_before`: a resumed contact's delay may have run out long ago)."""
    earliest = add_local_days(after, delay_days, contact.timezone)
    if not_before is not None:
        earliest = max(earliest, not_before)
    return clamp_to_send_window(
        earliest, contact.timezone, campaign.send_weekdays, campaign.send_start, campaign.send_end
    )


def move_into_window(enrollment: Enrollment, tz_name: str, now: datetime) -> bool:
    """Move an active enrolment's next date to the first moment at or after it (and `now`)
    inside its campaign's send window on `tz_name`'s clock; True when the date changed."""
    if enrollment.next_send_at is None:
        return False
    campaign = enrollment.campaign
    moved = clamp_to_send_window(
        max(enrollment.next_send_at, now),
        tz_name,
        campaign.send_weekdays,
        campaign.send_start,
        campaign.send_end,
    )
    if moved == enrollment.next_send_at:
        return False
    enrollment.next_send_at = moved
    return True


def reschedule_campaign(session, campaign: Campaign, now: datetime) -> int:
    """After an admin changes the send window, move every active enrolment into it."""
    count = 0
    for enrollment in session.query(Enrollment).filter_by(campaign_id=campaign.id, status="active"):
        if enrollment.next_send_at is None:
            continue
        move_into_window(enrollment, enrollment.contact.timezone, now)
        count += 1
    return count


def reschedule_contact(contact: Contact, now: datetime) -> list[Enrollment]:
    """After the contact's time zone changes: its dates were placed in the send windows on
    its old clock; move them into the windows on the new one (the tick would defer them
    there anyway, while the page showed the old date). Returns the enrolments moved."""
    return [
        enrollment
        for enrollment in contact.enrollments
        if enrollment.status == "active" and move_into_window(enrollment, contact.timezone, now)
    ]
