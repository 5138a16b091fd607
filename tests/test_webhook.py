"""The SendGrid Event Webhook: signature, recording, consequences, replays."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from crm_app.models import (
    Activity,
    Campaign,
    EmailEvent,
    Enrollment,
    Message,
    Suppression,
    WebhookBatch,
)
from tests.webhook_signing import WebhookSigner, encode

URL = "/webhooks/sendgrid"


@pytest.fixture
def signer(app, monkeypatch):
    signer = WebhookSigner()
    monkeypatch.setitem(app.config, "SENDGRID_WEBHOOK_PUBLIC_KEY", signer.public_key_b64)
    return signer


@pytest.fixture
def sent_message(session, make_contact):
    """A contact enrolled in Lead whose first email went out."""
    contact = make_contact("lead", email="reader@example.com")
    enrollment = contact.enrollments[0]
    message = Message(
        enrollment_id=enrollment.id,
        step_id=enrollment.campaign.steps[0].id,
        contact_id=contact.id,
        campaign_id=enrollment.campaign_id,
        status="sent",
        to_email=contact.email,
        subject="Hello",
        provider_message_id="prov123",
        sent_at=datetime(2026, 11, 20, 10, 0, tzinfo=UTC),
    )
    session.add(message)
    session.commit()
    return message


def event(kind: str, message: Message | None, n: int = 1, ts: int = 1_763_640_000, **extra):
    body = {
        "event": kind,
        "email": "reader@example.com",
        "timestamp": ts,
        "sg_event_id": f"{kind}-{n}",
        "sg_message_id": "prov123.filter0001.123.0",
    }
    if message is not None:
        body.update(
            message_id=str(message.id),
            contact_id=str(message.contact_id),
            campaign_id=str(message.campaign_id),
        )
    body.update(extra)
    return body


def post(web, signer, events, timestamp=None):
    body = encode(events)
    return web.client.post(URL, data=body, headers=signer.headers(body, timestamp))


def count(session, model, *where):
    return session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


# --- signature ---------------------------------------------------------------


def test_signed_batch_is_accepted(web, signer, session, sent_message):
    response = post(web, signer, [event("delivered", sent_message), event("open", sent_message)])
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"received": 2, "applied": 2, "duplicates": 0, "rejected": 0}
    assert count(session, EmailEvent) == 2
    assert session.get(Message, sent_message.id).opened_at is not None


def _refused(web, session, body, headers):
    response = web.client.post(URL, data=body, headers=headers)
    assert response.status_code == 403
    assert count(session, EmailEvent) == 0
    assert count(session, WebhookBatch) == 0
    return response


def test_altered_body_is_refused(web, signer, session, sent_message):
    body = encode([event("delivered", sent_message)])
    headers = signer.headers(body)
    _refused(web, session, body.replace(b"delivered", b"bounce"), headers)


def test_altered_timestamp_is_refused(web, signer, session, sent_message):
    body = encode([event("delivered", sent_message)])
    headers = signer.headers(body)
    headers["X-Twilio-Email-Event-Webhook-Timestamp"] = str(int(time.time()) + 1)
    _refused(web, session, body, headers)


def test_stale_timestamp_is_refused_even_when_signed(web, signer, session, sent_message, caplog):
    body = encode([event("delivered", sent_message)])
    _refused(web, session, body, signer.headers(body, timestamp=int(time.time()) - 3600))
    assert "SendGrid webhook refused" in caplog.text


def test_wrong_key_is_refused(web, signer, session, sent_message):
    body = encode([event("delivered", sent_message)])
    _refused(web, session, body, WebhookSigner().headers(body))


def test_missing_headers_are_refused(web, signer, session, sent_message):
    body = encode([event("delivered", sent_message)])
    _refused(web, session, body, {"Content-Type": "application/json"})


def test_garbage_signature_is_refused(web, signer, session, sent_message):
    body = encode([event("delivered", sent_message)])
    headers = signer.headers(body)
    headers["X-Twilio-Email-Event-Webhook-Signature"] = "not base64 !!"
    _refused(web, session, body, headers)


def test_no_configured_key_refuses_everything(web, session, sent_message, app, monkeypatch):
    monkeypatch.setitem(app.config, "SENDGRID_WEBHOOK_PUBLIC_KEY", None)
    body = encode([event("delivered", sent_message)])
    _refused(web, session, body, WebhookSigner().headers(body))


def test_csrf_does_not_apply_but_the_signature_does(web, signer, sent_message):
    # No CSRF token at all, yet accepted: the signature is the authentication.
    assert post(web, signer, [event("processed", sent_message)]).status_code == 200


# --- recording and replays -----------------------------------------------------


def test_duplicate_event_changes_nothing_the_second_time(web, signer, session, sent_message):
    batch = [event("open", sent_message, ts=1_763_640_000)]
    post(web, signer, batch)
    activities = count(session, Activity)
    again = post(web, signer, batch).get_json()
    assert again == {"received": 1, "applied": 0, "duplicates": 1, "rejected": 0}
    assert count(session, EmailEvent) == 1
    assert count(session, Activity) == activities


def test_out_of_order_events_keep_the_first_time(web, signer, session, sent_message):
    later = event("open", sent_message, n=2, ts=1_763_650_000)
    earlier = event("open", sent_message, n=1, ts=1_763_640_000)
    post(web, signer, [later])
    post(web, signer, [earlier])
    post(web, signer, [event("open", sent_message, n=3, ts=1_763_660_000)])
    session.expire_all()
    opened = session.get(Message, sent_message.id).opened_at
    assert opened == datetime.fromtimestamp(1_763_640_000, tz=UTC)


def test_event_tied_by_sg_message_id_without_custom_args(web, signer, session, sent_message):
    post(web, signer, [event("delivered", None)])
    session.expire_all()
    assert session.get(Message, sent_message.id).delivered_at is not None
    row = session.scalars(sa.select(EmailEvent)).one()
    assert row.message_id == sent_message.id


def test_malformed_event_is_rejected_and_the_rest_kept(web, signer, session, sent_message):
    batch = [
        event("delivered", sent_message),
        {
            "event": "teleported",
            "email": "reader@example.com",
            "sg_event_id": "x-1",
            "timestamp": 1,
        },
        {"event": "open", "email": "reader@example.com"},  # no sg_event_id, no timestamp
        "not even an object",
        event("click", sent_message, url="https://example.com/pricing"),
    ]
    response = post(web, signer, batch)
    assert response.status_code == 200
    assert response.get_json() == {"received": 5, "applied": 2, "duplicates": 0, "rejected": 3}
    assert count(session, EmailEvent, EmailEvent.outcome == "rejected") == 3
    reasons = set(
        session.scalars(sa.select(EmailEvent.detail).where(EmailEvent.outcome == "rejected"))
    )
    assert "unknown event type 'teleported'" in reasons
    assert session.get(Message, sent_message.id).clicked_at is not None


def test_an_event_type_that_is_a_list_or_an_object_is_rejected_and_the_rest_kept(
    web, signer, session, sent_message
):
    # A list as "event" could not be looked up among the known types: a 500 for the
    # whole batch, on every retry.
    batch = [event("delivered", sent_message), {**event("open", sent_message), "event": ["open"]},
             {**event("click", sent_message), "event": {"a": 1}}]  # fmt: skip

    response = post(web, signer, batch)

    assert response.status_code == 200
    assert response.get_json() == {"received": 3, "applied": 1, "duplicates": 0, "rejected": 2}
    assert session.get(Message, sent_message.id).delivered_at is not None


def test_body_that_is_not_an_array_is_a_400(web, signer, session):
    response = post(web, signer, {"event": "open"})
    assert response.status_code == 400
    assert "JSON array" in response.get_json()["error"]
    assert count(session, EmailEvent) == 0


def test_timeline_shows_the_emails_events(web, signer, session, sent_message):
    post(
        web,
        signer,
        [
            event("delivered", sent_message),
            event("click", sent_message, url="https://example.com/a"),
        ],
    )
    kinds = set(
        session.scalars(
            sa.select(Activity.kind).where(Activity.contact_id == sent_message.contact_id)
        )
    )
    assert {"email_delivered", "email_click"} <= kinds


# --- consequences --------------------------------------------------------------


def _active(session, contact_id):
    return count(
        session, Enrollment, Enrollment.contact_id == contact_id, Enrollment.status == "active"
    )


@pytest.mark.parametrize(
    ("kind", "extra", "status"),
    [
        ("bounce", {"type": "bounce", "reason": "550 5.1.1 no such user"}, "bounced"),
        ("dropped", {"reason": "Bounced Address"}, "bounced"),
        ("dropped", {"reason": "Invalid"}, "bounced"),
        ("spamreport", {}, "complained"),
        ("unsubscribe", {}, "unsubscribed"),
        ("group_unsubscribe", {"asm_group_id": 7}, "unsubscribed"),
    ],
)
def test_suppressing_events_stop_everything(
    web, signer, session, sent_message, kind, extra, status
):
    contact_id = sent_message.contact_id
    assert _active(session, contact_id) == 1
    post(web, signer, [event(kind, sent_message, **extra)])
    session.expire_all()
    entry = session.scalars(sa.select(Suppression)).one()
    assert entry.email == "reader@example.com"
    assert entry.source.startswith("sendgrid")
    assert _active(session, contact_id) == 0
    stopped = session.scalars(
        sa.select(Enrollment).where(Enrollment.contact_id == contact_id)
    ).one()
    assert stopped.status == "stopped" and stopped.end_reason
    assert sent_message.contact.email_status == status
    kind = "unsubscribed" if "unsubscribe" in kind else "suppressed"
    assert count(session, Activity, Activity.kind == kind) == 1


@pytest.mark.parametrize(
    ("kind", "extra"),
    [
        ("bounce", {"type": "blocked", "reason": "IP blocked"}),
        ("dropped", {"reason": "Invalid SMTPAPI header"}),
        ("deferred", {"reason": "try later"}),
        ("open", {}),
        ("click", {"url": "https://example.com"}),
    ],
)
def test_other_events_do_not_suppress(web, signer, session, sent_message, kind, extra):
    post(web, signer, [event(kind, sent_message, **extra)])
    assert count(session, Suppression) == 0
    assert _active(session, sent_message.contact_id) == 1


def test_group_resubscribe_lifts_only_what_group_unsubscribe_set(
    web, signer, session, sent_message
):
    post(web, signer, [event("group_unsubscribe", sent_message, ts=1_763_640_000)])
    post(web, signer, [event("group_resubscribe", sent_message, ts=1_763_650_000)])
    session.expire_all()
    assert count(session, Suppression) == 0
    assert sent_message.contact.email_status == "ok"
    # A spam report is not lifted by a group resubscribe.
    post(web, signer, [event("spamreport", sent_message, ts=1_763_660_000)])
    post(web, signer, [event("group_resubscribe", sent_message, n=2, ts=1_763_670_000)])
    session.expire_all()
    assert session.scalars(sa.select(Suppression.reason)).one() == "spamreport"


def test_late_group_unsubscribe_after_resubscribe_changes_nothing(
    web, signer, session, sent_message
):
    post(web, signer, [event("group_resubscribe", sent_message, ts=1_763_650_000)])
    post(web, signer, [event("group_unsubscribe", sent_message, ts=1_763_640_000)])
    assert count(session, Suppression) == 0


def test_duplicate_bounce_records_one_suppression(web, signer, session, sent_message):
    batch = [event("bounce", sent_message, type="bounce")]
    post(web, signer, batch)
    post(web, signer, batch)
    assert count(session, Suppression) == 1
    assert count(session, Activity, Activity.kind == "suppressed") == 1


def test_processed_resolves_an_in_doubt_message_as_sent(web, signer, session, sent_message):
    sent_message.status = "in_doubt"
    sent_message.sent_at = None
    session.commit()
    post(web, signer, [event("processed", sent_message)])
    session.expire_all()
    resolved = session.get(Message, sent_message.id)
    assert resolved.status == "sent"
    assert resolved.sent_at is not None


def test_a_large_batch_is_one_request(web, signer, session, sent_message):
    batch = [event("open", sent_message, n=i, ts=1_763_640_000 + i) for i in range(2000)]
    response = post(web, signer, batch)
    assert response.get_json()["applied"] == 2000
    assert count(session, EmailEvent) == 2000
    batch_row = session.scalars(sa.select(WebhookBatch)).one()
    assert batch_row.event_count == 2000


# --- concurrent batches (SendGrid posts several at once) ---------------------


def test_a_batch_never_waits_on_the_foreign_key_locks_of_another_in_flight(
    web, signer, session, sent_message
):
    """Another request still in its transaction has stored events of the same message
    (KEY SHARE on the message) and timeline rows of the same campaign (KEY SHARE on the
    campaign). This batch's first-seen lock on the message and breaker lock on the
    campaign must not wait for it: waiting both ways is a deadlock, a 500, and SendGrid
    retrying the batch (seen with 4 senders in bench/webhook_bench.py)."""
    from sqlalchemy.orm import Session

    from crm_app.extensions import db

    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("row locks: PostgreSQL only (SQLite has a single writer)")
    campaign = session.get(Campaign, sent_message.campaign_id)
    campaign.breaker_sends = 1  # this batch's bounce trips it: the breaker takes its lock
    session.commit()
    other = Session(db.engine)
    try:
        other.add(EmailEvent(sg_event_id="other-1", event="delivered",
                             message_id=sent_message.id, payload={}))  # fmt: skip
        other.add(Activity(contact_id=sent_message.contact_id, kind="email_delivered",
                           campaign_id=sent_message.campaign_id))  # fmt: skip
        other.flush()  # the other request's locks are held from here to its commit
        db.session.execute(sa.text("SET lock_timeout = '2s'"))
        response = post(web, signer, [event("open", sent_message), event("bounce", sent_message)])
        assert response.status_code == 200, response.get_data(as_text=True)
    finally:
        other.rollback()
        other.close()
    session.expire_all()
    assert session.get(Message, sent_message.id).bounced_at is not None
    assert session.get(Campaign, sent_message.campaign_id).status == "paused"
