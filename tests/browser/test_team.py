"""The team's pages in a real chromium: the users page round trip (an admin adds a
user, copies the one-time link, the user sets a password and logs in), and a user's
time zone from their profile shown as "your time" on the contact panel."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

NEW_PASSWORD = "violet-harbour-lamp"


def _log_in(page: Page, email: str, password: str) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def test_users_page_round_trip_with_a_one_time_link(page, admin_user, live_server):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server)
    _log_in(page, "admin@example.com", "admin-password")
    page.get_by_role("link", name="Users").click()
    expect(page.get_by_role("heading", name="Users", exact=True)).to_be_visible()

    form = page.locator("form", has=page.get_by_role("button", name="Add user"))
    form.get_by_label("Name").fill("Dana Reyes")
    form.get_by_label("Email").fill("dana@example.com")
    form.get_by_label("Role").select_option("staff")
    expect(form.get_by_label("They set it from a one-time link I give them")).to_be_checked()
    form.get_by_role("button", name="Add user").click()

    link_field = page.get_by_label("Set-password link")
    expect(link_field).to_be_visible()
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    link = page.evaluate("navigator.clipboard.readText()")
    assert link == link_field.input_value() and "/set-password/" in link

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in to Drip CRM")).to_be_visible()

    # The new user opens the link (its path: the configured public address is another host).
    page.goto(urlsplit(link).path)
    expect(page.get_by_text("For dana@example.com")).to_be_visible()
    page.get_by_label("New password", exact=True).fill("password")
    page.get_by_label("New password again").fill("password")
    page.get_by_role("button", name="Set password").click()
    expect(page.locator("#error-password")).to_contain_text("at least 12 characters")
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("New password again").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set password").click()

    expect(page.get_by_text("Your password is set. Log in with it now.")).to_be_visible()
    assert "dana" not in page.url  # no address in the URL (logs, history)
    page.get_by_label("Email").fill("dana@example.com")
    page.get_by_label("Password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("link", name="Dana Reyes")).to_be_visible()
    expect(page.get_by_role("link", name="Users")).to_have_count(0)  # staff

    # The link worked once.
    page.goto(urlsplit(link).path)
    expect(page.get_by_text("This link has expired or was already used.")).to_be_visible()


def test_profile_time_zone_is_your_time_on_the_contact_panel(page, staff_user, make_contact):
    contact = make_contact("lead", timezone="America/New_York", owner_id=staff_user.id)
    _log_in(page, "staff@example.com", "staff-password")

    page.get_by_role("link", name=staff_user.name).click()
    expect(page.get_by_role("heading", name="Your profile")).to_be_visible()
    page.get_by_label("Time zone").fill("Asia/Tokyo")
    page.get_by_label("Title").fill("Account Director")
    page.get_by_role("button", name="Save profile").click()
    expect(page.get_by_text("Your profile is saved.")).to_be_visible()
    expect(page.locator(".sender-preview")).to_contain_text("Account Director")

    page.goto(f"/contacts/{contact.id}")
    next_send = page.locator('#campaign-panel tr[data-campaign="Lead"] .next-send')
    expect(next_send).to_contain_text("contact's time")
    expect(next_send).to_contain_text("JST your time")
    expect(next_send).to_contain_text(re.compile(r"E[SD]T"))  # New York, either season


@pytest.mark.parametrize(
    "path", ["/users/", "/settings", "/audit", "/profile", "/profile/password"]
)
def test_the_team_pages_fit_a_phone(page, admin_user, path):
    """The page's own content fits 390 px (the shared top navigation is measured by the
    phone-width test of every main page)."""
    _log_in(page, "admin@example.com", "admin-password")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(path)
    assert page.evaluate("document.querySelector('main').scrollWidth") <= 390
