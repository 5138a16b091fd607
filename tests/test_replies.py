"""Stop on reply: the Reply-To token, SendGrid's Inbound Parse posts, human replies that
stop the campaign, automatic ones that stop nothing, and what is refused or ignored."""

from __future__ import annotations

import io
import json
import re
import time
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa

from crm_app.drip.audience.enrollment import enroll
from crm_app.drip.delivery.tick import run_tick
from crm_app.drip.tracking.inbound_parse import InboundEmail, read_inbound_post
from crm_app.drip.tracking.replies import automatic_reason
from crm_app.drip.tracking.reply_text import first_lines
from crm_app.drip.tracking.reply_tokens import replied_message_id, reply_address
from crm_app.extensions import db
from crm_app.models import Activity, AuditEntry, Campaign, EmailReply, Enrollment, Message, utcnow
from tests.delivery_helpers import send_due_email

SECRET = "parse-secret-4f9a"
URL = f"/webhooks/inbound/{SECRET}"
DOMAIN = "parse.example.com"


@pytest.fixture
def inbound(app, monkeypatch):
    """Replies configured: a parse domain for the Reply-To, a secret for the endpoint."""
    monkeypatch.setitem(app.config, "INBOUND_PARSE_DOMAIN", DOMAIN)
    monkeypatch.setitem(app.config, "INBOUND_PARSE_SECRET", SECRET)


def multipart(fields: dict[str, str | bytes], files: dict[str, bytes] | None = None):
    """A body shaped as SendGrid posts it: (bytes, content type)."""
    boundary = f"xYzZY{uuid.uuid4().hex}"
    parts = []
    for name, value in fields.items():
        raw = value.encode() if isinstance(value, str) else value
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + raw
            + b"\r\n"
        )
    for name, raw in (files or {}).items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{name}.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
            + raw
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def reply_fields(to: str, *, text="Sounds good, let's talk on Thursday.", **extra) -> dict:
    headers = extra.pop("headers", "")
    fields = {
        "headers": f"Message-ID: <{uuid.uuid4().hex}@mail.example.org>\n{headers}",
        "to": f"Alex Morgan <{to}>",
        "from": "Jamie Lee <jamie@acme.example>",
        "subject": "Re: Thanks for getting in touch",
        "text": text,
        "envelope": json.dumps({"to": [to], "from": "jamie@acme.example"}),
        "charsets": json.dumps({"to": "UTF-8", "subject": "UTF-8", "text": "UTF-8"}),
        "spam_score": "0.1",
    }
    fields.update(extra)
    return fields


def post(web, fields: dict, url: str = URL, files: dict | None = None):
    body, content_type = multipart(fields, files)
    with web._fresh_context():  # a request of its own, as SendGrid's would be
        return web.client.post(url, data=body, content_type=content_type)


def sent_email(session, contact, backend, settings, fake_sendgrid) -> tuple[Message, str]:
    """The contact's first email (by type), sent with the parse domain on: (message, its
    Reply-To)."""
    enrollment = session.scalars(
        sa.select(Enrollment).where(Enrollment.contact_id == contact.id).order_by(Enrollment.id)
    ).first()
    message = send_due_email(
        session, enrollment, backend, settings.replace(inbound_parse_domain=DOMAIN)
    )
    return message, fake_sendgrid.requests[-1]["reply_to"]["email"]


def enrollment_of(contact, campaign) -> Enrollment:
    db.session.expire_all()
    return db.session.scalars(
        sa.select(Enrollment)
        .where(Enrollment.contact_id == contact.id, Enrollment.campaign_id == campaign.id)
        .order_by(Enrollment.id.desc())
    ).first()


def timeline(contact) -> list[tuple[str, str]]:
    rows = db.session.execute(
        sa.select(Activity.kind, Activity.detail)
        .where(Activity.contact_id == contact.id)
        .order_by(Activity.id)
    )
    return [tuple(row) for row in rows]


