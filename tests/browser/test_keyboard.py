"""The staff pages with the keyboard alone, as a screen-reader user meets them: after an
htmx action the focus lands somewhere that says what happened, never back at the top
of the page."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.pages import log_in_as_admin

pytestmark = pytest.mark.browser


def test_campaign_panel_actions_leave_the_focus_on_their_outcome(page, admin_user, make_contact):
    contact = make_contact("lead", first_name="Kim", last_name="Keys")
    log_in_as_admin(page)
    page.goto(f"/contacts/{contact.id}")
    panel = page.locator("#campaign-panel")

    # Enrol with the keyboard: the Enrol button is swapped away with the panel; the
    # focus goes to the message saying what was done, not to the top of the page.
    page.get_by_label("Campaign", exact=True).select_option(label="Client")
    page.get_by_role("button", name="Enrol", exact=True).press("Enter")
    expect(page.locator(":focus")).to_have_text("Enrolled in Client.")

    # Stop removes the very row whose button had the focus.
    panel.get_by_role("button", name="Stop Client").press("Enter")
    expect(page.locator(":focus")).to_have_text("Stopped Client.")
    # And Tab goes on from the panel, not from the skip link.
    page.keyboard.press("Tab")
    expect(panel.locator(":focus")).to_have_count(1)
