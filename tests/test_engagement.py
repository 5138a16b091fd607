"""Human versus machine engagement (issue 15 item 2): machine opens and scanner clicks
are kept, flagged, and counted apart from a person's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from crm_app.drip.reporting.analytics import campaign_report, campaigns_overview
from crm_app.drip.reporting.date_range import DateRange
from crm_app.drip.tracking.events import ingest_events
from crm_app.models import EmailEvent, Message

SENT = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def _sent(session, contact, step_index=0) -> Message:
    enrollment = contact.enrollments[0]
    message = Message(
        enrollment_id=enrollment.id,
        step_id=enrollment.campaign.steps[step_index].id,
        contact_id=contact.id,
        campaign_id=enrollment.campaign_id,
        status="sent",
        to_email=contact.email,
        subject="Hello",
        sent_at=SENT,
    )
    session.add(message)
    session.commit()
    return message


def _event(kind, message, n, at, **extra):
    return {
        "event": kind,
        "email": message.to_email,
        "timestamp": int(at.timestamp()),
        "sg_event_id": f"{kind}-{message.id}-{n}",
        "message_id": str(message.id),
        **extra,
    }


def _ingest(session, events):
    ingest_events(session, events)
    session.commit()


def _machine_flags(session, message) -> dict[str, bool]:
    rows = session.execute(
        sa.select(EmailEvent.sg_event_id, EmailEvent.machine).where(
            EmailEvent.message_id == message.id
        )
    )
    return dict(rows.all())


def test_apple_privacy_open_is_kept_but_not_a_human_open(session, make_contact):
    message = _sent(session, make_contact("lead"))
    proxy_open = _event("open", message, 1, SENT + timedelta(minutes=1), sg_machine_open=True)
    _ingest(session, [proxy_open])
    session.refresh(message)
    assert message.opened_at is not None  # the raw figure keeps it
    assert message.human_opened_at is None
    assert _machine_flags(session, message) == {f"open-{message.id}-1": True}

    later = SENT + timedelta(hours=3)
    _ingest(session, [_event("open", message, 2, later, sg_machine_open=False)])
    session.refresh(message)
    assert message.human_opened_at == later
    assert message.opened_at == SENT + timedelta(minutes=1)


def test_click_within_seconds_of_delivery_is_a_scanner(session, make_contact):
    message = _sent(session, make_contact("lead"))
    delivered = SENT + timedelta(seconds=30)
    _ingest(
        session,
        [
            _event("delivered", message, 1, delivered),
            _event("click", message, 1, delivered + timedelta(seconds=2), url="https://a.example"),
        ],
    )
    session.refresh(message)
    assert message.clicked_at is not None and message.human_clicked_at is None
    assert _machine_flags(session, message)[f"click-{message.id}-1"] is True

    # A click before the delivery event is a scanner's too.
    other = _sent(session, make_contact("lead"))
    _ingest(
        session, [_event("click", other, 1, SENT - timedelta(seconds=1), url="https://a.example")]
    )
    session.refresh(other)
    assert other.clicked_at is not None and other.human_clicked_at is None


def test_every_link_clicked_at_once_is_a_scanner_and_a_later_click_is_human(session, make_contact):
    message = _sent(session, make_contact("lead"))
    at = SENT + timedelta(minutes=10)
    _ingest(
        session,
        [
            _event("click", message, 1, at, url="https://a.example"),
            _event("click", message, 2, at + timedelta(seconds=1), url="https://b.example"),
        ],
    )
    session.refresh(message)
    assert message.clicked_at == at and message.human_clicked_at is None
    assert set(_machine_flags(session, message).values()) == {True}

    person = at + timedelta(hours=1)
    _ingest(session, [_event("click", message, 3, person, url="https://a.example")])
    session.refresh(message)
    assert message.human_clicked_at == person


def test_analytics_show_human_beside_raw(session, make_contact, campaigns):
    human, machine = _sent(session, make_contact("lead")), _sent(session, make_contact("lead"))
    later = SENT + timedelta(hours=2)
    _ingest(
        session,
        [
            _event("open", human, 1, later),
            _event("click", human, 1, later, url="https://a.example"),
            _event("open", machine, 1, later, sg_machine_open=True),
            _event("click", machine, 1, SENT + timedelta(seconds=1), url="https://a.example"),
        ],
    )
    lead = campaigns["lead"]

    period = DateRange(SENT.date(), SENT.date())
    totals = campaigns_overview(session, period).totals
    assert (totals.opened, totals.human_opened) == (2, 1)
    assert (totals.clicked, totals.human_clicked) == (2, 1)
    report = campaign_report(session, lead, period)
    assert report.summary.counts.human_opened == 1
    assert report.steps[0].counts.human_clicked == 1
