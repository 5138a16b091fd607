"""GDPR: one contact's data exported as JSON, and erased: personal data gone, figures
kept, and the address refused at the next enrolment and at send (by its hash)."""

from __future__ import annotations

import json
import re

import pytest
import sqlalchemy as sa

from crm_app.config import settings_of
from crm_app.drip.audience.address_hash import address_hash, erasure_key
from crm_app.drip.audience.contact_list import contact_list_page
from crm_app.drip.audience.contacts import (
    ContactValidationError,
    contact_form_values,
    save_contact,
)
from crm_app.drip.audience.enrollment import EnrollmentError, enroll
from crm_app.drip.audience.erasure import ErasureError, erase_contact
from crm_app.drip.audience.list_request import ListRequest
from crm_app.drip.audience.suppression import (
    SuppressionError,
    add_manual_suppression,
    suppress,
)
from crm_app.drip.delivery.pipeline import deliver_messages
from crm_app.drip.delivery.tick import run_tick
from crm_app.drip.outbound.endpoints import create_endpoint
from crm_app.drip.outbound.events import EVENT_TYPES
from crm_app.drip.tracking.events import ingest_events
from crm_app.extensions import db
from crm_app.models import (
    Activity,
    AuditEntry,
    Contact,
    EmailEvent,
    EmailReply,
    Enrollment,
    HashedSuppression,
    Message,
    Suppression,
    WebhookDelivery,
    utcnow,
)
from tests.delivery_helpers import open_all_week, send_due_email

ADDRESS = "jamie.lee@acme.example"


def sendgrid_event(kind: str, message: Message, n: int, **extra) -> dict:
    return {
        "event": kind,
        "email": ADDRESS,
        "timestamp": int(utcnow().timestamp()),
        "sg_event_id": f"{kind}-{message.id}-{n}",
        "message_id": str(message.id),
        "ip": "203.0.113.9",
        "useragent": "Mozilla/5.0",
        **extra,
    }


@pytest.fixture
def jamie(session, make_contact, backend, settings, fake_sendgrid):
    """A lead whose first email went out, was opened and clicked, and who replied."""
    contact = make_contact(
        "lead",
        email=ADDRESS,
        first_name="Jamie",
        last_name="Lee",
        phone="+1 555 0199",
        company="Globex Logistics",
        notes="Met at the Ops Summit",
        custom_fields={"interest": "process automation"},
    )
    message = send_due_email(session, contact.enrollments[0], backend, settings)
    events = [
        sendgrid_event("open", message, 1),
        sendgrid_event("click", message, 2, url=f"https://acme.example/?who={ADDRESS}"),
    ]
    ingest_events(session, events)
    session.add(
        EmailReply(
            message_id=message.id,
            contact_id=contact.id,
            campaign_id=message.campaign_id,
            from_email=ADDRESS,
            subject="Re: hello",
            first_lines="Call me on +1 555 0199",
        )
    )
    session.add(
        Activity(contact_id=contact.id, kind="replied", detail="Replied: “Call me on +1 555”")
    )
    # A subject with merge fields, as the timeline shows a sent email.
    session.add(
        Activity(
            contact_id=contact.id,
            kind="email_sent",
            detail="Sent Email 2 of Lead: Jamie, process automation at Globex Logistics? "
            "Call +1 555 0199",
        )
    )
    session.commit()
    return contact


def reload(contact: Contact) -> Contact:
    db.session.expire_all()
    return db.session.get(Contact, contact.id)


def erase(admin, contact: Contact, typed: str | None = None):
    return admin.post(
        f"/contacts/{contact.id}/erase",
        {"confirm_email": contact.email if typed is None else typed},
    )


# ---------------------------------------------------------------- export


def test_export_downloads_fields_enrolments_messages_events_replies_and_timeline(staff, jamie):
    response = staff.post(f"/contacts/{jamie.id}/export")

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert f'filename="contact-{jamie.id}.json"' in response.headers["Content-Disposition"]
    data = json.loads(response.get_data(as_text=True))
    assert data["contact"]["email"] == ADDRESS and data["contact"]["phone"] == "+1 555 0199"
    assert data["contact"]["notes"] == "Met at the Ops Summit"
    assert data["custom_fields"] == {"interest": "process automation"}
    assert [e["campaign"] for e in data["enrollments"]] == ["Lead"]
    (message,) = data["messages"]
    assert message["to_email"] == ADDRESS and message["status"] == "sent" and message["html"]
    assert {e["event"] for e in data["events"]} == {"open", "click"}
    assert data["events"][0]["payload"]["ip"] == "203.0.113.9"
    assert data["replies"][0]["first_lines"] == "Call me on +1 555 0199"
    assert {"created", "enrolled", "email_sent", "email_open"} <= {
        row["kind"] for row in data["timeline"]
    }
    entry = db.session.scalars(sa.select(AuditEntry).where(AuditEntry.target_type == "gdpr")).one()
    assert entry.action == "gdpr.exported" and entry.actor == "staff@example.com"


