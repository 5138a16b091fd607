"""The Integrations admin pages: API tokens and webhook endpoints, their secrets shown
once, the SSRF check at registration, the delivery log and redelivery."""

from __future__ import annotations

import re

import sqlalchemy as sa

from crm_app.drip.outbound.events import EVENT_TYPES
from crm_app.models import ApiToken, WebhookEndpoint
from tests.outbound_helpers import deliveries, work_queue

URL = "/admin/integrations/"


def _secret(page: str, prefix: str) -> str:
    match = re.search(rf'value="({prefix}[^"]+)"', page)
    assert match, "no secret on the page"
    return match.group(1)


def _shown_once(admin, response, prefix: str) -> str:
    """The secret the POST's own answer shows; it is in none of its cookies (the session
    cookie is signed, not encrypted) and no later page shows it again."""
    secret = _secret(response.get_data(as_text=True), prefix)
    serializer = admin.client.application.session_interface.get_signing_serializer(
        admin.client.application
    )
    for header in response.headers.getlist("Set-Cookie"):
        assert secret not in header
        value = header.split(";", 1)[0].split("=", 1)[1]
        if value:
            assert secret not in str(serializer.loads(value))
    assert "Location" not in response.headers
    return secret


def test_only_admins_see_integrations(staff, web):
    assert staff.get(URL).status_code == 403
    staff.logout()
    assert web.get(URL).status_code == 302  # to the login page


def test_admin_creates_a_token_shown_once_that_calls_the_api(admin, session, campaigns):
    response = admin.post(URL + "tokens", {"name": "Signup form", "scope": "read_write"})

    assert response.status_code == 201
    secret = _shown_once(admin, response, "drip_")
    assert "shown only this once" in response.get_data(as_text=True)
    assert secret not in admin.get(URL).get_data(as_text=True)  # never again
    api = admin.client.get("/api/v1/campaigns", headers={"Authorization": f"Bearer {secret}"})
    assert api.status_code == 200
    listed = admin.get(URL).get_data(as_text=True)
    assert "Signup form" in listed and "Read and write" in listed


def test_a_token_without_a_name_is_refused_next_to_the_field(admin, session):
    response = admin.post(URL + "tokens", {"name": " ", "scope": "read"})

    assert response.status_code == 422
    assert 'id="error-name"' in response.get_data(as_text=True)
    assert session.scalar(sa.select(sa.func.count(ApiToken.id))) == 0


def test_token_form_with_htmx_swaps_the_tokens_section(admin):
    response = admin.post(URL + "tokens", {"name": "Zapier", "scope": "read"}, htmx=True,
                          headers={"HX-Target": "api-tokens"})  # fmt: skip

    page = response.get_data(as_text=True)
    assert page.startswith('<section class="card" id="api-tokens">')
    assert "drip_" in page and "<html" not in page


def test_revoking_a_token_shuts_it_out(admin, session, campaigns):
    secret = _secret(admin.post(URL + "tokens", {"name": "Old", "scope": "read"}).text, "drip_")
    token = session.scalar(sa.select(ApiToken))

    admin.post(f"{URL}tokens/{token.id}/revoke")

    api = admin.client.get("/api/v1/campaigns", headers={"Authorization": f"Bearer {secret}"})
    assert api.status_code == 401
    assert "revoked" in admin.get(URL).get_data(as_text=True)


def test_a_private_url_is_refused_at_registration(admin, session):
    response = admin.post(
        URL + "webhooks",
        {"url": "http://127.0.0.1:8080/hook", "event_types": "contact.created"},
    )

    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "loopback" in page and 'id="error-url"' in page
    assert 'value="http://127.0.0.1:8080/hook"' in page  # nothing typed is lost
    assert session.scalar(sa.select(sa.func.count(WebhookEndpoint.id))) == 0


def test_an_endpoint_needs_an_event(admin, receiver):
    response = admin.post(URL + "webhooks", {"url": receiver.url})

    assert response.status_code == 422
    assert "Choose at least one event" in response.get_data(as_text=True)


def test_admin_registers_an_endpoint_and_its_secret_signs_what_it_gets(
    admin, session, campaigns, receiver, make_contact
):
    response = admin.post(
        URL + "webhooks",
        {"url": receiver.url, "description": "CRM sync", "event_types": list(EVENT_TYPES)},
    )

    endpoint = session.scalar(sa.select(WebhookEndpoint))
    page_url = f"{URL}webhooks/{endpoint.id}"
    assert response.status_code == 201
    receiver.secret = _shown_once(admin, response, "whsec_")
    assert "Copy its signing secret now" in response.text
    assert endpoint.event_types == list(EVENT_TYPES)
    assert receiver.secret not in admin.get(page_url).get_data(as_text=True)  # once

    make_contact("lead")
    work_queue()

    assert len(receiver.of_type("contact.enrolled")) == 1 and receiver.refused == []
    page = admin.get(page_url).get_data(as_text=True)
    assert "contact.enrolled" in page and "delivered" in page


