"""next_send_at: step delays on the contact's wall clock, clamped into the send window."""

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from crm_app.drip.campaigns.schedule import add_local_days, clamp_to_send_window

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
