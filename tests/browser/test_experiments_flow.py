"""Experiments in a real chromium: two subject variants sent to 200 contacts through
the Outbox, signed open events, per-variant results and a promotion; an industry block
that two contacts preview differently; a recorded goal that takes a contact out of its
sequence. With SCREENSHOT_DIR set, the pages are saved there at 1280 and 390 px."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from playwright.sync_api import Page, expect

from crm_app.config import settings_of
from crm_app.drip.delivery.backends import OutboxBackend
from crm_app.drip.delivery.pipeline import deliver_messages
from crm_app.drip.delivery.tick import run_tick
from crm_app.extensions import db
from crm_app.models import Message, StepVariant, utcnow
from tests.browser.pages import log_in_as_admin, screenshots
from tests.delivery_helpers import bulk_due, open_all_week
from tests.webhook_signing import WebhookSigner, encode

pytestmark = pytest.mark.browser


def test_ab_test_blocks_and_goals_end_to_end(
    page: Page, app, admin_user, campaigns, make_contact, monkeypatch, tmp_path
):
    signer = WebhookSigner()
    monkeypatch.setitem(app.config, "SENDGRID_WEBHOOK_PUBLIC_KEY", signer.public_key_b64)
    monkeypatch.setitem(app.config, "AB_MIN_SENDS_PER_VARIANT", 50)
    campaign = campaigns["lead"]
    open_all_week(campaign)
    db.session.commit()
    log_in_as_admin(page)

    # 1. Two subject variants on email 1.
    page.goto(f"/campaigns/{campaign.id}")
    page.locator(f"#step-{campaign.steps[0].id}").get_by_role(
        "link", name="A/B test & condition"
    ).click()
    page.get_by_label("Subject").first.fill("Quick question, {{ contact.first_name }}")
    page.locator("#field-variant-B-subject").fill("A 5-minute idea for {{ contact.company }}")
    page.get_by_role("button", name="Start the test").click()
    expect(page.get_by_text("A/B test started.")).to_be_visible()

    # 2. Deliver to 200 contacts through the Outbox.
    bulk_due(db.session, campaign, 200, utcnow() - timedelta(minutes=1), prefix="abtest")
    run_tick(db.session, lambda ids: None)
    ids = list(db.session.scalars(sa.select(Message.id).where(Message.status == "queued")))
    assert len(ids) == 200
    deliver_messages(db.session, ids, OutboxBackend(), settings_of(app))
    variants = {v.key: v for v in db.session.scalars(sa.select(StepVariant))}
    sent = list(db.session.scalars(sa.select(Message).where(Message.status == "sent")))
    assert len(sent) == 200

    # 3. Signed open events: 3 in 5 of B's emails, 1 in 10 of A's.
    events = [
        {
            "event": "open",
            "email": m.to_email,
            "timestamp": int(utcnow().timestamp()),
            "sg_event_id": f"open-{m.id}",
            "message_id": str(m.id),
            "contact_id": str(m.contact_id),
            "campaign_id": str(m.campaign_id),
        }
        for m in sent
        if m.id % (5 if m.variant_id == variants["B"].id else 10)
        < (3 if m.variant_id == variants["B"].id else 1)
    ]
    body = encode(events)
    answer = page.request.post("/webhooks/sendgrid", data=body, headers=signer.headers(body))
    assert answer.ok, answer.text()

    # A test of variant B from the preview page; the Outbox names each email's variant.
    # The preview shows variant B's subject once chosen; the test form then sends it.
    page.goto(f"/campaigns/{campaign.id}/steps/{campaign.steps[0].id}/preview")
    page.get_by_label("Version shown").select_option("B")
    page.get_by_role("button", name="Show").click()
    expect(page.locator(".preview-subject")).to_contain_text("A 5-minute idea for")
    screenshots(page, "ab-preview-variant", tmp_path)
    expect(page.get_by_label("Version", exact=True)).to_have_value("B")
    page.get_by_role("button", name="Send a test").click()
    expect(page.get_by_text("variant B, outbox").first).to_be_visible()
    screenshots(page, "ab-test-send", tmp_path)
    page.goto("/admin/outbox")
    expect(page.locator(".variant-key").first).to_be_visible()
    screenshots(page, "outbox-variants", tmp_path)
    page.goto(f"/campaigns/{campaign.id}/steps/{campaign.steps[0].id}/experiment")

    # 4. Per-variant results and a verdict; promote B.
    page.reload()
    rows = page.locator("#variant-results tbody tr")
    expect(rows).to_have_count(2)
    sent_a = int(page.locator("tr[data-variant=A] [data-figure=sent]").inner_text())
    sent_b = int(page.locator("tr[data-variant=B] [data-figure=sent]").inner_text())
    assert sent_a + sent_b == 200
    expect(page.locator("#verdicts [data-metric=opened]")).to_contain_text("B wins on opens")
    screenshots(page, "ab-results", tmp_path)
    page.get_by_role("button", name="Promote B").click()
    expect(page.get_by_text("Variant B promoted")).to_be_visible()
    expect(page.get_by_text("No test is running")).to_be_visible()
    expect(page.get_by_text("Earlier tests")).to_be_visible()
    db.session.expire_all()
    assert campaign.steps[0].subject == "A 5-minute idea for {{ contact.company }}"
    page.goto(f"/analytics/campaigns/{campaign.id}")
    expect(page.locator("#ab-tests tr[data-variant=B] td").first).to_have_text("promoted")
    screenshots(page, "ab-analytics", tmp_path)

    # A condition on email 2, shown on the campaign page.
    page.goto(f"/campaigns/{campaign.id}/steps/{campaign.steps[1].id}/experiment")
    page.get_by_label("Kind").select_option("engagement")
    page.get_by_label("Previous email").select_option("not_opened")
    page.get_by_role("button", name="Save the condition").click()
    expect(page.get_by_text("Condition saved.")).to_be_visible()
    page.goto(f"/campaigns/{campaign.id}")
    expect(page.locator(f"#step-{campaign.steps[1].id} .step-experiment")).to_contain_text(
        "not opened within this email's delay"
    )
    screenshots(page, "campaign-condition", tmp_path)

    # 5. An industry block; two contacts preview differently.
    page.goto("/blocks/new")
    page.locator("#field-name").fill("intro")
    page.locator("#field-rule-1-field").fill("industry")
    page.locator("#field-rule-1-value").fill("Manufacturing")
    page.locator("#field-rule-1-content").fill(
        "We help plants like {{ contact.company }} cut downtime."
    )
    page.get_by_label("Default text (no rule matches)").fill("We help teams like yours grow.")
    page.get_by_role("button", name="Save block").click()
    expect(page.get_by_text("Block intro saved.")).to_be_visible()
    screenshots(page, "blocks", tmp_path)
    step = campaign.steps[1]
    step.body_text = "{{ block('intro') }}\n" + step.body_text
    step.body_html = "<p>{{ block('intro') }}</p>\n" + step.body_html
    db.session.commit()
    maker = make_contact("lead", industry="Manufacturing", company="Acme Steel")
    shop = make_contact("lead", industry="Retail", company="Corner Shop")
    base = f"/campaigns/{campaign.id}/steps/{step.id}/preview"
    page.goto(f"{base}?contact_id={maker.id}")
    expect(page.locator(".text-preview")).to_contain_text("We help plants like Acme Steel")
    expect(page.locator(".blocks-applied")).to_contain_text('rule 1: industry is "Manufacturing"')
    screenshots(page, "block-preview", tmp_path)
    page.goto(f"{base}?contact_id={shop.id}")
    expect(page.locator(".text-preview")).to_contain_text("We help teams like yours grow.")
    expect(page.locator(".blocks-applied")).to_contain_text("default")

    # 6. A goal on the campaign; recording it takes the contact out at once.
    page.goto(f"/campaigns/{campaign.id}/edit")
    page.get_by_label("Goal events (one per line)").fill("Demo booked")
    page.get_by_role("button", name="Save").first.click()
    page.goto(f"/contacts/{maker.id}")
    page.locator("#goal-name").fill("demo booked")
    page.get_by_role("button", name="Record goal").click()
    expect(page.get_by_text("converted: goal demo booked").first).to_be_visible()
    expect(page.locator(".enrollment-finished .badge-converted")).to_have_text("converted")
    screenshots(page, "goal", tmp_path)
    db.session.expire_all()
    assert maker.enrollments[0].converted_at is not None
