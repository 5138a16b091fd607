"""The frequency cap (issue 15 item 4): at most N emails per contact per rolling window
across all campaigns; a held step waits for the next allowed moment inside its send
window; never sent twice, never lost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from crm_app.drip.audience.enrollment import enroll
from crm_app.drip.delivery.frequency_cap import FrequencyCap, next_allowed
from crm_app.drip.delivery.pipeline import deliver_messages
from crm_app.drip.delivery.tick import run_tick
from crm_app.models import Activity, Enrollment, Message, utcnow
from tests.delivery_helpers import WEDNESDAY_10, open_all_week

pytest_plugins = ["tests.conftest_delivery"]

DAILY = FrequencyCap(1, timedelta(hours=24))


def _in_two_campaigns(session, make_contact, campaigns, when):
    contact = make_contact("lead")
    enroll(session, contact, campaigns["networking"], actor="test")
    enrollments = list(
        session.scalars(
            sa.select(Enrollment).where(Enrollment.contact_id == contact.id).order_by(Enrollment.id)
        )
    )
    for enrollment in enrollments:
        enrollment.next_send_at = when
    session.commit()
    return contact, enrollments


def _messages(session, contact) -> list[Message]:
    return list(
        session.scalars(
            sa.select(Message).where(Message.contact_id == contact.id).order_by(Message.id)
        )
    )


def _tick(session, now, cap=DAILY):
    return run_tick(session, lambda ids: None, now=now, frequency_cap=cap)


def test_two_campaigns_due_together_send_one_and_hold_the_other(session, make_contact, campaigns):
    contact, (lead, networking) = _in_two_campaigns(session, make_contact, campaigns, WEDNESDAY_10)
    result = _tick(session, WEDNESDAY_10)

    messages = _messages(session, contact)
    assert len(messages) == 1 and result.held == 1
    held = networking if messages[0].enrollment_id == lead.id else lead
    session.refresh(held)
    thursday_10 = WEDNESDAY_10 + timedelta(days=1)
    assert held.next_send_at == thursday_10 and held.cap_held_until == thursday_10
    assert (
        session.scalar(sa.select(Activity.detail).where(Activity.kind == "email_held"))
        == "Next email held by the frequency cap until 2026-11-26 10:00 UTC"
    )

    # The first goes out; the held one is not due before its moment, then goes, once.
    messages[0].status, messages[0].sent_at = "sent", WEDNESDAY_10
    session.commit()
    assert _tick(session, thursday_10 - timedelta(minutes=1)).created == 0
    assert _tick(session, thursday_10).created == 1
    assert len(_messages(session, contact)) == 2
    session.refresh(held)
    assert held.cap_held_until is None  # its email is on the way: the hold is over
    assert _tick(session, thursday_10 + timedelta(minutes=5)).created == 0


def test_a_held_step_waits_for_the_next_opening_of_its_send_window(
    session, make_contact, campaigns
):
    friday_1630 = datetime(2026, 11, 27, 16, 30, tzinfo=UTC)
    contact, enrollments = _in_two_campaigns(session, make_contact, campaigns, friday_1630)
    _tick(session, friday_1630)
    (first,) = _messages(session, contact)
    held = next(e for e in enrollments if e.id != first.enrollment_id)
    session.refresh(held)
    # Allowed again Saturday 16:30, outside Mon-Fri 9-17: Monday 09:00.
    assert held.next_send_at == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def test_cap_zero_is_off_and_a_larger_cap_allows_that_many(session, make_contact, campaigns):
    contact, _ = _in_two_campaigns(session, make_contact, campaigns, WEDNESDAY_10)
    assert _tick(session, WEDNESDAY_10, FrequencyCap(0, timedelta(hours=24))).created == 2

    other, _ = _in_two_campaigns(session, make_contact, campaigns, WEDNESDAY_10)
    assert _tick(session, WEDNESDAY_10, FrequencyCap(2, timedelta(hours=24))).created == 2


def test_an_email_sent_in_the_window_by_another_campaign_holds_the_next(
    session, make_contact, campaigns
):
    contact, (lead, networking) = _in_two_campaigns(session, make_contact, campaigns, None)
    lead.next_send_at = WEDNESDAY_10
    session.commit()
    _tick(session, WEDNESDAY_10)
    (sent,) = _messages(session, contact)
    sent.status, sent.sent_at = "sent", WEDNESDAY_10
    networking.next_send_at = WEDNESDAY_10 + timedelta(hours=3)
    session.commit()
    result = _tick(session, WEDNESDAY_10 + timedelta(hours=3))
    assert result.created == 0 and result.held == 1
    session.refresh(networking)
    assert networking.next_send_at == WEDNESDAY_10 + timedelta(days=1)


def test_the_worker_holds_a_queued_email_and_the_same_row_goes_later_once(
    session, make_contact, campaigns, backend, settings, fake_sendgrid
):
    now = utcnow()
    contact, (lead, networking) = _in_two_campaigns(session, make_contact, campaigns, None)
    for campaign in (lead.campaign, networking.campaign):
        open_all_week(campaign)
    # Lead's email went out an hour ago; Networking's was queued before the cap knew.
    lead.next_send_at = now - timedelta(hours=1)
    session.commit()
    run_tick(session, lambda ids: None, now=now - timedelta(hours=1))
    (first,) = _messages(session, contact)
    first.status, first.sent_at = "sent", now - timedelta(hours=1)
    networking.next_send_at = now - timedelta(minutes=1)
    session.commit()
    run_tick(session, lambda ids: None, now=now)  # no cap given: the row is created
    queued = _messages(session, contact)[1]

    capped = settings.replace(frequency_cap_count=1, frequency_cap_window_hours=24)
    report = deliver_messages(session, [queued.id], backend, capped)
    session.refresh(queued)
    session.refresh(networking)
    assert queued.status == "skipped" and "held by the frequency cap until" in queued.error
    assert report.skipped == [queued.id] and dict(fake_sendgrid.deliveries) == {}
    until = networking.next_send_at
    assert until is not None and until == networking.cap_held_until
    assert abs(until - (first.sent_at + timedelta(hours=24))) < timedelta(seconds=2)

    # A day later (the first send left the window), the tick queues that same row again.
    first.sent_at = now - timedelta(hours=25)
    session.commit()
    result = run_tick(session, lambda ids: None, now=until, frequency_cap=DAILY)
    assert result.requeued == 0 and result.created == 0
    assert len(_messages(session, contact)) == 2
    session.refresh(queued)
    assert queued.status == "queued"
    deliver_messages(session, [queued.id], backend, capped)
    deliver_messages(session, [queued.id], backend, capped)
    assert dict(fake_sendgrid.deliveries) == {str(queued.id): 1}


def test_next_allowed_counts_a_rolling_window():
    sends = [WEDNESDAY_10 - timedelta(hours=30), WEDNESDAY_10 - timedelta(hours=2)]
    assert next_allowed(DAILY, sends, WEDNESDAY_10) == WEDNESDAY_10 + timedelta(hours=22)
    assert next_allowed(FrequencyCap(2, timedelta(hours=24)), sends, WEDNESDAY_10) == WEDNESDAY_10
    # A send exactly one window ago no longer counts.
    assert next_allowed(DAILY, [WEDNESDAY_10 - timedelta(hours=24)], WEDNESDAY_10) == WEDNESDAY_10


def test_two_queued_emails_of_one_contact_in_one_batch_one_goes(
    session, make_contact, campaigns, backend, settings, fake_sendgrid
):
    now = utcnow()
    contact, enrollments = _in_two_campaigns(session, make_contact, campaigns, None)
    for enrollment in enrollments:
        open_all_week(enrollment.campaign)
        enrollment.next_send_at = now - timedelta(minutes=1)
    session.commit()
    run_tick(session, lambda ids: None, now=now)  # no cap in this tick: both queued
    ids = [m.id for m in _messages(session, contact)]
    assert len(ids) == 2

    capped = settings.replace(frequency_cap_count=1, frequency_cap_window_hours=24)
    deliver_messages(session, ids, backend, capped)
    statuses = sorted(m.status for m in _messages(session, contact))
    assert statuses == ["sent", "skipped"]
    assert sum(fake_sendgrid.deliveries.values()) == 1


def test_a_queued_email_skipped_at_send_takes_no_cap_slot_from_the_other(
    session, make_contact, campaigns, backend, settings, fake_sendgrid
):
    now = utcnow()
    contact, enrollments = _in_two_campaigns(session, make_contact, campaigns, None)
    for enrollment in enrollments:
        open_all_week(enrollment.campaign)
        enrollment.next_send_at = now - timedelta(minutes=1)
    session.commit()
    run_tick(session, lambda ids: None, now=now)  # no cap in this tick: both queued
    # The cap would let the first one through and hold the other; the first one's
    # campaign is paused, so it will be set aside at send.
    going, other = sorted(_messages(session, contact), key=lambda m: m.id)
    going.campaign.status = "paused"
    session.commit()

    capped = settings.replace(frequency_cap_count=1, frequency_cap_window_hours=24)
    backend.answered_ok = True  # a key known good: both are decided in one chunk
    deliver_messages(session, [other.id, going.id], backend, capped)
    session.refresh(going)
    session.refresh(other)
    assert going.status == "skipped" and "paused" in going.error
    assert other.status == "sent"  # the cap's one slot was free for it
    assert sum(fake_sendgrid.deliveries.values()) == 1
