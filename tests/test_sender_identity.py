"""Who an email speaks as: the contact's owner (name, title, signature, their From name,
with the configured address kept), else the workspace's sender from the Settings page
(MAIL_FROM_NAME until set). One rule (rendering.sender_context) for delivery and previews."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from crm_app.drip.campaigns.rendering import (
    PREVIEW_UNSUBSCRIBE_URL,
    SAMPLE_CONTACT,
    WorkspaceSender,
    build_context,
    render_email,
    sender_context,
    sender_from_name,
)
from crm_app.drip.delivery.pipeline import deliver_messages
from crm_app.drip.team.workspace import save_sender_settings
from crm_app.extensions import db
from crm_app.models import User
from tests.conftest import make_user
from tests.test_delivery import _tick

WORKSPACE = WorkspaceSender(
    name="Drip CRM", signature="", email="hello@example.com", company="Drip CRM", website=""
)


def _owner(**fields) -> User:
    user = make_user("dana@example.com", "staff", "violet-harbour-lamp")
    values = {"name": "Dana Reyes", "title": "Account Manager"} | fields
    for key, value in values.items():
        setattr(user, key, value)
    db.session.commit()
    return user


def _send(session, contact, backend, settings, fake_sendgrid) -> dict:
    message = _tick(session, contact)
    report = deliver_messages(session, [message.id], backend, settings)
    assert report.sent == [message.id]
    assert fake_sendgrid.deliveries == {str(message.id): 1}  # once, as always
    return fake_sendgrid.requests[0]


def _parts(payload: dict) -> tuple[str, str]:
    text, html = (c["value"] for c in payload["content"])
    return text, html


def test_an_owners_contact_gets_email_from_the_owner_at_the_verified_address(
    session, make_contact, backend, settings, fake_sendgrid
):
    owner = _owner(from_name="Dana at Acme", signature="Dana Reyes\nAccount Manager\nAcme")
    contact = make_contact("lead", owner_id=owner.id)

    payload = _send(session, contact, backend, settings, fake_sendgrid)

    assert payload["from"] == {"email": "team@example.com", "name": "Dana at Acme"}
    text, html = _parts(payload)
    assert "I am Dana Reyes, Account Manager at Acme Consulting" not in text  # no "I am" intro
    assert "Dana Reyes\nAccount Manager\nAcme" in text
    assert "Dana Reyes<br>\nAccount Manager<br>\nAcme" in html
    assert "Drip Team" not in text


def test_an_owner_without_a_from_name_sends_under_their_name(
    session, make_contact, backend, settings, fake_sendgrid
):
    owner = _owner()
    payload = _send(
        session, make_contact("lead", owner_id=owner.id), backend, settings, fake_sendgrid
    )
    assert payload["from"] == {"email": "team@example.com", "name": "Dana Reyes"}
    text, _html = _parts(payload)
    # No signature of their own: name, title and company, each once.
    assert "Dana Reyes\nAccount Manager\nAcme Consulting" in text


def test_without_an_owner_the_configured_sender_name_speaks_until_one_is_set(
    session, make_contact, backend, settings, fake_sendgrid
):
    payload = _send(session, make_contact("lead"), backend, settings, fake_sendgrid)
    assert payload["from"] == {"email": "team@example.com", "name": "Drip Team"}
    text, _html = _parts(payload)
    assert "Drip Team\nAcme Consulting" in text
    assert "I am Drip Team" not in text


def test_without_an_owner_the_workspace_sender_from_settings_speaks(
    session, make_contact, backend, settings, fake_sendgrid, admin_user
):
    save_sender_settings(
        session,
        {"sender_name": "Sam from Acme", "sender_signature": "Sam Carter\nAcme Consulting"},
        actor=admin_user,
    )
    session.commit()
    payload = _send(session, make_contact("lead"), backend, settings, fake_sendgrid)
    assert payload["from"] == {"email": "team@example.com", "name": "Sam from Acme"}
    text, _html = _parts(payload)
    assert "Sam Carter\nAcme Consulting" in text


def test_a_disabled_owner_no_longer_speaks(session, make_contact, backend, settings, fake_sendgrid):
    owner = _owner(from_name="Dana at Acme")
    contact = make_contact("lead", owner_id=owner.id)
    owner.is_active_user = False
    session.commit()
    payload = _send(session, contact, backend, settings, fake_sendgrid)
    assert payload["from"]["name"] == "Drip Team"


def test_a_from_name_never_carries_a_line_break_into_the_header(
    session, make_contact, backend, settings, fake_sendgrid
):
    owner = _owner(from_name="Dana\r\nBcc: victim@example.com")
    payload = _send(
        session, make_contact("lead", owner_id=owner.id), backend, settings, fake_sendgrid
    )
    assert payload["from"]["name"] == "Dana Bcc: victim@example.com"


def test_the_settings_page_saves_the_workspace_sender_and_shows_what_contacts_see(admin):
    page = admin.get("/settings").get_data(as_text=True)
    assert "Drip CRM &lt;hello@example.com&gt;" in page  # MAIL_FROM_NAME until set
    response = admin.post(
        "/settings", {"sender_name": "Sam from Acme", "sender_signature": "Sam\r\nAcme"}
    )
    assert response.status_code == 302
    page = admin.get("/settings").get_data(as_text=True)
    assert "Sam from Acme &lt;hello@example.com&gt;" in page
    assert "Sam<br>\nAcme" in page


def test_the_settings_page_is_for_admins(staff):
    assert staff.get("/settings").status_code == 403
    assert staff.post("/settings", {"sender_name": "Mallory"}).status_code == 403


def test_a_too_long_signature_is_refused_next_to_the_field(admin):
    response = admin.post("/settings", {"sender_name": "Sam", "sender_signature": "x" * 1001})
    assert response.status_code == 422
    assert 'id="error-sender_signature"' in response.get_data(as_text=True)


def test_previews_speak_as_the_previewing_user(staff, staff_user, campaigns):
    staff_user.name, staff_user.signature = "Robin Hale", "Robin Hale\nNorthwind"
    db.session.commit()
    lead = campaigns["lead"]
    page = staff.get(f"/campaigns/{lead.id}/steps/{lead.steps[0].id}/preview")
    assert "Robin Hale\nNorthwind" in page.get_data(as_text=True)


def _default_emails(sender: dict) -> list[str]:
    from crm_app.default_campaigns import load_default_campaigns

    texts = []
    for campaign in load_default_campaigns():
        for step in campaign["steps"]:
            context = build_context(SAMPLE_CONTACT, sender)
            email = render_email(step["subject"], step["body_html"], step["body_text"], context)
            texts.append(email.text)
    return texts


class _Admin:
    """The first admin `make run` creates: named "Admin", nothing else set."""

    name, title, signature, phone, from_name = "Admin", "", "", "", ""
    email, is_active_user = "admin@example.com", True


@pytest.mark.parametrize(
    ("owner", "who"), [(None, "the workspace"), (_Admin(), "an owner named Admin")]
)
def test_the_default_emails_read_like_a_person_wrote_them(owner, who):
    sender = sender_context(owner, WORKSPACE)
    for text in _default_emails(sender):
        assert not re.search(r"\bI am (Drip CRM|Admin)\b", text), who
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        repeated = [a for a, b in zip(lines, lines[1:], strict=False) if a == b]
        assert not repeated, f"{who}: {repeated}"  # no "Drip CRM / Drip CRM"
    assert sender_from_name(owner, WORKSPACE) in ("Drip CRM", "Admin")


def test_every_default_email_signs_off_with_the_senders_name():
    owner = _Admin()
    owner.name = "Dana Reyes"
    for text in _default_emails(sender_context(owner, WORKSPACE)):
        # The last paragraph but the unsubscribe line every email ends with.
        sign_off = [p for p in text.split("\n\n") if PREVIEW_UNSUBSCRIBE_URL not in p][-1]
        assert "Dana" in sign_off, text[-200:]


def test_nameless_users_leave_the_speaking_to_the_workspace(session):
    user = make_user("nameless@example.com", "staff", "violet-harbour-lamp")
    user.name = ""
    db.session.commit()
    assert sender_context(user, WORKSPACE)["name"] == "Drip CRM"
    assert session.scalar(sa.select(User.name).where(User.id == user.id)) == ""
