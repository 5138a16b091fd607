"""A staff member's path through a contact, in a real browser, with and after HTMX swaps."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

NOTES_SCREENSHOT = Path("/work/notes/contact.png")


def test_contact_lifecycle_with_inline_campaign_panel(page, admin_user, campaigns, tmp_path):
    # Log in as the admin.
    page.goto("/login?next=/contacts/")
    page.get_by_label("Email").fill("admin@example.com")
    page.get_by_label("Password").fill("admin-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Contacts")).to_be_visible()

    # Create a lead: it is auto-enrolled in Lead, with a next email date.
    page.get_by_role("link", name="New contact").click()
    page.get_by_label("First name").fill("Lin")
    page.get_by_label("Last name").fill("Lead")
    page.get_by_label("Email", exact=True).fill("lin.lead@example.com")
    page.get_by_label("Company", exact=True).fill("Lead Works")
    page.get_by_label("Contact type").select_option("lead")
    page.get_by_label("Time zone").fill("America/New_York")
    page.get_by_role("button", name="Create contact").click()
    expect(page.get_by_role("heading", name="Lin Lead")).to_be_visible()
    panel = page.locator("#campaign-panel")
    lead_row = panel.locator('tr.enrollment-active[data-campaign="Lead"]')
    expect(lead_row).to_contain_text("step 1 of 6")
    expect(lead_row.locator(".next-send")).to_contain_text("contact's time")
    expect(lead_row.locator(".next-send")).to_contain_text("20")  # a dated year, not "—"

    # Stop it, then enrol again from the dropdown: both inline, the page never reloads.
    page.evaluate("window.__marker = 1")
    lead_row.get_by_role("button", name="Stop Lead").click()
    expect(panel).to_contain_text("Stopped Lead.")
    expect(panel.locator('tr.enrollment-finished[data-campaign="Lead"]')).to_contain_text(
        "stopped by admin@example.com"
    )
    expect(page.locator("#timeline")).to_contain_text("Stopped Lead: stopped by admin@example.com")
    panel.get_by_label("Campaign").select_option(label="Lead")
    panel.get_by_role("button", name="Enrol", exact=True).click()
    expect(panel).to_contain_text("Enrolled in Lead again: resuming at Email 1 of Lead")
    expect(panel.locator('tr.enrollment-active[data-campaign="Lead"]')).to_be_visible()
    expect(page.locator("#timeline")).to_contain_text("Enrolled in Lead (by hand)")
    assert page.evaluate("window.__marker") == 1, "the page reloaded instead of swapping"

    # Change the type to client through the edit form.
    page.get_by_role("link", name="Edit").click()
    page.get_by_label("Contact type").select_option("client")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("heading", name="Lin Lead")).to_be_visible()
    expect(panel.locator('tr.enrollment-active[data-campaign="Client"]')).to_be_visible()
    expect(panel.locator("tr.enrollment-finished").first).to_contain_text("type changed to client")
    expect(panel.locator('tr.enrollment-active[data-campaign="Lead"]')).to_have_count(0)

    page.screenshot(path=tmp_path / "contact.png", full_page=True)
    assert (tmp_path / "contact.png").stat().st_size > 0
    NOTES_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tmp_path / "contact.png", NOTES_SCREENSHOT)

    # Stop all (it asks for confirmation first), still without a reload.
    page.evaluate("window.__marker = 2")
    page.once("dialog", lambda dialog: dialog.accept())
    panel.get_by_role("button", name="Stop all").click()
    expect(panel).to_contain_text("Stopped 1 enrolment.")
    expect(panel.locator("tr.enrollment-active")).to_have_count(0)
    expect(panel).to_contain_text("No active enrolment.")
    assert page.evaluate("window.__marker") == 2