# ---------------------------------------------------------------- the Reply-To token


def test_each_email_replies_to_a_signed_token_of_its_own_message(
    inbound, session, make_contact, backend, settings, fake_sendgrid
):
    message, reply_to = sent_email(session, make_contact("lead"), backend, settings, fake_sendgrid)

    local, domain = reply_to.split("@")
    assert domain == DOMAIN and local.startswith(f"reply+{message.id}-")
    assert reply_to == reply_address(message.id, settings.replace(inbound_parse_domain=DOMAIN))
    assert replied_message_id([reply_to.upper()], settings.secret_key) == message.id
    forged = f"reply+{message.id + 1}-{local.split('-')[1]}@{DOMAIN}"  # another id, same tag
    assert replied_message_id([forged], settings.secret_key) is None
    assert replied_message_id([reply_to], "another-secret-key") is None


def test_without_a_parse_domain_emails_keep_the_configured_reply_to(
    session, make_contact, backend, settings, fake_sendgrid
):
    contact = make_contact("lead")
    send_due_email(session, contact.enrollments[0], backend, settings)

    assert fake_sendgrid.requests[-1]["reply_to"] == {"email": "replies@example.com"}


# ---------------------------------------------------------------- human replies


def test_a_human_reply_stops_that_campaign_and_lands_on_the_timeline_with_its_first_lines(
    inbound, admin, session, make_contact, campaigns, backend, settings, fake_sendgrid
):
    contact = make_contact("lead")
    enroll(session, contact, campaigns["networking"], actor="test")
    session.commit()
    message, reply_to = sent_email(session, contact, backend, settings, fake_sendgrid)
    text = (
        "Sounds good <b>Alex</b>, Thursday works.\n"
        "Call me on my mobile.\n\n"
        "On Tue, Dec 1, 2026 at 10:00 AM Alex Morgan <\nreply+1-abc@parse.example.com> wrote:\n"
        "> Thanks for getting in touch\n"
    )

    response = post(admin, reply_fields(reply_to, text=text))

    assert response.status_code == 200
    assert response.get_json()["status"] == "recorded" and response.get_json()["stopped"]
    lead = enrollment_of(contact, campaigns["lead"])
    assert lead.status == "stopped" and lead.end_reason == "the contact replied"
    assert enrollment_of(contact, campaigns["networking"]).status == "active"
    reply = db.session.scalar(sa.select(EmailReply))
    assert (reply.message_id, reply.contact_id) == (message.id, contact.id)
    assert not reply.is_automatic
    assert reply.from_email == "jamie@acme.example"
    assert reply.first_lines == "Sounds good <b>Alex</b>, Thursday works. / Call me on my mobile."
    assert reply.stopped_enrollment_id == lead.id
    kinds = [kind for kind, _ in timeline(contact)]
    assert kinds[-2:] == ["replied", "stopped"]
    replied = dict(timeline(contact))["replied"]
    assert replied.startswith("Replied to Email 1 of Lead “")
    assert "”: “Sounds good <b>Alex</b>" in replied
    assert "wrote" not in replied  # the quoted email is left out
    # Escaped on the page like every timeline row.
    page = admin.get(f"/contacts/{contact.id}").get_data(as_text=True)
    assert "Sounds good &lt;b&gt;Alex&lt;/b&gt;" in page and "<b>Alex</b>" not in page


def test_the_next_email_of_a_stopped_campaign_is_never_sent(
    inbound, web, session, make_contact, campaigns, backend, settings, fake_sendgrid
):
    contact = make_contact("lead")
    message, reply_to = sent_email(session, contact, backend, settings, fake_sendgrid)
    post(web, reply_fields(reply_to))

    # However the clock moves on, the tick finds nothing due for this contact.
    run_tick(session, lambda ids: None, now=utcnow() + timedelta(days=400))
    assert (
        db.session.scalar(sa.select(sa.func.count()).where(Message.contact_id == contact.id)) == 1
    )
    assert len(fake_sendgrid.requests) == 1


