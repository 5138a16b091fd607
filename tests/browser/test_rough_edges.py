"""In a real chromium: an action after the session expired is answered beside the
action (announced, in words about signing in), as is one on a contact deleted meanwhile
(it no longer exists, not "our side"); after a refused form the focus is on the error
summary."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def log_in(page) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill("admin@example.com")
    page.get_by_label("Password").fill("admin-password")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/")


def test_an_action_after_the_session_expired_says_so_beside_the_action(
    page, admin_user, make_contact
):
    contact = make_contact("lead")
    log_in(page)
    page.goto(f"/contacts/{contact.id}")
    # Every request of the page done first (its favicon too): a late answer would set
    # the session cookie again after we clear it.
    page.wait_for_load_state("networkidle")
    page.evaluate("window.__marker = 1")
    page.context.clear_cookies()  # the session's lifetime is over
    assert page.context.cookies() == []

    stop = page.get_by_role("button", name="Stop Lead")
    stop.click()

    # The message sits right after the Stop button's form, inside the panel, as an alert.
    message = page.locator("#campaign-panel form + .action-feedback[role=alert]")
    expect(message).to_contain_text("You were signed out; sign in again.")
    expect(message).not_to_contain_text("CSRF")
    expect(page.locator("#htmx-alerts")).to_be_empty()  # not at the top of the page
    stop_box = stop.bounding_box()
    message_box = message.bounding_box()
    assert 0 <= message_box["y"] - (stop_box["y"] + stop_box["height"]) < 80
    assert page.evaluate("window.__marker") == 1  # the page stayed; nothing was swapped
    message.get_by_role("link", name="sign in again.").click()
    expect(page).to_have_url(f"{page.url.split('/login')[0]}/login?next=/contacts/{contact.id}")


def test_after_a_refused_form_the_focus_is_on_the_error_summary(page, admin_user, campaigns):
    log_in(page)
    page.goto("/contacts/new")
    page.get_by_label("Email", exact=True).fill("not an email")
    page.get_by_role("button", name="Create contact").click()
    summary = page.locator(".error-summary")
    expect(summary).to_be_focused()
    expect(summary).to_contain_text("Not a valid email address")


def test_the_skip_link_is_the_first_stop_of_the_keyboard(page, admin_user):
    log_in(page)
    page.goto("/contacts/")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to the content")
    expect(skip).to_be_focused()
    expect(skip).to_be_visible()
    page.keyboard.press("Enter")
    expect(page.locator("main#main")).to_be_focused()


def test_an_action_on_a_contact_deleted_in_another_tab_says_it_no_longer_exists(
    page, admin_user, make_contact, tmp_path
):
    from crm_app.drip.audience.contacts import delete_contact
    from crm_app.extensions import db
    from tests.browser.pages import screenshots

    contact = make_contact("lead")
    log_in(page)
    page.goto(f"/contacts/{contact.id}")
    delete_contact(db.session, contact, actor="test")  # the other tab
    db.session.commit()

    page.get_by_role("button", name="Enrol by type (lead)").click()
    message = page.locator("#campaign-panel form + .action-feedback[role=alert]")
    expect(message).to_contain_text(
        "This record no longer exists (it may have been deleted), so nothing was saved."
    )
    expect(message).not_to_contain_text("our side")
    screenshots(page, "contact-deleted-meanwhile", tmp_path)


def test_a_refusal_without_our_alert_is_not_called_our_fault(page, admin_user, make_contact):
    """A 4xx from something in front of the app (no X-Action-Error): a refusal, while a
    5xx stays "on our side"."""
    contact = make_contact("lead")
    log_in(page)
    page.goto(f"/contacts/{contact.id}")
    answers = iter([429, 502])
    page.route("**/by-type", lambda route: route.fulfill(status=next(answers), body="no"))
    button = page.get_by_role("button", name="Enrol by type (lead)")
    message = page.locator("#campaign-panel form + .action-feedback[role=alert]")

    button.click()
    expect(message).to_contain_text("This action was refused (429), so nothing was saved.")
    button.click()
    expect(message).to_contain_text("Something went wrong on our side (502).")
