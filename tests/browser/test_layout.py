"""Every main page fits a 390 px phone, as staff and as admin (the document is never
wider than the screen: wide tables scroll inside their own box), and the suppression
list keeps room for its reason box and dates at 1,280 px."""

from __future__ import annotations

import pytest

from crm_app.extensions import db
from tests.panel_helpers import sent_email

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
PASSWORDS = {"admin@example.com": "admin-password", "staff@example.com": "staff-password"}


def log_in(page, email: str) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORDS[email])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/")


@pytest.fixture
def data(campaigns, make_contact):
    """A contact with an enrolment, and one email in the Outbox."""
    contact = make_contact(
        "lead", first_name="Maximilian-Alexander", last_name="Oppenheimer-Wittgenstein",
        email="maximilian.alexander.oppenheimer@a-very-long-company-domain.example",
        company="International Business Machines and Partners Ltd", title="Head of Procurement",
        custom_fields={"interest": "process automation"},
    )  # fmt: skip
    message = sent_email(
        db.session, contact, subject="A first, fairly long subject line",
        html="<p>Hello</p>", text="Hello", headers={"List-Unsubscribe": "<mailto:u@x.example>"},
        provider_message_id="outbox-1",
    )  # fmt: skip
    lead = campaigns["lead"]
    return {
        "contact": contact.id, "campaign": lead.id, "step": lead.steps[0].id,
        "message": message.id,
    }  # fmt: skip


def main_pages(ids: dict, admin: bool) -> list[str]:
    pages = [
        "/",
        "/contacts/",
        "/contacts/?q=oppenheimer",
        "/contacts/new",
        f"/contacts/{ids['contact']}",
        f"/contacts/{ids['contact']}/edit",
        "/campaigns/",
        f"/campaigns/{ids['campaign']}",
        f"/campaigns/{ids['campaign']}/steps/{ids['step']}/preview",
        "/analytics/",
        f"/analytics/campaigns/{ids['campaign']}",
        "/imports/",
        "/profile",
        "/profile/password",
        "/logout",
    ]
    if admin:
        pages += [
            f"/campaigns/{ids['campaign']}/steps/{ids['step']}/edit",
            "/suppressions/",
            "/admin/messages?status=failed",
            "/admin/messages?status=in_doubt",
            "/admin/outbox",
            f"/admin/outbox/{ids['message']}",
            "/campaigns/new",
            f"/campaigns/{ids['campaign']}/edit",
            f"/campaigns/{ids['campaign']}/steps/{ids['step']}/versions",
            "/users/",
            "/settings",
            "/audit",
            "/admin/integrations/",
            "/blocks/",
            f"/campaigns/{ids['campaign']}/steps/{ids['step']}/experiment",
        ]
    return pages


def _too_wide(page, paths: list[str], width: int) -> dict[str, int]:
    """The pages whose document is wider than the screen (a wide table must scroll in
    its own box instead)."""
    too_wide = {}
    for path in paths:
        response = page.goto(path)
        assert response.status == 200, path
        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        if scroll_width > width:
            too_wide[path] = scroll_width
    return too_wide


def test_every_main_page_fits_a_1280_px_screen(browser, live_server, data, admin_user):
    context = browser.new_context(base_url=live_server, viewport=DESKTOP)
    page = context.new_page()
    try:
        log_in(page, "admin@example.com")
        assert _too_wide(page, main_pages(data, admin=True), DESKTOP["width"]) == {}
    finally:
        context.close()


@pytest.mark.parametrize("role", ["staff", "admin"])
def test_every_main_page_fits_a_390_px_phone(browser, live_server, data, role, request):
    request.getfixturevalue(f"{role}_user")
    context = browser.new_context(base_url=live_server, viewport=PHONE)
    page = context.new_page()
    try:
        log_in(page, f"{role}@example.com")
        too_wide = _too_wide(page, main_pages(data, admin=role == "admin"), PHONE["width"])
        # The navigation wraps onto more lines instead of running off the screen.
        nav = page.locator("header.topbar nav").bounding_box()
        assert nav["x"] + nav["width"] <= PHONE["width"]
    finally:
        context.close()
    assert too_wide == {}


def test_the_suppression_list_keeps_its_reason_box_and_dates_readable(page, admin_user):
    from crm_app.drip.audience.suppression import suppress

    suppress(db.session, "someone@example.com", reason="manual", source="user:admin@example.com",
             actor="user:admin@example.com")  # fmt: skip
    db.session.commit()
    log_in(page, "admin@example.com")
    page.goto("/suppressions/")
    reason_box = page.get_by_label("Reason for removing someone@example.com").bounding_box()
    assert reason_box["width"] >= 150  # it was 25 px beside the add form
    date_cell = page.locator(".suppression-table tbody td.nowrap").first
    line_height = page.evaluate(
        "(cell) => parseFloat(getComputedStyle(cell).lineHeight)", date_cell.element_handle()
    )
    assert date_cell.bounding_box()["height"] < 2 * line_height + 16  # one line, not four


def test_a_long_address_wraps_inside_the_contact_details_on_a_phone(browser, live_server, data,
                                                                    admin_user):  # fmt: skip
    context = browser.new_context(base_url=live_server, viewport=PHONE)
    page = context.new_page()
    try:
        log_in(page, "admin@example.com")
        page.goto(f"/contacts/{data['contact']}")
        card = page.locator("section.card", has=page.get_by_role("heading", name="Details"))
        card_box = card.bounding_box()
        email_cell = card.locator("td", has_text="maximilian.alexander").bounding_box()
        # The address wraps inside the card (it ran past the card's edge, cut off) ...
        assert email_cell["x"] + email_cell["width"] <= card_box["x"] + card_box["width"]
        # ... and the labels keep their words ("Phone", not "Phon" over "e").
        label = card.locator("th", has_text="Phone")
        line_height = page.evaluate(
            "(th) => parseFloat(getComputedStyle(th).lineHeight)", label.element_handle()
        )
        assert label.bounding_box()["height"] < 2 * line_height + 16
    finally:
        context.close()


def test_the_queues_page_reads_on_a_phone_and_leads_back_to_the_crm(browser, live_server,
                                                                    admin_user):  # fmt: skip
    """rq-dashboard gives its intro a fixed 5em: at 390 px its last line ran over the
    queue table's header. And its page had no way back but the browser's."""
    context = browser.new_context(base_url=live_server, viewport=PHONE)
    page = context.new_page()
    try:
        log_in(page, "admin@example.com")
        page.goto("/admin/rq/")
        # Its text stays inside its box (the box ends above the table either way).
        assert page.locator("p.intro").evaluate("p => p.scrollHeight <= p.clientHeight")
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        page.get_by_role("link", name="Drip CRM").click(timeout=5000)
        page.wait_for_url(f"{live_server}/")
    finally:
        context.close()
