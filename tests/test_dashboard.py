"""The home dashboard: what went out, what is coming, what needs a look, and the webhook."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from flask import url_for

from crm_app.drip.delivery.provider_health import (
    clear_backend_auth_failure,
    set_backend_auth_failure,
)
from crm_app.drip.reporting import dashboard
from crm_app.drip.reporting.dashboard import home_dashboard
from crm_app.models import Contact, Enrollment, Message
from crm_app.models.tracking import WebhookBatch

# A Wednesday afternoon: the week started on Monday 2026-03-02.
NOW = datetime(2026, 3, 4, 15, 0, tzinfo=UTC)


@pytest.fixture
def fill(session, campaigns):
    """Adds contacts, enrolments and messages relative to a given `now`."""
    lead, client = campaigns["lead"], campaigns["client"]
    counter = iter(range(1, 1000))

    def enrol(campaign, *, next_send_at=None, status="active"):
        n = next(counter)
        contact = Contact(email=f"dash{n}@example.com", contact_type="lead")
        session.add(contact)
        session.flush()
        row = Enrollment(
            contact_id=contact.id,
            campaign_id=campaign.id,
            status=status,
            next_send_at=next_send_at,
            ended_at=None if status == "active" else NOW,
        )
        session.add(row)
        session.flush()
        return row

    def message(sent_at=None, status="sent"):
        enrollment = enrol(lead, status="completed")
        session.add(
            Message(
                enrollment_id=enrollment.id,
                step_id=lead.steps[0].id,
                contact_id=enrollment.contact_id,
                campaign_id=lead.id,
                status=status,
                sent_at=sent_at,
            )
        )

    def build(now: datetime):
        message(now - timedelta(minutes=5))  # today
        message(now.replace(hour=0, minute=0, second=1))  # today, just after midnight
        message(now - timedelta(days=1))  # Tuesday: this week, not today
        message(now - timedelta(days=3))  # last Sunday: neither
        message(None, status="failed")
        message(None, status="failed")
        message(None, status="in_doubt")
        message(None, status="queued")
        enrol(lead, next_send_at=now + timedelta(hours=2))
        enrol(lead, next_send_at=now - timedelta(minutes=10))  # overdue: goes at the next tick
        enrol(client, next_send_at=now + timedelta(hours=23))
        enrol(client, next_send_at=now + timedelta(hours=30))  # later than 24 h
        enrol(client, status="stopped")
        session.commit()
        return {"lead": lead, "client": client}

    return build


@pytest.fixture
def clock_at_now(monkeypatch):
    """The home page reads the clock when it is requested: pin it at NOW, so today, this
    week and the next 24 h are the same whatever the date and hour the suite runs at."""
    monkeypatch.setattr("crm_app.drip.reporting.dashboard.utcnow", lambda: NOW)
    return NOW


def test_dashboard_counts_sent_scheduled_active_failed_and_in_doubt(session, fill):
    fill(NOW)
    board = home_dashboard(session, now=NOW)
    assert (board.sent_today, board.sent_this_week) == (2, 3)
    assert board.scheduled_next_24h == 3
    assert [(name, count) for _, name, count in board.active_by_campaign] == [
        ("Client", 2),
        ("Lead", 2),
    ]
    assert (board.failed, board.in_doubt) == (2, 1)


def test_today_starts_at_midnight_in_the_viewers_time_zone(session, fill):
    fill(NOW)
    # 15:00 UTC is 10:00 in New York, whose day began at 05:00 UTC: the 00:00:01 UTC send
    # belongs to New York's yesterday.
    board = home_dashboard(session, tz_name="America/New_York", now=NOW)
    assert board.sent_today == 1
    assert home_dashboard(session, tz_name="Not/AZone", now=NOW).sent_today == 2


def test_webhook_never_received_is_visible_as_a_warning(session, fill):
    fill(NOW)
    board = home_dashboard(session, now=NOW)
    assert board.last_webhook is None
    assert "never called the webhook" in board.webhook_warning
    session.add(WebhookBatch(received_at=NOW - timedelta(hours=30), event_count=5))
    session.add(WebhookBatch(received_at=NOW - timedelta(hours=26), event_count=7))
    session.commit()
    board = home_dashboard(session, now=NOW)
    assert board.last_webhook.event_count == 7
    assert "No webhook call for over 24 hours" in board.webhook_warning
    session.add(WebhookBatch(received_at=NOW - timedelta(minutes=1), event_count=3))
    session.commit()
    assert home_dashboard(session, now=NOW).webhook_warning == ""


def test_home_page_shows_the_counts_and_the_last_webhook(session, staff, fill, clock_at_now):
    fill(NOW)
    html = staff.get("/").get_data(as_text=True)
    assert "Sent today</span><strong>2</strong>" in html
    assert "Sent this week</span><strong>3</strong>" in html
    assert "Scheduled, next 24 h</span><strong>3</strong>" in html
    assert "<strong>2</strong></div>" in html.split('id="failed"')[1]  # plain number for staff
    assert "<strong>1</strong></div>" in html.split('id="in-doubt"')[1]
    assert ">Client</a></td><td>2</td>" in html
    assert "<strong>Never</strong> received." in html
    session.add(
        WebhookBatch(
            received_at=NOW, event_count=12, applied_count=10, duplicate_count=1, rejected_count=1
        )
    )
    session.commit()
    html = staff.get("/").get_data(as_text=True)
    assert "12 events: 10 applied, 1 duplicates, 1 rejected" in html
    assert "Never" not in html


def test_home_page_with_nothing_yet(staff, campaigns):
    response = staff.get("/")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "No active enrolments." in html
    assert "<strong>Never</strong> received." in html


def test_admin_gets_links_to_the_failed_and_in_doubt_message_lists(app, admin, fill, clock_at_now):
    fill(NOW)
    html = admin.get("/").get_data(as_text=True)
    with app.test_request_context():
        failed_url = url_for("admin.messages", status="failed")
        in_doubt_url = url_for("admin.messages", status="in_doubt")
    failed_card = html.split('id="failed"')[1].split("</div>")[0]
    in_doubt_card = html.split('id="in-doubt"')[1].split("</div>")[0]
    assert f'<strong><a href="{failed_url}">2</a></strong>' in failed_card
    assert f'<strong><a href="{in_doubt_url}">1</a></strong>' in in_doubt_card
    assert 'href="/suppressions/"' in html  # the admin's nav and quick links


def test_no_webhook_warning_when_mail_goes_to_the_outbox(session, fill):
    """Without SendGrid nothing can call the webhook: silence is not a fault then."""
    fill(NOW)
    assert home_dashboard(session, now=NOW).webhook_warning  # with SendGrid: a warning
    assert home_dashboard(session, now=NOW, expects_webhook=False).webhook_warning == ""


def test_counts_stop_at_the_cap_and_say_so(admin, app, fill, clock_at_now, monkeypatch):
    """At a million contacts an exact count would read every row on each visit: the
    dashboard counts up to a cap and says "N+" beyond it (analytics has exact figures)."""
    usual_cap = dashboard.DASHBOARD_COUNT_CAP
    dashboard._figures_statement.cache_clear()  # whatever earlier tests built
    dashboard._campaigns_statement.cache_clear()
    fill(NOW)
    monkeypatch.setattr(dashboard, "DASHBOARD_COUNT_CAP", 1)
    html = admin.get("/").get_data(as_text=True)
    assert '<span class="muted">Sent this week</span><strong>1+</strong>' in html
    # The statements are built once per cap: each cap counts up to its own.
    monkeypatch.setattr(dashboard, "DASHBOARD_COUNT_CAP", 2)
    html = admin.get("/").get_data(as_text=True)
    assert '<span class="muted">Sent this week</span><strong>2+</strong>' in html
    assert '<span class="muted">Sent today</span><strong>2</strong>' in html
    assert ">Client</a></td><td>2</td>" in html
    monkeypatch.setattr(dashboard, "DASHBOARD_COUNT_CAP", usual_cap)
    html = admin.get("/").get_data(as_text=True)
    assert '<span class="muted">Sent this week</span><strong>3</strong>' in html


def test_the_dashboard_is_three_statements_breaker_and_in_doubt_figures_included(
    session, fill, campaigns
):
    """One row of counts (the in-doubt resolutions too), one row per campaign (the
    breaker's pauses too) and SendGrid's refusal of the key by its primary key, plus the
    last webhook batch once there is one."""
    from sqlalchemy import event

    from crm_app.drip.tracking.breaker import BREAKER_ACTOR

    fill(NOW)
    campaigns["client"].status, campaigns["client"].paused_by = "paused", BREAKER_ACTOR
    campaigns["client"].paused_at = NOW
    campaigns["client"].paused_reason = "7 bounces over its last 100 sends"
    session.commit()
    statements: list[str] = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(session.get_bind(), "before_cursor_execute", listener)
    try:
        board = home_dashboard(session, now=NOW)
    finally:
        event.remove(session.get_bind(), "before_cursor_execute", listener)
    assert len(statements) == 3 + (board.last_webhook is not None)
    assert board.auth_failure is None
    assert [(c.name, c.paused_reason) for c in board.paused_by_breaker] == [
        ("Client", "7 bounces over its last 100 sends")
    ]
    assert board.in_doubt_resolved == {"sendgrid": 0, "requeued": 0, "admin": 0}


REFUSAL = "SendGrid refused it (401): The provided authorization grant is invalid"


def _auth_banner(html: str) -> str:
    return html.split('id="sendgrid-auth-failure"')[1].split("</section>")[0]


def test_staff_see_that_sendgrid_refuses_the_key_while_it_does(session, staff, campaigns):
    """Health turns red on a 401/403; the home page must say so too, not only "Failed"."""
    assert 'id="sendgrid-auth-failure"' not in staff.get("/").get_data(as_text=True)
    set_backend_auth_failure(session, REFUSAL, NOW)
    session.commit()
    banner = _auth_banner(staff.get("/").get_data(as_text=True))
    assert "SendGrid refuses the API key" in banner
    assert "15:00" in banner  # when it last refused
    assert "authorization grant is invalid" in banner
    assert "sending is stopped until the key works" in banner
    assert "SENDGRID_API_KEY" not in banner  # what to do is the admins' part
    clear_backend_auth_failure(session)  # the next accepted send
    session.commit()
    assert 'id="sendgrid-auth-failure"' not in staff.get("/").get_data(as_text=True)


def test_admins_are_told_to_check_the_api_key(session, admin, campaigns):
    set_backend_auth_failure(session, REFUSAL, NOW)
    session.commit()
    banner = _auth_banner(admin.get("/").get_data(as_text=True))
    assert "SendGrid refuses the API key" in banner
    assert "<code>SENDGRID_API_KEY</code>" in banner


def test_emails_of_a_paused_campaign_are_not_counted_as_scheduled(session, fill):
    """Client is paused: its email due in 23 h goes nowhere until it is resumed (the
    contact's page says so too)."""
    campaigns = fill(NOW)
    campaigns["client"].status = "paused"
    session.commit()
    assert home_dashboard(session, now=NOW).scheduled_next_24h == 2


def test_an_email_resent_and_in_doubt_again_is_not_counted_as_settled(session, fill):
    """An admin's Resend marks the resolution at once; while the resend is in doubt
    again, the dashboard counts it in doubt, not as settled by an admin."""
    fill(NOW)
    doubtful = session.scalar(sa.select(Message).where(Message.status == "in_doubt"))
    doubtful.in_doubt_resolution = "admin"
    session.commit()
    board = home_dashboard(session, now=NOW)
    assert board.in_doubt == 1 and board.in_doubt_resolved["admin"] == 0
    doubtful.status = "sent"
    session.commit()
    assert home_dashboard(session, now=NOW).in_doubt_resolved["admin"] == 1
