"""The contact list in a real chromium: a search result enrolled in bulk, with the
confirmation that says how many."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from crm_app.extensions import db
from crm_app.models import Enrollment

pytestmark = pytest.mark.browser


def log_in(page, email: str, password: str) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def active_campaign_ids(contact_id: int) -> set[int]:
    db.session.expire_all()
    return set(
        db.session.scalars(
            sa.select(Enrollment.campaign_id).where(
                Enrollment.contact_id == contact_id, Enrollment.status == "active"
            )
        )
    )


def test_bulk_enrol_of_a_search_result(page, admin_user, campaigns, make_contact):
    acme = [
        make_contact("lead", first_name=f"Acme{n}", last_name="Buyer", company="Acme Tools")
        for n in range(3)
    ]
    other = make_contact("lead", first_name="Other", last_name="Person", company="Globex")
    prospect = campaigns["prospect"]
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    log_in(page, "admin@example.com", "admin-password")
    page.goto("/contacts/")
    page.get_by_label("Search").fill("acme tools")
    # The live search swaps the list in place.
    expect(page.locator("#contact-count")).to_have_text("3 contacts found")
    expect(page.locator("#contact-list")).not_to_contain_text("Other Person")

    page.get_by_label("All 3 that match").check()
    page.get_by_label("Action").select_option("enroll")
    page.get_by_role("button", name="Continue…").click()

    # The confirmation says how many, and names them; nothing has changed yet.
    expect(page.get_by_role("heading", name="Enrol 3 contacts?")).to_be_visible()
    expect(page.locator("#bulk-confirm")).to_contain_text("Acme0 Buyer")
    assert all(prospect.id not in active_campaign_ids(c.id) for c in acme)
    page.get_by_label("Campaign").select_option(label="Prospect")
    page.get_by_role("button", name="Enrol 3 contacts").click()

    expect(page.locator(".flash-success")).to_contain_text("Enrolled in Prospect: 3 contacts.")
    for contact in acme:
        assert prospect.id in active_campaign_ids(contact.id)
    assert prospect.id not in active_campaign_ids(other.id)
    # Back on the same search, each row shows its new campaign.
    expect(page.get_by_label("Search")).to_have_value("acme tools")
    expect(page.locator("#contact-list tbody tr").first).to_contain_text("Prospect")
    assert errors == []