def test_export_is_a_post_with_the_csrf_token(staff, jamie):
    assert staff.get(f"/contacts/{jamie.id}/export").status_code == 405
    assert staff.post(f"/contacts/{jamie.id}/export", csrf=False).status_code == 400


# ---------------------------------------------------------------- erase


def test_erase_removes_personal_data_and_keeps_the_figures_anonymised(admin, jamie):
    before = {
        "activities": db.session.scalar(sa.select(sa.func.count()).select_from(Activity)),
        "events": db.session.scalar(sa.select(sa.func.count()).select_from(EmailEvent)),
    }
    page = admin.get(f"/contacts/{jamie.id}/erase").get_data(as_text=True)
    assert "cannot be undone" in page and f"Type {ADDRESS} to confirm" in page

    response = erase(admin, jamie)

    assert response.status_code == 302
    contact = reload(jamie)
    assert contact.erased_at is not None and contact.full_name == f"Erased contact #{jamie.id}"
    assert contact.email == f"erased-{jamie.id}@erased.invalid"
    assert (contact.phone, contact.company, contact.notes) == ("", "", "")
    assert contact.custom_fields == {}
    assert contact.contact_type == "lead"  # what the figures count by
    enrollment = db.session.scalars(sa.select(Enrollment)).one()
    assert enrollment.status == "stopped" and "GDPR" in enrollment.end_reason
    message = db.session.scalars(sa.select(Message)).one()
    assert message.status == "sent" and message.sent_at and message.opened_at  # still counted
    assert (message.to_email, message.subject, message.html, message.text) == ("", "", "", "")
    assert message.headers == {}
    for event in db.session.scalars(sa.select(EmailEvent)):
        assert (event.email, event.payload, event.detail) == ("", {}, "")
    reply = db.session.scalars(sa.select(EmailReply)).one()
    assert (reply.from_email, reply.subject, reply.first_lines) == ("", "", "")
    # Nothing left that names the person, anywhere a page shows.
    person = re.compile(r"jamie|lee|globex|555|process automation", re.IGNORECASE)
    for detail in db.session.scalars(sa.select(Activity.detail)):
        assert not person.search(detail), detail
    for summary in db.session.scalars(sa.select(AuditEntry.summary)):
        assert not person.search(summary), summary
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Suppression)) == 0
    key = erasure_key(settings_of(admin.client.application))
    assert db.session.scalars(sa.select(HashedSuppression.email_hash)).one() == address_hash(
        ADDRESS, key
    )
    # The rows stay: the timeline and the figures keep their counts (plus the erasure).
    assert db.session.scalar(sa.select(sa.func.count()).select_from(EmailEvent)) == before["events"]
    activities = db.session.scalar(sa.select(sa.func.count()).select_from(Activity))
    assert activities == before["activities"] + 2  # stopped, erased
    entry = db.session.scalars(
        sa.select(AuditEntry).where(AuditEntry.action == "gdpr.erased")
    ).one()
    assert entry.target_type == "gdpr" and entry.target_id == jamie.id
    page = admin.get(f"/contacts/{jamie.id}").get_data(as_text=True)
    assert "personal data was erased" in page and "Erase…" not in page


def test_erase_needs_an_admin_and_the_address_typed(admin, staff_user, web, jamie):
    wrong = erase(admin, jamie, typed="someone@else.example")
    assert wrong.status_code == 422 and "Type the contact" in wrong.get_data(as_text=True)
    assert reload(jamie).erased_at is None
    admin.logout()
    web.login("staff@example.com", "staff-password")
    assert web.get(f"/contacts/{jamie.id}/erase").status_code == 403
    assert erase(web, jamie).status_code == 403
    assert reload(jamie).erased_at is None


def test_a_wrong_confirmation_keeps_what_was_typed(admin, jamie):
    wrong = erase(admin, jamie, typed="jamie.le@acme.example")
    assert wrong.status_code == 422
    assert 'value="jamie.le@acme.example"' in wrong.get_data(as_text=True)


def _enrol_buttons(page: str) -> list[str]:
    panel = page.split('<section id="campaign-panel"', 1)[1].split("</section>", 1)[0]
    return re.findall(r"<button type=\"submit\"[^>]*>Enrol[^<]*</button>", panel)


