"""Issue 11's "done means", in a real browser: create a campaign with three emails, enrol
a contact, edit email 2 while it waits (the impact note), restore the first version,
send yourself a test, stop and re-enrol the contact and see it resume: the Outbox
holds no repeat. And no page names an email by its template source."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from crm_app.config import settings_of
from crm_app.drip.campaigns.steps import StepInput, update_step
from crm_app.drip.delivery.backends import OutboxBackend
from crm_app.drip.delivery.pipeline import deliver_messages
from crm_app.drip.delivery.tick import run_tick
from crm_app.extensions import db
from crm_app.models import Campaign, Enrollment, Message, utcnow
from tests.delivery_helpers import open_all_week

pytestmark = pytest.mark.browser

INDUSTRY = "{% if contact.industry %}Ideas for {{ contact.industry }}{% else %}Ideas{% endif %}"
EMAILS = [  # (delay, subject, HTML body)
    ("0", "Welcome aboard, {{ contact.first_name }}", "<p>Hi {{ contact.first_name }}.</p>"),
    ("2", "Your first week at {{ company.name | default('your company', true) }}", "<p>One.</p>"),
    ("3", INDUSTRY, "<p>Ideas.</p>"),
]
TEMPLATE_SOURCE = re.compile(r"\{\{|\{%")
# Every email must carry the unsubscribe link: the editor refuses one without it.
LINK_HTML = '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'
LINK_TEXT = "\nUnsubscribe: {{ unsubscribe_url }}"


def _log_in(page) -> None:
    page.goto("/login?next=/campaigns/")
    page.get_by_label("Email").fill("admin@example.com")
    page.get_by_label("Password").fill("admin-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Campaigns")).to_be_visible()


def _send_due(app) -> list[int]:
    """What the scheduler and a worker would do now: the due emails go to the Outbox."""
    session = db.session
    for enrollment in session.scalars(sa.select(Enrollment).where(Enrollment.status == "active")):
        if enrollment.next_send_at is not None:
            enrollment.next_send_at = utcnow() - timedelta(seconds=1)
    session.commit()
    ids = run_tick(session, lambda ids: None, now=utcnow()).enqueued
    deliver_messages(session, ids, OutboxBackend(), settings_of(app))
    session.remove()
    return ids


def _visible_text(page) -> str:
    return page.locator("body").inner_text()


def test_authoring_a_campaign_end_to_end_sends_nothing_twice(app, page, admin_user, campaigns):
    _log_in(page)

    # A new campaign (manual enrolment, resume) with three emails.
    page.get_by_role("link", name="New campaign").click()
    page.get_by_label("Name").fill("Trial onboarding")
    page.get_by_label("Trigger").select_option("")
    page.get_by_role("button", name="Create campaign").click()
    expect(page.get_by_text("Trial onboarding created.")).to_be_visible()
    for delay, subject, html in EMAILS:
        page.get_by_role("link", name="Add an email").click()
        page.get_by_label("Days after").fill(delay)
        page.get_by_label("Subject").fill(subject)
        page.get_by_label("HTML body").fill(html + LINK_HTML)
        page.get_by_label("Plain-text body").fill("Hello {{ contact.first_name }}" + LINK_TEXT)
        page.get_by_label("Plain-text body").press("End")
        expect(page.locator("#live-preview")).to_contain_text("Hello Alex")  # live, htmx
        page.get_by_role("button", name="Add the email").click()
    expect(page.locator("ol.steps > li")).to_have_count(3)
    expect(page.get_by_role("heading", name="Email 2: Your first week at Northwind Traders"))
    campaign = db.session.scalar(sa.select(Campaign).where(Campaign.name == "Trial onboarding"))
    open_all_week(campaign)
    db.session.commit()
    campaign_id = campaign.id
    db.session.remove()
    assert not TEMPLATE_SOURCE.search(_visible_text(page))

    # Enrol a contact; email 1 goes out; it now waits for email 2.
    page.goto("/contacts/new")
    page.get_by_label("First name").fill("Noor")
    page.get_by_label("Email", exact=True).fill("noor@example.com")
    page.get_by_label("Contact type").select_option("networking")
    page.get_by_role("button", name="Create contact").click()
    panel = page.locator("#campaign-panel")
    panel.get_by_label("Campaign").select_option(label="Trial onboarding")
    panel.get_by_role("button", name="Enrol", exact=True).click()
    expect(panel).to_contain_text("Enrolled in Trial onboarding.")
    contact_url = page.url
    _send_due(app)

    # Edit email 2 while the contact waits for it: the impact note says who gets it.
    page.goto(f"/campaigns/{campaign_id}")
    page.locator("ol.steps > li").nth(1).get_by_role("link", name="Edit").click()
    page.get_by_label("HTML body").fill("<p>Week one, revised.</p>" + LINK_HTML)
    page.get_by_label("HTML body").press("End")  # a key goes up: the live preview follows
    expect(page.locator("#live-preview .impact")).to_contain_text(
        "1 contact(s) waiting for email 2 “Your first week at Northwind Traders” will get the "
        "version you save."
    )
    page.get_by_role("button", name="Save as a new version").click()
    expect(page.get_by_text("saved as version 2")).to_be_visible()

    # Restore the first version (saved as version 3).
    page.locator("ol.steps > li").nth(1).get_by_role("link", name="History").click()
    page.locator('tr[data-version="1"]').get_by_role("button", name="Restore").click()
    expect(page.get_by_text("version 1 restored as version 3")).to_be_visible()
    page.get_by_role("button", name="Compare the two chosen versions").click()
    expect(page.locator("table.diff")).to_contain_text("Week one, revised.")  # HTML only

    # Send yourself a test of email 2.
    page.goto(f"/campaigns/{campaign_id}")
    page.locator("ol.steps > li").nth(1).get_by_role("link", name="Preview & test").click()
    page.get_by_role("button", name="Send a test").click()
    expect(page.get_by_text("Test kept in the Outbox: “[Test] Your first week at")).to_be_visible()

    # Stop all, enrol again: it resumes at email 2.
    page.goto(contact_url)
    page.once("dialog", lambda dialog: dialog.accept())
    panel.get_by_role("button", name="Stop all").click()
    expect(panel).to_contain_text("Stopped 2 enrolments.")
    panel.get_by_label("Campaign").select_option(label="Trial onboarding")
    panel.get_by_role("button", name="Enrol", exact=True).click()
    expect(panel).to_contain_text("Enrolled in Trial onboarding again: resuming at Email 2")
    _send_due(app)

    # The Outbox: email 1 once, email 2 once (the restored text), and the test apart.
    page.goto("/admin/outbox")
    rows = page.locator("table").first.locator("tbody tr")
    expect(rows.filter(has_text="Welcome aboard, Noor")).to_have_count(1)
    expect(rows.filter(has_text="Your first week at")).to_have_count(1)
    expect(page.locator("#test-sends")).to_contain_text("[Test] Your first week at")
    sent = db.session.scalars(
        sa.select(Message.step_id).where(
            Message.campaign_id == campaign_id, Message.status == "sent"
        )
    ).all()
    assert len(sent) == len(set(sent)) == 2


def test_campaign_and_analytics_pages_never_show_template_source(page, admin_user, campaigns):
    _log_in(page)
    lead = campaigns["lead"]
    for url in (
        "/campaigns/",
        f"/campaigns/{lead.id}",
        f"/campaigns/{lead.id}/steps/{lead.steps[0].id}/preview",
        "/analytics/",
        f"/analytics/campaigns/{lead.id}",
    ):
        page.goto(url)
        text = _visible_text(page)
        assert text.strip(), url
        assert not TEMPLATE_SOURCE.search(text), (url, TEMPLATE_SOURCE.search(text))
    # Every email's heading on the campaign page reads as a subject.
    headings = (
        page.goto(f"/campaigns/{lead.id}") and page.locator("h3.step-title").all_inner_texts()
    )
    assert headings[0] == "Email 1: Thanks for getting in touch with Drip CRM"


def test_the_authoring_pages_fit_a_phone(page, admin_user, campaigns):
    """Their content is never wider than a 390 px screen (wide tables scroll in their
    own box). The top navigation's own fit at that width is issue 13's."""
    lead = campaigns["lead"]
    step = lead.steps[1]
    update_step(
        db.session,
        step,
        StepInput(step.subject, step.body_html + "<p>PS</p>", step.body_text, "2"),
        {"name": "A"},
        actor="user:admin@example.com",
    )
    db.session.commit()
    base, step_base = f"/campaigns/{lead.id}", f"/campaigns/{lead.id}/steps/{step.id}"
    db.session.remove()
    _log_in(page)
    page.set_viewport_size({"width": 390, "height": 800})
    for url in (
        "/campaigns/",
        base,
        "/campaigns/new",
        f"{base}/edit",
        f"{base}/steps/new",
        f"{step_base}/edit",
        f"{step_base}/delete",
        f"{step_base}/versions",
        f"{step_base}/versions/1",
        f"{step_base}/versions/compare?a=1&b=2",
        f"{step_base}/preview?q=a",
    ):
        page.goto(url)
        width = page.evaluate("document.querySelector('main').scrollWidth")
        assert width <= 390, (url, width)
