"""Guardrails, part two, in a real chromium: a contact in two campaigns shows its
itinerary and "why" explains its email held by the frequency cap; a burst of bounces
pauses a campaign with the reason on the dashboard and the campaign page, and an admin
resumes it. With SCREENSHOT_DIR set, the pages are saved there at 1280 and 390 px."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from crm_app.config import settings_of
from crm_app.drip.audience.enrollment import enroll
from crm_app.drip.common.sql import insert_rows
from crm_app.drip.delivery.frequency_cap import FrequencyCap
from crm_app.drip.delivery.tick import run_tick
from crm_app.extensions import db
from crm_app.models import Enrollment, Message, utcnow
from tests.browser.pages import log_in_as_admin, screenshots
from tests.delivery_helpers import open_all_week
from tests.webhook_signing import WebhookSigner, encode

pytestmark = pytest.mark.browser


def test_itinerary_across_two_campaigns_and_why_a_held_email(
    app, page, admin_user, campaigns, make_contact, monkeypatch, tmp_path
):
    monkeypatch.setitem(app.config, "FREQUENCY_CAP_COUNT", 1)
    session = db.session
    contact = make_contact("lead", first_name="Jamie", last_name="Lee",
                           timezone="America/New_York")  # fmt: skip
    enroll(session, contact, campaigns["networking"], actor="test")
    now = utcnow()
    for enrollment in session.scalars(
        sa.select(Enrollment).where(Enrollment.contact_id == contact.id)
    ):
        open_all_week(enrollment.campaign)
        enrollment.next_send_at = now - timedelta(minutes=1)
    session.commit()
    # Both due now: the tick queues one and the cap holds the other for a day.
    cap = FrequencyCap.from_settings(settings_of(app))
    result = run_tick(session, lambda ids: None, now=now, frequency_cap=cap)
    assert result.created == 1 and result.held == 1
    held = session.scalar(
        sa.select(Enrollment).where(
            Enrollment.contact_id == contact.id, Enrollment.cap_held_until.is_not(None)
        )
    )

    log_in_as_admin(page)
    page.goto(f"/contacts/{contact.id}")
    table = page.locator("#itinerary-table")
    expect(table).to_contain_text("Lead")
    expect(table).to_contain_text("Networking")
    expect(table).to_contain_text("on its way now")
    expect(table).to_contain_text("held by the frequency cap (1 email per day)")
    expect(table.locator("td[data-when=contact]").first).to_contain_text("EST")

    page.locator(f"#itinerary-table tr[data-step='{held.current_step_id}']").get_by_role(
        "link", name="Why?"
    ).click()
    answer = page.locator("#why-answer")
    expect(answer).to_contain_text("Held by the frequency cap until")
    expect(answer).to_contain_text("across all campaigns")
    # The itinerary and the answer, every element of them, fit a phone.
    screenshots(page, "itinerary-why", tmp_path, fits="#itinerary, #itinerary *")


def test_a_burst_of_bounces_pauses_the_campaign_with_the_reason_on_the_dashboard(
    app, page, admin_user, campaigns, make_contact, monkeypatch, tmp_path
):
    signer = WebhookSigner()
    monkeypatch.setitem(app.config, "SENDGRID_WEBHOOK_PUBLIC_KEY", signer.public_key_b64)
    session = db.session
    lead = campaigns["lead"]
    lead.breaker_sends = 100
    contact = make_contact("lead")
    enrollment = contact.enrollments[0]
    now = utcnow()
    rows = [
        {"enrollment_id": enrollment.id, "step_id": None, "contact_id": contact.id,
         "campaign_id": lead.id, "status": "sent", "to_email": f"r{i}@example.com",
         "sent_at": now - timedelta(minutes=100 - i)}
        for i in range(100)
    ]  # fmt: skip
    constants = {"attempts": 1, "subject": "", "html": "", "text": "", "headers": {}, "error": ""}
    ids = insert_rows(session, Message.__table__, rows, constants=constants, returning="id")
    session.commit()

    log_in_as_admin(page)
    events = [
        {"event": "bounce", "email": f"r{n}@example.com", "timestamp": int(now.timestamp()),
         "sg_event_id": f"bounce-{mid}", "message_id": str(mid), "type": "bounce",
         "reason": "550 5.1.1 The email account that you tried to reach does not exist"}
        for n, mid in enumerate(sorted(ids)[:8])
    ]  # fmt: skip
    body = encode(events)
    response = page.request.post("/webhooks/sendgrid", data=body, headers=signer.headers(body))
    assert response.ok, response.text()

    page.goto("/")
    panel = page.locator("#breaker-paused")
    expect(panel).to_contain_text("Lead")
    expect(panel).to_contain_text("8 bounces over its last 100 sends (8.0 %, above 5 %)")
    screenshots(page, "dashboard-breaker", tmp_path, fits="main, main *")

    panel.get_by_role("link", name="Lead").click()
    expect(page.locator("#campaign-status")).to_have_text("paused")
    expect(page.locator("#paused-reason")).to_contain_text("8 bounces")
    screenshots(page, "campaign-breaker", tmp_path, fits="#campaign-settings, #campaign-settings *")
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#campaign-status")).to_have_text("active")
    page.goto("/")
    expect(page.locator("#breaker-paused")).to_have_count(0)
