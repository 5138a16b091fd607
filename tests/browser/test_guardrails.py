"""Guardrails in a real chromium: a posted reply stops a contact's sequence, the footer
shows the postal address, and a contact's data is exported and erased from its page.
With SCREENSHOT_DIR set, the pages are saved there at 1280 and 390 px to look at."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from crm_app.config import settings_of
from crm_app.drip.delivery.backends import OutboxBackend
from crm_app.extensions import db
from tests.browser.pages import log_in_as_admin, screenshots
from tests.delivery_helpers import send_due_email

pytestmark = pytest.mark.browser

DOMAIN = "parse.example.com"
SECRET = "browser-parse-secret"


def _post_reply(page: Page, reply_to: str):
    """What SendGrid's Inbound Parse posts for a person's reply (multipart/form-data)."""
    return page.request.post(
        f"/webhooks/inbound/{SECRET}",
        multipart={
            "to": reply_to,
            "from": "Jamie Lee <jamie@acme.example>",
            "subject": "Re: Thanks for getting in touch",
            "text": "Yes, let's talk on Thursday.\n\nOn Mon, Alex wrote:\n> Hi Jamie",
            "headers": "Message-ID: <abc@acme.example>\n",
            "envelope": json.dumps({"to": [reply_to], "from": "jamie@acme.example"}),
        },
    )


def test_a_posted_reply_stops_the_sequence_and_the_contact_is_exported_then_erased(
    app, page, admin_user, campaigns, make_contact, monkeypatch, tmp_path
):
    monkeypatch.setitem(app.config, "INBOUND_PARSE_DOMAIN", DOMAIN)
    monkeypatch.setitem(app.config, "INBOUND_PARSE_SECRET", SECRET)
    log_in_as_admin(page)

    # The postal address, set on the Settings page.
    page.goto("/settings")
    expect(page.get_by_text("No postal address yet")).to_be_visible()
    page.get_by_label("Postal address").fill("Northwind Traders\n1 Harbour Street\nSpringfield")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("Settings saved.")).to_be_visible()
    screenshots(page, "settings", tmp_path)

    # Lead stops on reply (the default), shown on its settings panel.
    page.goto(f"/campaigns/{campaigns['lead'].id}")
    expect(
        page.get_by_label("Stop a contact's emails from this campaign when they reply")
    ).to_be_checked()
    screenshots(page, "campaign", tmp_path)

    # A lead gets its first email (the Outbox), which replies to a token of its own.
    contact = make_contact("lead", first_name="Jamie", last_name="Lee", email="jamie@acme.example")
    message = send_due_email(db.session, contact.enrollments[0], OutboxBackend(), settings_of(app))
    page.goto(f"/admin/outbox/{message.id}")
    reply_to = page.locator("tr", has_text="Reply-To").locator("td").inner_text().strip()
    assert reply_to.startswith(f"reply+{message.id}-") and reply_to.endswith(f"@{DOMAIN}")
    footer = page.frame_locator("iframe").locator("body")
    expect(footer).to_contain_text("Northwind Traders, 1 Harbour Street, Springfield")
    expect(footer.get_by_role("link", name="Unsubscribe here")).to_be_visible()

    # SendGrid's Inbound Parse posts the reply.
    answer = _post_reply(page, reply_to)
    assert answer.ok and answer.json()["stopped"] is True

    page.goto(f"/contacts/{contact.id}")
    panel = page.locator("#campaign-panel")
    expect(panel.locator('tr.enrollment-finished[data-campaign="Lead"]')).to_contain_text(
        "the contact replied"
    )
    expect(page.locator("#timeline")).to_contain_text("”: “Yes, let's talk on Thursday.”")
    # (The campaign panel's goal form is measured by its own page test.)
    screenshots(page, "contact-replied", tmp_path, fits=".contact-actions, #timeline, .flash")

    # Export: a JSON download.
    with page.expect_download() as download:
        page.get_by_role("button", name="Export data").click()
    exported = json.loads(Path(download.value.path()).read_text())
    assert exported["contact"]["email"] == "jamie@acme.example"
    assert exported["replies"][0]["first_lines"] == "Yes, let's talk on Thursday."

    # Erase, after the confirmation page.
    page.get_by_role("link", name="Erase…").click()
    expect(
        page.get_by_role("heading", name="Erase the personal data of Jamie Lee?")
    ).to_be_visible()
    screenshots(page, "erase", tmp_path)
    page.get_by_label("Type jamie@acme.example to confirm").fill("jamie@acme.example")
    page.get_by_role("button", name="Erase personal data").click()
    expect(page.get_by_role("heading", name=f"Erased contact #{contact.id}")).to_be_visible()
    expect(page.get_by_text("This contact's personal data was erased on")).to_be_visible()
    expect(page.locator("main")).not_to_contain_text("jamie")
    screenshots(page, "contact-erased", tmp_path, fits=".contact-actions, #timeline, .flash")
