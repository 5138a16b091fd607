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