def test_a_campaign_set_not_to_stop_on_reply_goes_on(
    inbound, web, session, make_contact, campaigns, backend, settings, fake_sendgrid
):
    campaigns["lead"].stop_on_reply = False
    session.commit()
    contact = make_contact("lead")
    _, reply_to = sent_email(session, contact, backend, settings, fake_sendgrid)

    response = post(web, reply_fields(reply_to))

    assert response.get_json()["status"] == "recorded" and not response.get_json()["stopped"]
    assert enrollment_of(contact, campaigns["lead"]).status == "active"
    assert "Lead goes on after replies" in dict(timeline(contact))["replied"]


# ---------------------------------------------------------------- automatic replies


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"headers": "Auto-Submitted: auto-replied"}, "Auto-Submitted: auto-replied"),
        ({"headers": "X-Autoreply: yes"}, "X-Autoreply header"),
        ({"headers": "X-Autorespond: Out of office"}, "X-Autorespond header"),
        ({"headers": "Precedence: bulk"}, "Precedence: bulk"),
        ({"headers": "Precedence: auto_reply"}, "Precedence: auto_reply"),
        ({"headers": "Content-Type: multipart/report; report-type=delivery-status"}, "report"),
        ({"subject": "Out of Office: Thanks for getting in touch"}, "out-of-office subject"),
        ({"subject": "Automatic reply: Thanks for getting in touch"}, "out-of-office subject"),
        ({"subject": "Abwesenheitsnotiz: Thanks for getting in touch"}, "out-of-office"),
        ({"subject": "Réponse automatique : Thanks for getting in touch"}, "out-of-office"),
        ({"subject": "Respuesta automática: Thanks"}, "out-of-office"),
        ({"envelope_from": ""}, "empty return path"),
    ],
)
def test_an_automatic_reply_is_recorded_but_stops_nothing(
    inbound, web, session, make_contact, campaigns, backend, settings, fake_sendgrid, extra, reason
):
    contact = make_contact("lead")
    _, reply_to = sent_email(session, contact, backend, settings, fake_sendgrid)
    fields = reply_fields(reply_to, text="I am away until Monday with limited access to email.")
    fields["headers"] += extra.get("headers", "")
    fields["subject"] = extra.get("subject", fields["subject"])
    if "envelope_from" in extra:
        fields["envelope"] = json.dumps({"to": [reply_to], "from": extra["envelope_from"]})

    response = post(web, fields)

    assert response.get_json()["status"] == "recorded" and not response.get_json()["stopped"]
    assert enrollment_of(contact, campaigns["lead"]).status == "active"
    reply = db.session.scalar(sa.select(EmailReply))
    assert reply.is_automatic and reason in reply.automatic_reason
    kind, detail = timeline(contact)[-1]
    assert kind == "auto_replied" and "nothing stopped" in detail


def test_auto_submitted_no_is_a_person_writing():
    human = InboundEmail(headers="Auto-Submitted: no\n", subject="Re: hello", envelope_from="a@b")
    assert automatic_reason(human) is None


# ---------------------------------------------------------------- refused or ignored


def test_a_reply_to_an_unknown_or_forged_token_is_ignored(
    inbound, web, session, make_contact, campaigns, backend, settings, fake_sendgrid
):
    contact = make_contact("lead")
    message, reply_to = sent_email(session, contact, backend, settings, fake_sendgrid)
    forged = reply_to.replace(f"+{message.id}-", f"+{message.id + 7}-")
    for to in (f"someone@{DOMAIN}", forged, f"reply+{message.id}-{'0' * 20}@{DOMAIN}"):
        response = post(web, reply_fields(to))
        assert response.status_code == 200  # SendGrid must not retry it
        assert response.get_json()["status"] == "ignored"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(EmailReply)) == 0
    assert enrollment_of(contact, campaigns["lead"]).status == "active"


