"""The send window at send time (delivery/send_window.py): an email queued inside its
window that could not go before the window closed waits for the next opening, unless
the window closed less than SEND_WINDOW_GRACE_MINUTES ago; the same row goes once."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from crm_app.drip.delivery.pipeline import deliver_messages
from crm_app.drip.delivery.tick import run_tick
from crm_app.models import Activity, Enrollment, Message
from tests.delivery_helpers import WEDNESDAY_10

pytest_plugins = ["tests.conftest_delivery"]

WEDNESDAY_16_59 = WEDNESDAY_10 + timedelta(hours=6, minutes=59)
THURSDAY_9 = WEDNESDAY_10 + timedelta(hours=23)


def _queued_just_before_the_close(session, make_contact) -> Message:
    """A Lead email (window Mon-Fri 09:00-17:00, the contact in UTC) queued at 16:59."""
    contact = make_contact("lead")
    contact.timezone = "UTC"
    enrollment = session.scalar(sa.select(Enrollment).where(Enrollment.contact_id == contact.id))
    enrollment.next_send_at = WEDNESDAY_16_59 - timedelta(minutes=1)
    session.commit()
    run_tick(session, lambda ids: None, now=WEDNESDAY_16_59)
    message = session.scalar(sa.select(Message).where(Message.contact_id == contact.id))
    assert message.status == "queued"
    return message


def test_an_email_still_queued_when_the_window_closed_waits_for_the_next_opening(
    session, make_contact, backend, settings, fake_sendgrid
):
    message = _queued_just_before_the_close(session, make_contact)
    half_past = WEDNESDAY_16_59 + timedelta(minutes=31)  # a backlog, a slow pace

    report = deliver_messages(session, [message.id], backend, settings, now=lambda: half_past)

    session.expire_all()
    held = session.get(Message, message.id)
    assert report.skipped == [message.id] and dict(fake_sendgrid.deliveries) == {}
    assert held.status == "skipped"
    assert held.error.startswith("held by the send window until 2026-11-26 09:00 UTC")
    assert held.enrollment.next_send_at == THURSDAY_9
    assert session.scalar(sa.select(Activity.detail).where(Activity.kind == "email_held"))

    # At the opening the tick queues that same row again, and it goes once.
    result = run_tick(session, lambda ids: None, now=THURSDAY_9)
    assert result.created == 0
    for _ in range(2):
        deliver_messages(session, [message.id], backend, settings, now=lambda: THURSDAY_9)
    assert dict(fake_sendgrid.deliveries) == {str(message.id): 1}
    assert session.scalar(sa.select(sa.func.count(Message.id))) == 1


def test_a_queue_minutes_behind_the_close_still_sends(
    session, make_contact, backend, settings, fake_sendgrid
):
    message = _queued_just_before_the_close(session, make_contact)
    ten_past = WEDNESDAY_16_59 + timedelta(minutes=11)
    assert settings.send_window_grace_minutes == 15

    deliver_messages(session, [message.id], backend, settings, now=lambda: ten_past)

    assert dict(fake_sendgrid.deliveries) == {str(message.id): 1}
    session.expire_all()
    assert session.get(Message, message.id).status == "sent"


# -- the tick: an email due just before the close -----------------------------------

HALF_A_MINUTE_BEFORE_THE_CLOSE = WEDNESDAY_16_59 + timedelta(seconds=30)
TICK_AFTER_THE_CLOSE = WEDNESDAY_16_59 + timedelta(seconds=80)  # 17:00:20


def _due_at(session, make_contact, due: datetime) -> Enrollment:
    contact = make_contact("lead")
    contact.timezone = "UTC"
    enrollment = session.scalar(sa.select(Enrollment).where(Enrollment.contact_id == contact.id))
    enrollment.next_send_at = due
    session.commit()
    return enrollment


def test_an_email_due_just_before_the_close_goes_when_the_tick_reaches_it(session, make_contact):
    """The tick runs every minute: an email the page dates 16:59 (due 16:59:30, inside
    the window) is queued by the tick of 17:00:20, not deferred to the next morning."""
    enrollment = _due_at(session, make_contact, HALF_A_MINUTE_BEFORE_THE_CLOSE)

    result = run_tick(
        session, lambda ids: None, now=TICK_AFTER_THE_CLOSE, window_grace=timedelta(minutes=15)
    )

    assert (result.created, result.deferred) == (1, 0)
    assert session.scalar(sa.select(Message.status).where(Message.enrollment_id == enrollment.id))


def test_an_email_due_well_before_the_close_waits_for_the_next_opening(session, make_contact):
    # The scheduler was down: due at 16:40, reached at 17:00:20, past the grace.
    enrollment = _due_at(session, make_contact, WEDNESDAY_16_59 - timedelta(minutes=19))

    result = run_tick(
        session, lambda ids: None, now=TICK_AFTER_THE_CLOSE, window_grace=timedelta(minutes=15)
    )

    assert (result.created, result.deferred) == (0, 1)
    session.refresh(enrollment)
    assert enrollment.next_send_at == THURSDAY_9


def test_the_scheduler_s_tick_allows_the_grace_of_its_settings(
    app, session, make_contact, monkeypatch
):
    from crm_app import jobs
    from crm_app.drip.delivery import tick

    _due_at(session, make_contact, HALF_A_MINUTE_BEFORE_THE_CLOSE)
    monkeypatch.setattr(tick, "utcnow", lambda: TICK_AFTER_THE_CLOSE)

    result = jobs.tick()

    assert (result["created"], result["deferred"]) == (1, 0)
