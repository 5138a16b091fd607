"""Which changes become which outbound events: every path that records a timeline row
(the pages, the API, the delivery worker, the SendGrid webhook) emits its event."""

from __future__ import annotations

import json
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from crm_app.drip.audience.contacts import contact_form_values, save_contact
from crm_app.drip.audience.unsubscribe import unsubscribe
from crm_app.drip.delivery.pipeline import deliver_concurrently
from crm_app.drip.delivery.tick import run_tick
from crm_app.extensions import db
from crm_app.models import Enrollment, utcnow
from crm_app.queue import get_queue
from tests.delivery_helpers import message_for, open_all_week
from tests.outbound_helpers import deliveries, work_queue


def _due_now(session, contact) -> Enrollment:
    enrollment = contact.enrollments[0]
    open_all_week(enrollment.campaign)
    enrollment.next_send_at = utcnow() - timedelta(seconds=1)
    session.commit()
    return enrollment


def test_the_last_email_sent_by_the_worker_threads_emits_sent_and_completed_and_enqueues_them(
    app, session, campaigns, make_endpoint, make_contact, backend, settings, receiver
):
    make_endpoint(["email.sent", "enrollment.completed"])
    contact = make_contact("client", email="last@example.com")
    enrollment = _due_now(session, contact)
    enrollment.current_step = len(enrollment.campaign.steps)  # its last email is due
    session.commit()
    run_tick(session, lambda ids: None, now=utcnow())
    message = message_for(session, contact)
    queued_before = get_queue().count

    # A delivery job's own session, no app context (its event loop is another thread).
    report = deliver_concurrently(
        lambda: Session(db.engine, expire_on_commit=False), [message.id], backend, settings,
        concurrency=2,
    )  # fmt: skip

    assert report.sent == [message.id]
    sent, completed = deliveries(session)
    assert (sent.event_type, completed.event_type) == ("email.sent", "enrollment.completed")
    body = json.loads(sent.body)
    assert body["data"]["contact"]["email"] == "last@example.com"  # read for the event
    assert body["data"]["enrollment_id"] == enrollment.id
    assert get_queue().count == queued_before + 1  # enqueued after the thread's commit
    work_queue()
    assert len(receiver.of_type("email.sent")) == 1
    assert len(receiver.of_type("enrollment.completed")) == 1


def test_an_edit_and_a_type_change_are_contact_updated(
    session, campaigns, make_endpoint, make_contact
):
    contact = make_contact("lead", email="edit@example.com")
    make_endpoint(["contact.updated", "enrollment.stopped", "contact.enrolled"])

    def edit(**changes) -> None:  # as the edit page saves it
        values = contact_form_values(contact, owner_id=None) | changes
        save_contact(session, values, contact=contact, actor="test")
        session.commit()

    edit(company="Globex")
    edit(contact_type="client")

    events = [(d.event_type, json.loads(d.body)["data"]["detail"]) for d in deliveries(session)]
    assert events == [
        ("contact.updated", "Contact details edited: company"),
        ("contact.updated", "Contact details edited: type"),
        ("contact.updated", "Type changed from lead to client"),
        ("enrollment.stopped", "Stopped Lead: type changed to client"),
        ("contact.enrolled", "Enrolled in Client (after a type change)"),
    ]


def test_an_unsubscribe_is_contact_unsubscribed_and_stops(
    session, campaigns, make_endpoint, make_contact
):
    contact = make_contact("lead", email="bye@example.com")
    make_endpoint(["contact.unsubscribed", "enrollment.stopped"])

    unsubscribe(session, contact, source="unsubscribe link")
    session.commit()
    unsubscribe(session, contact, source="unsubscribe link")  # a second click: nothing
    session.commit()

    assert [d.event_type for d in deliveries(session)] == [
        "enrollment.stopped",
        "contact.unsubscribed",
    ]


def test_events_of_a_rolled_back_transaction_are_not_enqueued(
    app, session, campaigns, make_endpoint, make_contact
):
    make_endpoint(["contact.created"])
    before = get_queue().count
    from crm_app.drip.audience.contacts import ContactInput, create_contact

    create_contact(session, ContactInput(email="x@example.com", contact_type="lead"), actor="t")
    session.rollback()
    session.commit()

    assert get_queue().count == before
    assert session.scalar(sa.select(sa.func.count()).select_from(Enrollment)) == 0


def test_deliveries_are_enqueued_after_the_outer_commit_not_at_a_savepoint(
    app, session, campaigns, make_endpoint
):
    from crm_app.drip.audience.contacts import ContactInput, create_contact

    make_endpoint(["contact.created", "contact.enrolled"])
    before = get_queue().count
    # create_contact releases savepoints (the duplicate-email and enrolment checks).
    create_contact(session, ContactInput(email="y@example.com", contact_type="lead"), actor="t")
    assert get_queue().count == before  # a job now could run before the rows exist

    session.commit()

    (job,) = get_queue().get_jobs()[before:]
    assert sorted(job.args[0]) == [d.id for d in deliveries(session)]