def test_an_oversized_post_is_refused_before_it_is_read(
    inbound, app, web, session, make_contact, backend, settings, fake_sendgrid, monkeypatch
):
    contact = make_contact("lead")
    _, reply_to = sent_email(session, contact, backend, settings, fake_sendgrid)
    monkeypatch.setitem(app.config, "INBOUND_PARSE_MAX_BYTES", 4096)

    response = post(web, reply_fields(reply_to), files={"attachment1": b"x" * 5000})

    assert response.status_code == 413
    assert db.session.scalar(sa.select(sa.func.count()).select_from(EmailReply)) == 0
    assert enrollment_of(contact, contact.enrollments[0].campaign).status == "active"


def test_a_post_without_content_length_stops_at_the_limit(inbound, app, monkeypatch):
    monkeypatch.setitem(app.config, "INBOUND_PARSE_MAX_BYTES", 4096)
    body, content_type = multipart(reply_fields(f"x@{DOMAIN}"), {"a": b"x" * 10_000})

    # A chunked post: no Content-Length, the server says where the body ends.
    with app.app_context():
        response = app.test_client().post(
            URL,
            input_stream=io.BytesIO(body),
            content_type=content_type,
            environ_overrides={"wsgi.input_terminated": True},
        )
    assert response.status_code == 413


def test_the_endpoint_is_not_found_with_a_wrong_secret_or_when_off(app, web, monkeypatch):
    fields = reply_fields(f"x@{DOMAIN}")
    assert post(web, fields).status_code == 404
    monkeypatch.setitem(app.config, "INBOUND_PARSE_SECRET", SECRET)
    assert post(web, fields, url=URL + "x").status_code == 404
    assert post(web, fields, url=URL[:-1]).status_code == 404


def test_a_body_that_is_not_multipart_is_refused(inbound, web):
    with web._fresh_context():
        response = web.client.post(URL, data="to=x", content_type="text/plain")
    assert response.status_code == 400


def test_the_same_reply_posted_twice_is_recorded_once(
    inbound, web, session, make_contact, backend, settings, fake_sendgrid
):
    contact = make_contact("lead")
    _, reply_to = sent_email(session, contact, backend, settings, fake_sendgrid)
    fields = reply_fields(reply_to)

    assert post(web, fields).get_json()["status"] == "recorded"
    assert post(web, fields).get_json()["status"] == "duplicate"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(EmailReply)) == 1


# ---------------------------------------------------------------- reading the post


def test_fields_are_decoded_in_the_charsets_sendgrid_names_and_attachments_skipped():
    fields = {
        "to": "reply+1-x@parse.example.com",
        "subject": "Re: Déjà vu".encode("iso-8859-1"),
        "text": "Très bien, à jeudi.".encode("iso-8859-1"),
        "charsets": json.dumps({"subject": "iso-8859-1", "text": "iso-8859-1", "to": "UTF-8"}),
        "envelope": json.dumps({"to": ["reply+2-y@parse.example.com"], "from": "a@b.example"}),
    }
    body, content_type = multipart(fields, {"attachment1": b"\x00" * 70_000})
    chunks = [body[i : i + 1000] for i in range(0, len(body), 1000)]

    email = read_inbound_post(content_type, chunks)

    assert email.subject == "Re: Déjà vu" and email.text == "Très bien, à jeudi."
    assert email.recipients() == ["reply+2-y@parse.example.com", "reply+1-x@parse.example.com"]
    assert email.envelope_from == "a@b.example"


