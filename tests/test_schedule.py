"""next_send_at: step delays on the contact's wall clock, clamped into the send window."""

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from crm_app.drip.campaigns.schedule import (
    add_local_days,
    clamp_to_send_window,
    is_inside_send_window,
)
from crm_app.models import Campaign

WEEKDAYS = {0, 1, 2, 3, 4}
NINE, FIVE = time(9, 0), time(17, 0)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_inside_the_window_sends_at_once():
    moment = utc(2026, 11, 25, 10, 30)  # Wednesday
    assert clamp_to_send_window(moment, "UTC", WEEKDAYS, NINE, FIVE) == moment


def test_before_opening_waits_for_nine_local():
    assert clamp_to_send_window(utc(2026, 11, 25, 6, 0), "UTC", WEEKDAYS, NINE, FIVE) == utc(
        2026, 11, 25, 9, 0
    )


def test_after_closing_moves_to_next_morning():
    assert clamp_to_send_window(utc(2026, 11, 25, 17, 0), "UTC", WEEKDAYS, NINE, FIVE) == utc(
        2026, 11, 26, 9, 0
    )


def test_friday_evening_moves_across_the_weekend_to_monday():
    friday_evening = utc(2026, 11, 27, 18, 0)
    assert clamp_to_send_window(friday_evening, "UTC", WEEKDAYS, NINE, FIVE) == utc(
        2026, 11, 30, 9, 0
    )


def test_saturday_moves_to_monday():
    assert clamp_to_send_window(utc(2026, 11, 28, 12, 0), "UTC", WEEKDAYS, NINE, FIVE) == utc(
        2026, 11, 30, 9, 0
    )


def test_window_is_in_the_contacts_time_zone():
    # 15:00 UTC on a Wednesday is 07:00 in Los Angeles: wait for 09:00 there (17:00 UTC).
    moment = utc(2026, 11, 25, 15, 0)
    assert clamp_to_send_window(moment, "America/Los_Angeles", WEEKDAYS, NINE, FIVE) == utc(
        2026, 11, 25, 17, 0
    )
    # 23:30 UTC Sunday is already Monday 08:30 in Tokyo: wait until 09:00 Tokyo.
    sunday_night = utc(2026, 11, 29, 23, 30)
    assert clamp_to_send_window(sunday_night, "Asia/Tokyo", WEEKDAYS, NINE, FIVE) == utc(
        2026, 11, 30, 0, 0
    )


def test_custom_window_with_weekend_days():
    saturday = utc(2026, 11, 28, 12, 0)
    assert clamp_to_send_window(saturday, "UTC", {5}, time(10, 0), time(12, 0)) == utc(
        2026, 12, 5, 10, 0
    )


def test_delay_keeps_local_wall_clock_across_dst_change():
    # Europe/Paris leaves summer time on Sunday 2026-10-25.
    paris = ZoneInfo("Europe/Paris")
    friday_ten = datetime(2026, 10, 23, 10, 0, tzinfo=paris)  # 08:00 UTC (CEST)
    later = add_local_days(friday_ten, 3, "Europe/Paris")
    assert later.astimezone(paris).hour == 10
    assert later == utc(2026, 10, 26, 9, 0)  # 10:00 CET is 09:00 UTC


def test_window_opening_after_dst_change_is_nine_local():
    # New York springs forward on Sunday 2026-03-08: Monday's 09:00 is 13:00 UTC, not 14:00.
    saturday = utc(2026, 3, 7, 15, 0)
    assert clamp_to_send_window(saturday, "America/New_York", WEEKDAYS, NINE, FIVE) == utc(
        2026, 3, 9, 13, 0
    )


# The tick sends when the contact's wall clock is inside the window (is_inside_send_window):
# the date given for an email is the first minute it does so, also the night the clocks change.
SUNDAY = {6}


def _first_minute_inside(opening: datetime, tz_name: str, start: time, end: time) -> bool:
    campaign = Campaign(send_days="6", send_start=start, send_end=end)
    before = opening - timedelta(minutes=1)
    return is_inside_send_window(opening, campaign, tz_name) and not is_inside_send_window(
        before, campaign, tz_name
    )


def test_a_window_opening_in_the_spring_forward_gap_opens_when_the_clocks_jump():
    # New York, Sunday 14 March 2027: at 07:00 UTC 02:00 EST becomes 03:00 EDT; 02:30
    # never comes. The tick sends from 03:00 EDT; the date said 03:30 (02:30 EST).
    start, end = time(2, 30), time(4, 0)
    opening = clamp_to_send_window(utc(2027, 3, 14, 5, 0), "America/New_York", SUNDAY, start, end)
    assert opening == utc(2027, 3, 14, 7, 0)
    assert _first_minute_inside(opening, "America/New_York", start, end)


def test_a_window_the_clocks_skip_waits_for_its_next_day():
    # Paris, Sunday 28 March 2027: 02:00-03:00 does not exist. The date said 01:00 UTC
    # that night, when the tick finds the window closed; it goes the next Sunday.
    start, end = time(2, 0), time(3, 0)
    saturday = utc(2027, 3, 27, 12, 0)
    opening = clamp_to_send_window(saturday, "Europe/Paris", SUNDAY, start, end)
    assert opening == utc(2027, 4, 4, 0, 0)  # Sunday 4 April, 02:00 CEST
    assert _first_minute_inside(opening, "Europe/Paris", start, end)


def test_in_the_repeated_hour_a_window_opens_on_the_clocks_second_pass():
    # New York, Sunday 1 November 2026: 01:00-02:00 comes twice. At 01:10 on the second
    # pass (06:10 UTC) a window from 01:15 opens at 01:15 EST, not at the first 01:15 EDT
    # (an hour before the email was due).
    start, end = time(1, 15), time(4, 0)
    due = utc(2026, 11, 1, 6, 10)
    opening = clamp_to_send_window(due, "America/New_York", SUNDAY, start, end)
    assert opening == utc(2026, 11, 1, 6, 15)
