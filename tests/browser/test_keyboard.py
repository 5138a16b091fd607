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


def test_live_search_count_is_updated_in_a_live_region_that_stays(page, admin_user, make_contact):
    # A screen reader announces a change inside a live region it already knows; a region
    # swapped in whole, already filled, is mostly not read. The focus stays in the
    # search box, so this count is all the user hears of the new list.
    make_contact("lead", first_name="Ana", last_name="Acme", company="Acme Tools")
    make_contact("lead", first_name="Bo", last_name="Globex", company="Globex")
    log_in_as_admin(page)
    page.goto("/contacts/")
    count = page.get_by_role("status").filter(has_text="contacts")
    expect(count).to_have_text("2 contacts")
    count.evaluate("node => { node.dataset.before = 'kept'; }")

    page.get_by_label("Search").fill("acme tools")
    expect(page.locator("#contact-list")).not_to_contain_text("Bo Globex")
    count = page.get_by_role("status").filter(has_text="contact")
    expect(count).to_have_text("1 contact found")
    expect(count).to_have_attribute("data-before", "kept")
    expect(page.get_by_label("Search")).to_be_focused()