@pytest.mark.parametrize(
    "odd",
    [
        {"charsets": json.dumps({"text": 5, "subject": None, "to": ["UTF-8"]})},
        {"charsets": json.dumps({"text": "\ud800", "subject": "utf-8\u0000"})},
        {"charsets": "[" * 100_000, "envelope": "[" * 100_000},
        {"envelope": json.dumps({"to": "x", "from": 5})},
    ],
    ids=["not-strings", "no-codec-names", "nested-too-deeply", "wrong-shapes"],
)
def test_odd_charsets_and_envelopes_are_read_as_utf8_and_the_reply_is_recorded(
    inbound, web, session, make_contact, backend, settings, fake_sendgrid, odd
):
    # Each was a 500: SendGrid retries, then drops the reply, and the campaign goes on.
    message, reply_to = sent_email(session, make_contact("lead"), backend, settings, fake_sendgrid)

    response = post(web, reply_fields(reply_to, text="Thursday works.", **odd))

    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["status"] == "recorded"
    reply = session.scalar(sa.select(EmailReply))
    assert reply.message_id == message.id


@pytest.mark.parametrize(
    ("text", "html", "expected"),
    [
        ("Yes please.\n\n> On Monday you wrote\n> hello", "", "Yes please."),
        ("Ok!\n\nLe mar. 1 déc. 2026 à 10:00, Alex <a@b.c> a écrit :\n> x", "", "Ok!"),
        ("Gern.\nAm 01.12.2026 schrieb Alex <a@b.c>:\n> x", "", "Gern."),
        ("Fine\n-----Original Message-----\nFrom: Alex", "", "Fine"),
        ("Thanks\n--\nJamie Lee\nCEO", "", "Thanks"),
        ("Great\n\nSent from my iPhone", "", "Great"),
        ("", "<p>Hi <b>you</b></p><p>See you</p><blockquote>old</blockquote>", "Hi you / See you"),
        ("a\nb\nc\nd", "", "a / b / c"),
    ],
)
def test_the_first_lines_leave_out_the_quote_and_signature(text, html, expected):
    assert first_lines(text, html) == expected


def test_a_line_of_many_verbs_and_colons_is_read_in_linear_time():
    # Anyone can mail a reply address: one 550 KB line like this held a web worker for
    # 7 s, a time that grew with its square (the 32 MB a post may carry: days).
    line = "On Monday Alex wrote :" * 25_000 + " ok"
    started = time.perf_counter()
    assert first_lines(line).startswith("On Monday Alex wrote :On Monday")
    assert time.perf_counter() - started < 1
    # Still a quote intro: the verb, then a colon at the end of the line.
    assert first_lines("Yes.\nOn Monday, Alex wrote :\n> hi") == "Yes."
    assert first_lines("Sure\nwrotes:\nnext") == "Sure / wrotes: / next"


def test_the_first_lines_are_trimmed():
    assert len(first_lines("word " * 200)) == 280


# ---------------------------------------------------------------- the campaign setting


def test_an_admin_turns_stop_on_reply_off_and_on_from_the_campaign_page(admin, campaigns):
    lead = campaigns["lead"]
    checked = re.compile(r'name="stop_on_reply"[^>]*checked')
    assert checked.search(admin.get(f"/campaigns/{lead.id}").get_data(as_text=True))

    response = admin.post(f"/campaigns/{lead.id}/replies", {}, htmx=True)
    panel = response.get_data(as_text=True)
    assert response.status_code == 200 and "no longer stops" in panel
    assert 'name="stop_on_reply"' in panel and not checked.search(panel)
    db.session.expire_all()
    assert db.session.get(Campaign, lead.id).stop_on_reply is False
    admin.post(f"/campaigns/{lead.id}/replies", {"stop_on_reply": "on"})
    db.session.expire_all()
    assert db.session.get(Campaign, lead.id).stop_on_reply is True
    summaries = list(db.session.scalars(sa.select(AuditEntry.summary).order_by(AuditEntry.id)))
    assert summaries[-2:] == [
        "Lead: a contact's reply no longer stops their emails",
        "Lead: a contact's reply stops their emails",
    ]


def test_staff_cannot_change_stop_on_reply(staff, campaigns):
    lead = campaigns["lead"]
    assert staff.post(f"/campaigns/{lead.id}/replies", {}).status_code == 403
    assert db.session.get(Campaign, lead.id).stop_on_reply is True