def test_erased_contacts_and_erased_addresses_read_as_not_mailed_everywhere(
    admin, session, make_contact, jamie
):
    erase_contact(session, jamie, actor="user:admin@example.com")
    session.commit()
    again = make_contact("lead", email=ADDRESS, first_name="Jamie", last_name="Again")
    fine = make_contact("lead", email="fine@example.com", first_name="Fine", last_name="Person")

    for contact in (jamie, again):
        page = admin.get(f"/contacts/{contact.id}").get_data(as_text=True)
        assert "can be mailed" not in page
        assert "it is never mailed and cannot be enrolled" in page
        buttons = _enrol_buttons(page)
        assert len(buttons) == 2 and all(" disabled>" in b for b in buttons), buttons
    assert "<th>Email status</th><td>erased</td>" in admin.get(f"/contacts/{jamie.id}").get_data(
        as_text=True
    )
    page = admin.get(f"/contacts/{fine.id}").get_data(as_text=True)
    assert "<th>Email status</th><td>can be mailed</td>" in page
    assert not any(" disabled>" in b for b in _enrol_buttons(page))

    rows = contact_list_page(session, ListRequest(), per_page=25).rows
    marks = {row.id: row.not_mailed for row in rows}
    assert marks[jamie.id] == "erased"
    assert marks[again.id] == "unsubscribed"  # the status its erased address gave it
    assert marks[fine.id] is None


def test_an_erased_contact_cannot_be_erased_again_or_edited(session, jamie):
    erase_contact(session, jamie, actor="user:admin@example.com")
    session.commit()
    with pytest.raises(ErasureError):
        erase_contact(session, reload(jamie), actor="user:admin@example.com")
    session.rollback()
    with pytest.raises(ContactValidationError):
        save_contact(
            session,
            {"email": ADDRESS, "contact_type": "lead", "timezone": "UTC"},
            contact=reload(jamie),
            actor="test",
        )


# ---------------------------------------------------------------- never mailed again


def test_an_erased_address_is_refused_at_the_next_enrolment(
    session, make_contact, campaigns, jamie
):
    erase_contact(session, jamie, actor="user:admin@example.com")
    session.commit()

    again = make_contact("lead", email=ADDRESS.upper())  # creating it still works

    assert again.enrollments == []
    refusal = session.scalars(
        sa.select(Activity.detail).where(
            Activity.contact_id == again.id, Activity.kind == "not_enrolled"
        )
    ).one()
    assert "erased at the person's request" in refusal
    with pytest.raises(EnrollmentError, match="erased"):
        enroll(session, again, campaigns["networking"], actor="test")


def test_an_erased_address_is_skipped_at_send(
    session, make_contact, jamie, backend, settings, fake_sendgrid
):
    erase_contact(session, jamie, actor="user:admin@example.com")
    session.commit()
    other = make_contact("lead", email="someone.new@example.com")
    # The address changes to the erased one after the enrolment (an import, an edit).
    session.execute(
        sa.update(Contact.__table__).where(Contact.__table__.c.id == other.id).values(email=ADDRESS)
    )
    session.commit()
    sent_before = len(fake_sendgrid.requests)

    message = send_due_email(session, reload(other).enrollments[0], backend, settings)

    assert message.status == "skipped" and "erased" in message.error
    assert len(fake_sendgrid.requests) == sent_before
    enrollment = db.session.get(Enrollment, message.enrollment_id)
    assert enrollment.status == "stopped" and "erased" in enrollment.end_reason


def test_changing_an_address_to_an_erased_one_stops_its_campaigns(session, make_contact, jamie):
    erase_contact(session, jamie, actor="user:admin@example.com")
    session.commit()
    other = make_contact("lead", email="someone.new@example.com")
    enrollment = other.enrollments[0]
    open_all_week(enrollment.campaign)
    enrollment.next_send_at = utcnow()
    session.commit()

    values = contact_form_values(other, owner_id=None) | {"email": ADDRESS.upper()}
    save_contact(session, values, contact=other, actor="api:crm")
    session.commit()

    assert other.email_status == "unsubscribed"
    assert enrollment.status == "stopped" and "erased" in enrollment.end_reason
    suppressed = session.scalars(
        sa.select(Activity.detail).where(
            Activity.contact_id == other.id, Activity.kind == "suppressed"
        )
    ).one()
    assert "erased at the person's request" in suppressed
    enqueued: list[int] = []
    run_tick(session, enqueued.extend)
    assert enqueued == []
    assert session.scalar(sa.select(Message.id).where(Message.contact_id == other.id)) is None


