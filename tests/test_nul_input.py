"""A NUL character in input: PostgreSQL's text cannot hold one. People's input with one is
refused with a clear error and saves nothing; SendGrid's data keeps its events, each NUL
replaced by U+FFFD. Both databases (on PostgreSQL each of these was a 500)."""

from __future__ import annotations

import sqlalchemy as sa

from crm_app.drip.common.nul import (
    REPLACEMENT,
    holds_lone_surrogate,
    holds_nul,
    json_body_holds_lone_surrogate,
    json_body_holds_nul,
    load_json_without_nul,
    without_nul,
)
from crm_app.models import Contact, EmailEvent, EmailReply, Message
from tests import test_replies, test_webhook
from tests.test_replies import post as post_reply
from tests.test_replies import reply_fields, sent_email
from tests.test_webhook import event
from tests.test_webhook import post as post_events

# Their fixtures: a webhook signing key the app trusts, a sent message, replies configured.
signer = test_webhook.signer
sent_message = test_webhook.sent_message
inbound = test_replies.inbound

SAYS = "holds a NUL character"
CONTACT = {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
           "contact_type": "lead", "timezone": "UTC"}  # fmt: skip


def contacts(session) -> int:
    return session.scalar(sa.select(sa.func.count(Contact.id)))


def test_the_helpers_find_and_replace_nul_anywhere():
    nested = {"a": ["x", {"b\x00": 1}], "c": "ok"}
    assert holds_nul(nested) and holds_nul(("x\x00",)) and not holds_nul({"a": ["x", 1, None]})
    assert without_nul(nested) == {"a": ["x", {f"b{REPLACEMENT}": 1}], "c": "ok"}
    assert load_json_without_nul(b'[{"r": "a\\u0000b"}]') == [{"r": f"a{REPLACEMENT}b"}]
    assert json_body_holds_nul(b'{"n": "a\\u0000"}')
    # An escaped backslash before "u0000" is six characters of text, not a NUL.
    assert not json_body_holds_nul(b'{"n": "a\\\\u0000"}')
    assert not json_body_holds_nul(b'{"n": "a\\u0000')  # not JSON: its parser says so


def test_a_form_with_a_nul_is_refused_with_a_page_and_saves_nothing(admin, session, campaigns):
    response = admin.post("/contacts/new", {**CONTACT, "first_name": "A\x00da"})

    assert response.status_code == 400
    assert SAYS in response.get_data(as_text=True)
    assert contacts(session) == 0
    # The same form without it is saved.
    assert admin.post("/contacts/new", CONTACT).status_code == 302
    assert contacts(session) == 1


def test_an_htmx_request_with_a_nul_gets_an_alert(admin, make_contact):
    contact = make_contact("lead")

    response = admin.post(f"/contacts/{contact.id}/edit", {**CONTACT, "company": "\x00"}, htmx=True)

    assert response.status_code == 400
    assert SAYS in response.get_data(as_text=True)


def test_a_search_or_a_login_with_a_nul_is_refused(admin, web, make_contact):
    make_contact("lead")
    assert admin.get("/contacts/?q=ada%00").status_code == 400
    assert admin.get("/contacts/?q=ada").status_code == 200

    web.logout()
    response = web.post("/login", {"email": "admin@example.com\x00", "password": "x"})
    assert response.status_code == 400 and SAYS in response.get_data(as_text=True)


def test_an_api_body_with_a_nul_is_a_400_problem(api, session, campaigns):
    response = api.post("/api/v1/contacts", {**CONTACT, "custom_fields": {"plan": "pro\x00"}})

    assert response.status_code == 400
    assert response.content_type == "application/problem+json"
    assert SAYS in response.get_json()["detail"]
    assert contacts(session) == 0
    # Text that only spells \u0000 is no NUL.
    response = api.post("/api/v1/contacts", {**CONTACT, "company": "\\u0000 Ltd"})
    assert response.status_code == 201 and response.get_json()["company"] == "\\u0000 Ltd"


def test_an_api_body_with_a_lone_surrogate_is_a_400_problem(api, session, make_contact):
    """Python's JSON lets "\\ud800" through; the database driver cannot encode it (a 500)."""
    contact = make_contact("lead")
    lone = '{"email": "sur@example.com", "contact_type": "lead", "first_name": "A\\ud800"}'
    in_a_key = '{"custom_fields": {"\\udfff": "x"}}'

    for method, url, body in [
        ("POST", "/api/v1/contacts", lone),
        ("PATCH", f"/api/v1/contacts/{contact.id}", in_a_key),
        ("POST", f"/api/v1/contacts/{contact.id}/goals", '{"name": "demo\\uDC00"}'),
    ]:
        response = api.request(method, url, data=body, content_type="application/json")
        assert response.status_code == 400, (url, response.get_data(as_text=True))
        assert response.content_type == "application/problem+json"
        assert "lone surrogate" in response.get_json()["detail"]
    assert contacts(session) == 1
    assert session.get(Contact, contact.id).custom_fields in ({}, None)
    # A surrogate pair is one character (an emoji), and an escaped backslash is text.
    pair = '{"email": "pair@example.com", "contact_type": "lead", '
    pair += '"first_name": "\\ud83d\\ude00 \\\\ud800"}'
    response = api.request("POST", "/api/v1/contacts", data=pair, content_type="application/json")
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["first_name"] == "\U0001f600 \\ud800"
    assert holds_lone_surrogate({"k": ["\ud800"]}) and not holds_lone_surrogate(["\U0001f600"])
    assert not json_body_holds_lone_surrogate(b'{"n": "\\ud800')  # not JSON: its parser says so


def test_sendgrid_events_with_a_nul_are_kept_with_the_replacement_character(
    web, signer, session, sent_message
):
    batch = [
        event("bounce", sent_message, 1, type="bounce", reason="550 no\x00 such user"),
        event("open", sent_message, 2, useragent="Mail\x00/1.0", **{"x\x00": "y"}),
        {"event": "teleported\x00", "email": "reader@example.com", "sg_event_id": "t-1",
         "timestamp": 1},
    ]  # fmt: skip

    response = post_events(web, signer, batch)

    assert response.status_code == 200
    assert response.get_json() == {"received": 3, "applied": 2, "duplicates": 0, "rejected": 1}
    bounce = session.scalar(sa.select(EmailEvent).where(EmailEvent.event == "bounce"))
    assert bounce.payload["reason"] == f"550 no{REPLACEMENT} such user"
    assert f"no{REPLACEMENT} such user" in bounce.detail
    opened = session.scalar(sa.select(EmailEvent).where(EmailEvent.event == "open"))
    assert opened.payload[f"x{REPLACEMENT}"] == "y"
    assert session.get(Message, sent_message.id).bounced_at is not None
    # A retry of the same batch changes nothing.
    assert post_events(web, signer, batch).get_json()["duplicates"] == 2


def test_an_inbound_reply_with_a_nul_is_recorded(
    inbound, web, session, make_contact, backend, settings, fake_sendgrid
):
    message, reply_to = sent_email(session, make_contact("lead"), backend, settings, fake_sendgrid)
    fields = reply_fields(reply_to, text="Thursday\x00 works.", subject="Re: hi\x00")

    response = post_reply(web, fields)

    assert response.status_code == 200 and response.get_json()["status"] == "recorded"
    reply = session.scalar(sa.select(EmailReply))
    assert reply.message_id == message.id and reply.subject == f"Re: hi{REPLACEMENT}"
