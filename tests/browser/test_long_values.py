"""In a real chromium: a very long value without spaces (a name, a company, an address)
wraps inside the contact's page instead of widening it, at 1,280 and at 390 px."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.pages import log_in_as_admin, screenshots

pytestmark = pytest.mark.browser

LONG_NAME = "Bartholomew" * 9 + "X"  # 100 characters, no space


def test_a_long_unbroken_name_wraps_on_the_contact_page(page, admin_user, make_contact, tmp_path):
    contact = make_contact(
        first_name=LONG_NAME, last_name="", company="Co" * 100,
        email=f"{'a' * 60}@{'b' * 60}.example",
    )  # fmt: skip
    log_in_as_admin(page)
    page.goto(f"/contacts/{contact.id}")
    expect(page.locator("#itinerary-table")).to_contain_text(LONG_NAME[:20])

    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        assert page.evaluate("document.documentElement.scrollWidth") <= width, width
        for part in ("h1", "#itinerary-table", "#timeline"):
            box = page.locator(part).first.bounding_box()
            assert box["x"] + box["width"] <= width, (part, width)
    screenshots(page, "contact-long-name", tmp_path)


def test_the_outbox_and_the_failed_messages_read_across_on_a_phone(
    page, admin_user, make_contact, tmp_path
):
    """At 390 px the lists of emails scroll sideways with their columns whole: the
    address and the subject were squeezed to a letter a line (a row 350 px tall)."""
    from crm_app.drip.reporting.message_lists import OUTBOX_PREFIX
    from crm_app.extensions import db
    from crm_app.models import utcnow
    from tests.panel_helpers import current_email_in_state

    for status in ("sent", "failed"):
        contact = make_contact(email=f"{status}-someone.with.a.long.name@example.com")
        message = current_email_in_state(db.session, contact, status)
        message.to_email, message.subject = contact.email, "How a project with us usually begins"
        if status == "sent":
            message.sent_at, message.provider_message_id = utcnow(), f"{OUTBOX_PREFIX}{message.id}"
        else:
            message.error = "400: invalid address"
    db.session.commit()
    log_in_as_admin(page)
    page.set_viewport_size({"width": 390, "height": 900})
    for path, table in (
        ("/admin/outbox", "#outbox-messages"),
        ("/admin/messages?status=failed", "#admin-messages"),
    ):
        page.goto(path)
        row = page.locator(f"{table} tbody tr").first
        expect(row).to_contain_text("How a project with us usually begins")
        # The row was 350 px tall: an address and a subject a letter or a word a line.
        assert row.bounding_box()["height"] < 130, (path, row.bounding_box())
        page.screenshot(path=str(tmp_path / f"{table[1:]}-390.png"), full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
    screenshots(page, "failed-messages-phone", tmp_path)
