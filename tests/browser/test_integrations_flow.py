"""An admin connects another system, in a real browser: a token (shown once) that the
API accepts, an endpoint whose signed events a local receiver verifies."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.outbound_helpers import work_queue

pytestmark = pytest.mark.browser

# Screenshots for a person to look at (1280 and 390 px wide), when asked for.
SHOTS = os.environ.get("DRIP_SCREENSHOTS")


def _shot(page, name: str) -> None:
    if not SHOTS:
        return
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(Path(SHOTS) / f"{name}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def test_admin_connects_a_system_with_a_token_and_a_webhook(
    page, admin_user, campaigns, receiver, live_server
):
    page.goto("/login?next=/admin/integrations/")
    page.get_by_label("Email").fill("admin@example.com")
    page.get_by_label("Password").fill("admin-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Integrations")).to_be_visible()

    # A token: the form swaps the tokens' section (htmx) and shows the secret once.
    page.evaluate("window.__marker = 1")
    page.get_by_label("Name (the system that will use it)").fill("Website signup form")
    page.get_by_role("button", name="Create token").click()
    secret_box = page.locator("#api-tokens input.secret")
    expect(secret_box).to_be_visible()
    token = secret_box.input_value()
    assert token.startswith("drip_")
    assert page.evaluate("window.__marker") == 1, "the page reloaded instead of swapping"
    _shot(page, "integrations")

    # An endpoint at the local receiver: its secret is shown once, on its page.
    page.get_by_label("URL").fill(receiver.url)
    page.get_by_label("Description").fill("Local receiver")
    page.get_by_role("button", name="Add endpoint").click()
    receiver.secret = page.locator("input.secret").input_value()
    assert receiver.secret.startswith("whsec_")

    # The signup form calls the API with the token: the contact is created and enrolled.
    answer = page.request.post(
        f"{live_server}/api/v1/contacts",
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "signup-1"},
        data={"email": "ada@example.com", "first_name": "Ada", "contact_type": "lead"},
    )
    assert answer.status == 201, answer.text()
    assert answer.json()["enrollments"][0]["campaign_name"] == "Lead"

    work_queue()
    (enrolled,) = receiver.of_type("contact.enrolled")
    assert enrolled["data"]["contact"]["email"] == "ada@example.com"
    assert receiver.refused == []

    page.reload()
    log = page.locator("#delivery-log")
    expect(log).to_contain_text("contact.enrolled")
    expect(log).to_contain_text("delivered")
    _shot(page, "endpoint")
