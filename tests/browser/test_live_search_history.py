"""In a real chromium: Back and Forward after live searches show, in the search box,
the search the list shows (htmx's history snapshot keeps no typed value by itself)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.pages import log_in_as_admin, screenshots

pytestmark = pytest.mark.browser


def test_back_after_two_live_searches_shows_the_first_search_in_the_box(
    page, admin_user, make_contact, tmp_path
):
    make_contact(first_name="Bulk01", last_name="Person", email="bulk01@example.com")
    make_contact(first_name="Ada", last_name="Lovelace", email="ada@example.com")
    log_in_as_admin(page)
    page.goto("/contacts/")
    box = page.get_by_role("searchbox", name="Search")
    rows = page.locator("#contact-list tbody tr")

    box.fill("bulk01")
    expect(page).to_have_url(re.compile(r"\?q=bulk01&type=$"))
    expect(rows).to_have_count(1)
    box.fill("Lovelace")
    expect(page).to_have_url(re.compile(r"\?q=Lovelace&type=$"))
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("Ada Lovelace")

    page.go_back()
    expect(page).to_have_url(re.compile(r"\?q=bulk01&type=$"))
    expect(rows).to_contain_text("Bulk01 Person")
    expect(box).to_have_value("bulk01")
    screenshots(page, "contacts-back-to-bulk01", tmp_path)

    page.go_back()
    expect(page).to_have_url(re.compile(r"/contacts/$"))
    expect(rows).to_have_count(2)
    expect(box).to_have_value("")

    page.go_forward()
    page.go_forward()
    expect(page).to_have_url(re.compile(r"\?q=Lovelace&type=$"))
    expect(rows).to_contain_text("Ada Lovelace")
    expect(box).to_have_value("Lovelace")

    # The type filter too: Back shows the type the list was filtered by.
    kind = page.locator("form[role=search] select[name=type]")
    kind.select_option("client")
    expect(page).to_have_url(re.compile(r"\?q=Lovelace&type=client$"))
    expect(rows).not_to_contain_text("Ada Lovelace")
    page.go_back()
    expect(page).to_have_url(re.compile(r"\?q=Lovelace&type=$"))
    expect(rows).to_contain_text("Ada Lovelace")
    expect(kind).to_have_value("")
    page.go_forward()
    expect(kind).to_have_value("client")
