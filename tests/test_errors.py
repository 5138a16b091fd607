"""Errors as people meet them: a 500 page, an action after the session ended (said
next to the action, in words about signing in, not about tokens), the skip link."""

from __future__ import annotations

import pytest

from crm_app.models import ContentBlock


@pytest.fixture
def failing_dashboard(app, monkeypatch):
    """The home page's query fails as a database outage would; Flask answers as in
    production (no exception propagated to the test client)."""

    def broken(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr("crm_app.web.main.home_dashboard", broken)
    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)


def test_a_server_error_shows_our_500_page(admin, failing_dashboard):
    response = admin.get("/")
    page = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "Something went wrong (500)" in page and "Nothing was saved" in page
    assert "Internal Server Error" not in page  # not Werkzeug's page


def test_a_server_error_during_an_htmx_request_is_an_alert(admin, failing_dashboard):
    response = admin.get("/", htmx=True)
    assert response.status_code == 500 and response.headers["X-Action-Error"] == "1"
    assert "Something went wrong on our side" in response.get_data(as_text=True)


def _post_after_the_session_expired(client, url: str, *, htmx: bool, page: str):
    """A form (or an htmx action) on `page`, sent after the session cookie's lifetime
    was over: the browser sends no cookie any more, the page still has its token."""
    token = client.csrf_token()
    client.client.delete_cookie("session")
    if htmx:
        headers = {"HX-Request": "true", "X-CSRFToken": token, "HX-Current-URL": page}
        data = {}
    else:
        headers, data = {"Referer": page}, {"csrf_token": token}
    with client._fresh_context():
        return client.client.post(url, data=data, headers=headers)


def test_an_htmx_action_after_the_session_expired_says_sign_in_again(admin, make_contact):
    contact = make_contact("lead")
    response = _post_after_the_session_expired(
        admin, f"/contacts/{contact.id}/enrollments/stop-all", htmx=True,
        page=f"http://localhost/contacts/{contact.id}",
    )  # fmt: skip
    text = response.get_data(as_text=True)
    assert response.status_code == 401 and response.headers["X-Action-Error"] == "1"
    assert "You were signed out;" in text and "sign in again." in text
    assert f"/login?next=/contacts/{contact.id}" in text
    assert "CSRF" not in text and "token" not in text


def test_a_form_posted_after_the_session_expired_goes_to_sign_in(admin, make_contact):
    contact = make_contact("lead")
    response = _post_after_the_session_expired(
        admin, f"/contacts/{contact.id}/enrollments/stop-all", htmx=False,
        page=f"http://localhost/contacts/{contact.id}",
    )  # fmt: skip
    assert response.status_code == 302
    assert response.headers["Location"] == f"/login?next=/contacts/{contact.id}"
    page = admin.get(response.headers["Location"]).get_data(as_text=True)
    assert "You were signed out; sign in again." in page


def test_every_page_starts_with_a_skip_link_to_the_content(admin):
    page = admin.get("/contacts/").get_data(as_text=True)
    body = page.split("<body", 1)[1]
    first_link = body.split("<a ", 1)[1]
    assert first_link.startswith('class="skip-link" href="#main"')
    assert '<main class="container" id="main" tabindex="-1">' in page


@pytest.mark.parametrize(
    ("url", "form", "field"),
    [
        ("/campaigns/new", {"name": "", "reentry": "never"}, "name"),
        ("/campaigns/{lead}/steps/{step}/edit", {"subject": "", "delay_days": "x"}, "delay_days"),
        ("/settings", {"postal_address": "x" * 501}, "postal_address"),
        ("/users/", {"email": "not-an-email", "role": "staff"}, "email"),
        ("/profile", {"name": "x" * 500}, "name"),
        ("/profile/password", {"current_password": "wrong"}, "current_password"),
        ("/blocks/{block}/edit", {"name": "intro", "default_content": ""}, "default_content"),
        ("/admin/integrations/webhooks", {"url": "", "event_types": "contact.created"}, "url"),
        ("/admin/integrations/webhooks", {"url": "https://example.com/h"}, "event_types"),
        ("/admin/integrations/tokens", {"name": "", "scope": "read_write"}, "name"),
    ],
)
def test_every_refused_form_has_the_shared_error_summary(
    admin, session, campaigns, url, form, field
):
    lead = campaigns["lead"]
    block = ContentBlock(name="intro", default_content="Hello")
    session.add(block)
    session.commit()
    response = admin.post(url.format(lead=lead.id, step=lead.steps[0].id, block=block.id), form)
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert page.count('<div class="error-summary"') == 1, page
    summary = page.split('<div class="error-summary"', 1)[1].split("</div>", 1)[0]
    assert "data-focus-on-load" in summary and f'href="#field-{field}"' in summary
    assert f'id="field-{field}"' in page  # the link lands on the field


def test_a_refused_token_swapped_by_htmx_keeps_its_error_summary(admin):
    response = admin.post(
        "/admin/integrations/tokens",
        {"name": "", "scope": "read_write"},
        htmx=True,
        headers={"HX-Target": "api-tokens"},
    )
    fragment = response.get_data(as_text=True)
    assert response.status_code == 422 and "<h1>" not in fragment
    assert fragment.count('<div class="error-summary"') == 1
    assert "No token was created" in fragment and 'href="#field-name"' in fragment


def test_a_refused_form_has_an_error_summary_that_takes_the_focus(admin, campaigns):
    response = admin.post("/contacts/new", {"email": "not-an-email", "contact_type": "lead"})
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    summary = page.split('<div class="error-summary"', 1)[1].split("</div>", 1)[0]
    assert 'role="alert"' in summary and "data-focus-on-load" in summary
    assert 'href="#field-email"' in summary


def test_an_htmx_action_on_a_deleted_contact_says_it_no_longer_exists(admin, make_contact):
    """A contact deleted in another tab: the action's 404 is not "our side" failing."""
    from crm_app.drip.audience.contacts import delete_contact
    from crm_app.extensions import db

    contact = make_contact("lead")
    contact_id = contact.id
    delete_contact(db.session, contact, actor="test")
    db.session.commit()

    response = admin.post(f"/contacts/{contact_id}/enrollments/by-type", htmx=True)
    text = response.get_data(as_text=True)
    assert response.status_code == 404 and response.headers["X-Action-Error"] == "1"
    assert "This record no longer exists (it may have been deleted)" in text
    assert "our side" not in text and "<html" not in text
    # A page, not an alert, without htmx.
    page = admin.get(f"/contacts/{contact_id}").get_data(as_text=True)
    assert "Not found (404)" in page