def test_erasing_skips_the_contacts_queued_email(
    session, make_contact, backend, settings, fake_sendgrid
):
    contact = make_contact("lead", email=ADDRESS)
    enrollment = contact.enrollments[0]
    open_all_week(enrollment.campaign)
    enrollment.next_send_at = utcnow()
    session.commit()
    run_tick(session, lambda ids: None)
    queued = session.scalars(sa.select(Message)).one()

    erase_contact(session, contact, actor="user:admin@example.com")
    session.commit()
    report = deliver_messages(session, [queued.id], backend, settings)

    assert report.sent == [] and fake_sendgrid.requests == []
    session.refresh(queued)
    assert queued.status == "skipped" and "GDPR" in queued.error


def test_sendgrid_events_after_the_erasure_keep_nothing_personal(session, jamie):
    message = session.scalars(sa.select(Message)).one()
    erase_contact(session, jamie, actor="user:admin@example.com")
    session.commit()

    ingest_events(
        session,
        [
            sendgrid_event("open", message, 7),
            sendgrid_event("bounce", message, 8, type="bounce", reason="550 no such user"),
            # Tied to no message: recognised by the address's hash.
            {
                "event": "group_unsubscribe",
                "email": ADDRESS,
                "timestamp": int(utcnow().timestamp()),
                "sg_event_id": "group-9",
                "asm_group_id": 4,
            },
        ],
    )
    session.commit()

    later = sa.select(EmailEvent).where(
        EmailEvent.sg_event_id.in_([f"open-{message.id}-7", "group-9"])
    )
    stored = list(session.scalars(later))
    assert len(stored) == 2
    for event in stored:
        assert (event.email, event.payload, event.detail) == ("", {}, "")
    # The bounce suppresses nothing new: the address is not written down again.
    assert session.scalar(sa.select(sa.func.count()).select_from(Suppression)) == 0
    assert not session.scalar(sa.select(sa.func.count()).where(EmailEvent.email == ADDRESS))


def test_suppressing_an_erased_address_does_not_store_it_again(session, jamie):
    erase_contact(session, jamie, actor="user:admin@example.com")
    session.commit()

    with pytest.raises(SuppressionError, match="erased"):
        add_manual_suppression(session, ADDRESS, note="", actor="user:admin@example.com")
    result = suppress(session, ADDRESS, reason="unsubscribe", source="link", actor="link")

    assert result.entry is None and not result.changed
    assert session.scalar(sa.select(sa.func.count()).select_from(Suppression)) == 0


def test_health_turns_red_when_the_erasure_key_changed(app, web, session, jamie, monkeypatch):
    monkeypatch.setitem(app.config, "HEALTH_TOKEN", "monitor")  # the checks, not just the status
    monitor = {"headers": {"Authorization": "Bearer monitor"}}
    erase_contact(session, jamie, actor="user:admin@example.com")
    session.commit()
    assert web.get("/health", **monitor).get_json()["checks"]["erasure_key"]["ok"] is True

    monkeypatch.setitem(app.config, "ERASURE_HASH_KEY", "a-new-key")

    check = web.get("/health", **monitor).get_json()["checks"]["erasure_key"]
    assert check["ok"] is False and "1 erased address" in check["detail"]


def test_erasure_leaves_no_personal_data_in_outbound_webhook_events(session, make_contact):
    # The events kept for an endpoint's delivery log would go out again on a redelivery.
    create_endpoint(
        session, "http://127.0.0.1:9/hook", EVENT_TYPES, actor="test", allow_private=True
    )
    session.commit()
    jamie = make_contact(
        "lead", email=ADDRESS, first_name="Jamie", last_name="Lee",
        phone="+1 555 0199", company="Globex Logistics",
    )  # fmt: skip
    make_contact("lead", email="sam@example.com", first_name="Sam")
    session.commit()

    erase_contact(session, jamie, actor="admin@example.com")
    session.commit()

    events = [json.loads(body) for body in session.scalars(sa.select(WebhookDelivery.body))]
    about_jamie = [e for e in events if e["data"]["contact"]["id"] == jamie.id]
    kinds = {e["type"] for e in about_jamie}
    assert {"contact.created", "contact.enrolled", "enrollment.stopped"} <= kinds
    person = re.compile(r"jamie|lee|globex|555", re.IGNORECASE)
    for event in about_jamie:
        assert not person.search(json.dumps(event)), event
    # Another contact's events are left as they were.
    others = [e for e in events if e["data"]["contact"]["id"] != jamie.id]
    assert others and all(e["data"]["contact"]["email"] == "sam@example.com" for e in others)