def test_the_log_shows_failures_and_redeliver_sends_again(
    admin, session, campaigns, receiver, make_contact
):
    added = admin.post(URL + "webhooks", {"url": receiver.url, "event_types": "contact.created"})
    endpoint_id = session.scalar(sa.select(WebhookEndpoint.id))
    receiver.secret = _secret(added.text, "whsec_")
    receiver.script(500)
    make_contact("lead")
    work_queue()
    (delivery,) = deliveries(session)
    delivery.status = "failed"  # as if every attempt had failed
    session.commit()
    log = admin.get(f"{URL}webhooks/{endpoint_id}").get_data(as_text=True)
    assert "500" in log and "failed" in log

    response = admin.post(f"{URL}webhooks/{endpoint_id}/deliveries/{delivery.id}/redeliver")

    assert response.status_code == 302
    work_queue()  # the redelivery was enqueued after its commit
    (delivery,) = deliveries(session)
    assert delivery.status == "delivered"
    assert list(receiver.events) == [delivery.event_id]


def test_editing_disabling_and_deleting_an_endpoint(admin, session, receiver, campaigns):
    admin.post(URL + "webhooks", {"url": receiver.url, "event_types": "contact.created"})
    endpoint = session.scalar(sa.select(WebhookEndpoint))

    response = admin.post(
        f"{URL}webhooks/{endpoint.id}",
        {"url": receiver.url, "event_types": ["email.sent", "email.opened"]},  # not enabled
    )

    assert response.status_code == 302
    session.refresh(endpoint)
    assert endpoint.event_types == ["email.sent", "email.opened"] and not endpoint.enabled
    assert "disabled" in admin.get(f"{URL}webhooks/{endpoint.id}").get_data(as_text=True)

    admin.post(f"{URL}webhooks/{endpoint.id}/delete")

    assert admin.get(f"{URL}webhooks/{endpoint.id}").status_code == 404
    assert receiver.url not in admin.get(URL).get_data(as_text=True)


def test_a_disabled_endpoint_shows_why(admin, session, receiver):
    admin.post(URL + "webhooks", {"url": receiver.url, "event_types": "contact.created"})
    endpoint = session.scalar(sa.select(WebhookEndpoint))
    endpoint.enabled = False
    endpoint.disabled_reason = "Disabled automatically on 02 Dec 2026: every delivery failed."
    session.commit()

    page = admin.get(f"{URL}webhooks/{endpoint.id}").get_data(as_text=True)

    assert "Disabled automatically on 02 Dec 2026" in page
    assert "disabled: failing" in admin.get(URL).get_data(as_text=True)


def test_a_new_secret_is_shown_once(admin, session, receiver):
    added = admin.post(URL + "webhooks", {"url": receiver.url, "event_types": "contact.created"})
    endpoint_id = session.scalar(sa.select(WebhookEndpoint.id))
    page_url = f"{URL}webhooks/{endpoint_id}"
    first = _shown_once(admin, added, "whsec_")

    rotated = admin.post(f"{page_url}/secret")
    assert rotated.status_code == 200 and "update the receiver" in rotated.text
    second = _shown_once(admin, rotated, "whsec_")

    assert second != first
    assert session.scalar(sa.select(WebhookEndpoint.secret)) == second
    assert second not in admin.get(page_url).get_data(as_text=True)


def test_redeliver_with_htmx_answers_with_the_log(
    admin, session, campaigns, receiver, make_endpoint, make_contact
):
    endpoint = make_endpoint(["contact.created"])
    make_contact("lead")
    (delivery,) = deliveries(session)
    url = f"{URL}webhooks/{endpoint.id}/deliveries/{delivery.id}/redeliver"

    response = admin.post(url, htmx=True)

    page = response.get_data(as_text=True)
    assert page.startswith('<section class="card" id="delivery-log">')
    assert "sent again" in page
    endpoint.enabled = False
    session.commit()
    refused = admin.post(url, htmx=True).get_data(as_text=True)
    assert "Enable the endpoint first" in refused


def test_token_and_endpoint_changes_are_in_the_audit_log(admin, session):
    from crm_app.models import AuditEntry

    admin.post(URL + "tokens", {"name": "Billing", "scope": "read_write"})
    token_id = session.scalar(sa.select(ApiToken.id))
    admin.post(URL + f"tokens/{token_id}/revoke")
    summaries = session.scalars(
        sa.select(AuditEntry.summary)
        .where(AuditEntry.target_type == "api_token")
        .order_by(AuditEntry.id)
    ).all()
    assert summaries == [
        "Created the API token Billing (read_write)",
        "Revoked the API token Billing",
    ]
