"""The circuit breaker (issue 15 item 3): a campaign whose last N sends bounce or draw
spam reports above its thresholds pauses itself, says why, and an admin resumes it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from crm_app.drip.campaigns.manage import set_campaign_status
from crm_app.drip.common.sql import insert_rows
from crm_app.drip.tracking.breaker import BREAKER_ACTOR
from crm_app.drip.tracking.events import ingest_events
from crm_app.models import Campaign, Message

SENT = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def _sends(session, contact, campaign: Campaign, count: int, start=SENT) -> list[int]:
    """`count` sent emails of the campaign (step-less rows: the breaker reads sends only)."""
    enrollment = contact.enrollments[0]
    rows = [
        {
            "enrollment_id": enrollment.id,
            "step_id": None,
            "contact_id": contact.id,
            "campaign_id": campaign.id,
            "status": "sent",
            "to_email": contact.email,
            "sent_at": start + timedelta(seconds=i),
        }
        for i in range(count)
    ]
    constants = {"attempts": 1, "subject": "", "html": "", "text": "", "headers": {}, "error": ""}
    ids = insert_rows(session, Message.__table__, rows, constants=constants, returning="id")
    session.commit()
    return sorted(ids)


def _report(session, kind: str, message_ids: list[int], tag: str = "") -> None:
    events = [
        {
            "event": kind,
            "email": "someone@example.com",
            "timestamp": int(SENT.timestamp()) + 3600,
            "sg_event_id": f"{kind}-{tag}{mid}",
            "message_id": str(mid),
            "type": "bounce",
        }
        for mid in message_ids
    ]
    ingest_events(session, events)
    session.commit()


def _lead(session, campaigns, sends: int) -> Campaign:
    lead = campaigns["lead"]
    lead.breaker_sends = sends
    session.commit()
    return lead


def test_bounces_trip_the_breaker_above_the_threshold_not_at_it(session, make_contact, campaigns):
    lead = _lead(session, campaigns, 100)
    ids = _sends(session, make_contact("lead"), lead, 100)
    _report(session, "bounce", ids[:5])  # 5 of 100: at 5 %, not above
    session.refresh(lead)
    assert lead.status == "active" and lead.paused_reason == ""

    _report(session, "bounce", ids[5:6])  # 6 of 100
    session.refresh(lead)
    assert lead.status == "paused"
    assert lead.paused_by == BREAKER_ACTOR
    assert "6 bounces over its last 100 sends (6.0 %, above 5 %)" in lead.paused_reason


def test_spam_reports_trip_it_above_three_per_thousand(session, make_contact, campaigns):
    lead = _lead(session, campaigns, 1000)
    ids = _sends(session, make_contact("lead"), lead, 1000)
    _report(session, "spamreport", ids[:3])
    session.refresh(lead)
    assert lead.status == "active"
    _report(session, "spamreport", ids[3:4])
    session.refresh(lead)
    assert lead.status == "paused" and "4 spam reports" in lead.paused_reason


def test_a_young_campaign_counts_its_missing_sends_as_clean(session, make_contact, campaigns):
    lead = _lead(session, campaigns, 200)
    ids = _sends(session, make_contact("lead"), lead, 20)
    _report(session, "bounce", ids[:10])  # 10 over 200: 5 %
    session.refresh(lead)
    assert lead.status == "active"
    _report(session, "bounce", ids[10:11])
    session.refresh(lead)
    assert lead.status == "paused" and "(20 so far)" in lead.paused_reason


def test_only_the_last_n_sends_count(session, make_contact, campaigns):
    lead = _lead(session, campaigns, 100)
    contact = make_contact("lead")
    old = _sends(session, contact, lead, 50, start=SENT - timedelta(days=5))
    _sends(session, contact, lead, 100)
    _report(session, "bounce", old[:10])  # older than the last 100 sends
    session.refresh(lead)
    assert lead.status == "active"


def test_off_when_n_is_zero(session, make_contact, campaigns):
    lead = _lead(session, campaigns, 0)
    ids = _sends(session, make_contact("lead"), lead, 10)
    _report(session, "bounce", ids)
    session.refresh(lead)
    assert lead.status == "active"


def test_admin_resume_counts_only_later_sends(session, make_contact, campaigns):
    lead = _lead(session, campaigns, 100)
    contact = make_contact("lead")
    ids = _sends(session, contact, lead, 100)
    _report(session, "bounce", ids[:6])
    session.refresh(lead)
    assert lead.status == "paused"

    set_campaign_status(session, lead, "active", actor="admin@example.com")
    session.commit()
    assert lead.paused_reason == "" and lead.breaker_counts_from is not None
    _report(session, "bounce", ids[6:7])  # an old send bouncing late
    session.refresh(lead)
    assert lead.status == "active"


def test_dashboard_and_campaign_page_say_why(admin, session, make_contact, campaigns):
    lead = _lead(session, campaigns, 100)
    ids = _sends(session, make_contact("lead"), lead, 100)
    _report(session, "bounce", ids[:7])
    home = admin.get("/").get_data(as_text=True)
    assert 'id="breaker-paused"' in home and "7 bounces over its last 100 sends" in home
    page = admin.get(f"/campaigns/{lead.id}").get_data(as_text=True)
    assert 'id="paused-reason"' in page and "7 bounces" in page

    # The admin resumes it from the campaign page: the reason is gone everywhere.
    admin.post(f"/campaigns/{lead.id}/status", {"status": "active"})
    home = admin.get("/").get_data(as_text=True)
    assert 'id="breaker-paused"' not in home


def test_breaker_settings_are_checked_and_kept_on_error(admin, session, campaigns):
    lead = campaigns["lead"]
    bad = {"breaker_sends": "-3", "breaker_bounce_pct": "abc", "breaker_spam_pct": "0.3"}
    response = admin.post(f"/campaigns/{lead.id}/breaker", bad, htmx=True)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert 'id="error-breaker_sends"' in html and 'id="error-breaker_bounce_pct"' in html
    assert 'value="-3"' in html and 'value="abc"' in html  # nothing typed is lost
    session.refresh(lead)
    assert lead.breaker_sends == 200

    good = {"breaker_sends": "500", "breaker_bounce_pct": "2", "breaker_spam_pct": "0.1"}
    assert admin.post(f"/campaigns/{lead.id}/breaker", good, htmx=True).status_code == 200
    session.refresh(lead)
    assert (lead.breaker_sends, lead.breaker_bounce_pct, lead.breaker_spam_pct) == (500, 2, 0.1)


def test_breaker_settings_need_an_admin_and_csrf(staff, admin_user, session, campaigns):
    lead = campaigns["lead"]
    form = {"breaker_sends": "5", "breaker_bounce_pct": "1", "breaker_spam_pct": "1"}
    assert staff.post(f"/campaigns/{lead.id}/breaker", form).status_code == 403
    staff.logout()
    staff.login("admin@example.com", "admin-password")
    assert staff.post(f"/campaigns/{lead.id}/breaker", form, csrf=False).status_code == 400
    assert session.scalar(sa.select(Campaign.breaker_sends).where(Campaign.id == lead.id)) == 200
