"""Delivery at speed: many requests in flight on one event loop, kept connections to
SendGrid, compiled templates reused. None of it may weaken "never twice, never lost"."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from crm_app.drip.audience.progress import advance_many
from crm_app.drip.campaigns.schedule import send_time_for_step
from crm_app.drip.delivery.compose import email_label
from crm_app.drip.delivery.pipeline import deliver_concurrently, deliver_messages
from crm_app.drip.delivery.tick import run_tick
from crm_app.extensions import db
from crm_app.models import Activity, Enrollment, Message, utcnow
from tests.delivery_helpers import bulk_due, message_for, open_all_week, statuses


def _queued_bulk(session, campaigns, count: int) -> list[int]:
    campaign = campaigns["client"]
    open_all_week(campaign)
    session.commit()
    bulk_due(session, campaign, count, utcnow() - timedelta(minutes=1))
    return run_tick(session, lambda ids: None, now=utcnow()).enqueued


def _sessions():
    engine = db.engine  # the threads have no app context: bind the engine here
    return lambda: Session(engine, expire_on_commit=False)


def test_many_in_flight_deliver_each_message_once_and_advance_each_enrollment(
    session, campaigns, backend, settings, fake_sendgrid
):
    ids = _queued_bulk(session, campaigns, 60)
    fake_sendgrid.delay = 0.05

    report = deliver_concurrently(
        _sessions(), ids, backend, settings, concurrency=20, claim_chunk=10
    )

    assert sorted(report.sent) == sorted(ids)
    assert fake_sendgrid.duplicates() == {} and len(fake_sendgrid.deliveries) == 60
    session.expire_all()
    assert statuses(session) == {"sent": 60}
    second = campaigns["client"].steps[1].id
    assert set(session.scalars(sa.select(Enrollment.current_step_id))) == {second}
    sent_rows = session.scalar(
        sa.select(sa.func.count(Activity.id)).where(Activity.kind == "email_sent")
    )
    assert sent_rows == 60


def test_the_same_ids_many_times_in_a_batch_are_still_sent_once(
    session, campaigns, backend, settings, fake_sendgrid
):
    ids = _queued_bulk(session, campaigns, 20)

    report = deliver_concurrently(_sessions(), ids + ids + ids, backend, settings, concurrency=6)

    assert sorted(report.sent) == sorted(ids) and len(report.not_claimed) == 40
    assert fake_sendgrid.duplicates() == {} and len(fake_sendgrid.deliveries) == 20


def test_a_key_revoked_mid_run_stops_the_batch_and_keeps_the_rest_queued(
    session, campaigns, backend, settings, fake_sendgrid
):
    ids = _queued_bulk(session, campaigns, 40)
    backend.answered_ok = True  # it worked until now: requests go out 4 at a time
    fake_sendgrid.script(*["401"] * 40)

    report = deliver_concurrently(_sessions(), ids, backend, settings, concurrency=4, claim_chunk=4)

    assert report.auth_failure and backend.answered_ok is False
    assert 1 <= len(report.failed) <= 4  # at most what was in flight
    session.expire_all()
    assert statuses(session) == {"failed": len(report.failed), "queued": 40 - len(report.failed)}
    assert fake_sendgrid.deliveries == {}


def test_a_new_key_is_tried_alone_then_a_few_kept_connections_carry_every_send(
    session, campaigns, backend, settings, fake_sendgrid
):
    ids = _queued_bulk(session, campaigns, 30)
    fake_sendgrid.delay = 0.02

    report = deliver_messages(session, ids, backend, settings, concurrency=5, claim_chunk=5)

    assert sorted(report.sent) == sorted(ids) and len(fake_sendgrid.deliveries) == 30
    assert fake_sendgrid.connections <= 5  # kept and reused, never one per request


def test_the_next_delivery_job_sends_over_the_connections_the_last_one_kept(
    session, campaigns, backend, settings, fake_sendgrid
):
    """The sending loop outlives a job: the second batch opens no connection (against
    SendGrid, each new one is a TLS handshake; a loop per job opened them every time)."""
    ids = _queued_bulk(session, campaigns, 40)
    fake_sendgrid.delay = 0.02
    first = deliver_messages(session, ids[:20], backend, settings, concurrency=5, claim_chunk=5)
    opened = fake_sendgrid.connections
    second = deliver_messages(session, ids[20:], backend, settings, concurrency=5, claim_chunk=5)

    assert len(first.sent) == len(second.sent) == 20 and len(fake_sendgrid.deliveries) == 40
    assert 1 <= opened <= 5 and fake_sendgrid.connections == opened


def test_errors_on_a_kept_connection_map_as_before_and_the_next_send_goes_out(
    session, make_contact, campaigns, backend, settings, fake_sendgrid
):
    ids = _queued_bulk(session, campaigns, 3)
    fake_sendgrid.script("503", "400")

    report = deliver_messages(session, ids, backend, settings)

    assert report.retrying == [ids[0]] and report.failed == [ids[1]] and report.sent == [ids[2]]
    assert fake_sendgrid.deliveries == {str(ids[2]): 1}


def test_an_edited_step_is_rendered_from_its_new_text(
    session, make_contact, campaigns, backend, settings, fake_sendgrid
):
    step = campaigns["lead"].steps[0]
    first, second = make_contact("lead"), make_contact("lead")
    for contact in (first, second):
        enrollment = session.scalar(
            sa.select(Enrollment).where(Enrollment.contact_id == contact.id)
        )
        open_all_week(enrollment.campaign)
        enrollment.next_send_at = utcnow() - timedelta(seconds=1)
    session.commit()
    run_tick(session, lambda ids: None, now=utcnow())
    deliver_messages(session, [message_for(session, first).id], backend, settings)

    step.body_html = "<p>Edited for {{ contact.first_name }}</p>"
    step.version += 1
    session.commit()
    deliver_messages(session, [message_for(session, second).id], backend, settings)

    before, after = (message_for(session, c) for c in (first, second))
    assert "Edited for" not in before.html
    assert f"Edited for {second.first_name}" in after.html
    assert after.template_version == step.version
    assert session.scalar(sa.select(sa.func.count(Message.id))) == 2


class _EditsAfterFirstAnswer:
    """The real backend, plus an edit made elsewhere as soon as the first answer came."""

    def __init__(self, backend, edit) -> None:
        self.backend, self.edit, self.name = backend, edit, backend.name

    async def asend(self, outgoing, session=None) -> str:
        answer = await self.backend.asend(outgoing)
        if self.edit is not None:
            self.edit, edit = None, self.edit
            edit()
        return answer

    async def aclose(self) -> None:
        await self.backend.aclose()


def test_a_step_edited_while_a_job_runs_is_read_afresh_for_its_next_chunk(
    session, make_contact, campaigns, backend, settings, fake_sendgrid
):
    # A delivery job keeps its objects across its commits (expire_on_commit=False): each
    # chunk must read the step and campaign again, not take the ones the last chunk held.
    campaign = campaigns["lead"]
    step = campaign.steps[0]
    contacts = [make_contact("lead"), make_contact("lead")]
    open_all_week(campaign)
    for contact in contacts:
        enrollment = session.scalar(
            sa.select(Enrollment).where(Enrollment.contact_id == contact.id)
        )
        enrollment.next_send_at = utcnow() - timedelta(seconds=1)
    session.commit()
    run_tick(session, lambda ids: None, now=utcnow())
    ids = [message_for(session, contact).id for contact in contacts]
    step_id, campaign_id = step.id, campaign.id

    def edit_in_the_web() -> None:
        with _sessions()() as web:
            edited = web.get(type(step), step_id)
            edited.body_html = "<p>Edited for {{ contact.first_name }}</p>"
            edited.version += 1
            web.get(type(campaign), campaign_id).name = "Leads, renamed"
            web.commit()

    held = []  # as a job's in-flight claims hold the objects their chunk loaded

    def worker_session() -> Session:
        worker = _sessions()()
        held.extend([worker.get(type(step), step_id), worker.get(type(campaign), campaign_id)])
        return worker

    editing = _EditsAfterFirstAnswer(backend, edit_in_the_web)
    report = deliver_concurrently(
        worker_session, ids, editing, settings, claim_chunk=1, concurrency=1
    )

    session.expire_all()
    first, second = (session.get(Message, message_id) for message_id in ids)
    assert report.sent == ids
    assert "Edited" not in first.html
    assert f"Edited for {contacts[1].first_name}" in second.html
    assert second.template_version == first.template_version + 1
    timeline = session.scalar(
        sa.select(Activity.detail).where(
            Activity.contact_id == contacts[1].id, Activity.kind == "email_sent"
        )
    )
    assert "Leads, renamed" in timeline


def test_a_claimed_chunk_records_the_same_timeline_and_advances_as_one_at_a_time(
    session, make_contact, campaigns, backend, settings, fake_sendgrid
):
    campaign = campaigns["client"]
    open_all_week(campaign)
    zones = ["UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo"]
    contacts = [make_contact("client", timezone=zones[n % 4]) for n in range(12)]
    last = len(campaign.steps)
    for n, contact in enumerate(contacts):
        enrollment = session.scalar(
            sa.select(Enrollment).where(Enrollment.contact_id == contact.id)
        )
        enrollment.current_step = last if n % 2 else 1  # half of them finish
        enrollment.next_send_at = utcnow() - timedelta(seconds=1)
    session.commit()
    ids = run_tick(session, lambda ids: None, now=utcnow()).enqueued
    before = session.scalar(sa.select(sa.func.max(Activity.id)))

    report = deliver_messages(session, ids, backend, settings, claim_chunk=10)

    assert sorted(report.sent) == sorted(ids)
    session.expire_all()
    for contact in contacts:
        message = message_for(session, contact)
        enrollment = session.get(Enrollment, message.enrollment_id)
        rows = session.execute(
            sa.select(
                Activity.kind,
                Activity.detail,
                Activity.actor,
                Activity.campaign_id,
                Activity.enrollment_id,
            )
            .where(Activity.contact_id == contact.id, Activity.id > before)
            .order_by(Activity.id)
        ).all()
        position = message.step_position
        expected = [
            (
                "email_sent",
                f"Sent {email_label(message, message.subject)}",
                "system:worker",
                campaign.id,
                enrollment.id,
            )
        ]
        assert enrollment.current_step == position + 1
        assert enrollment.last_sent_at == message.sent_at
        if position == last:
            expected.append(
                (
                    "completed",
                    f"Completed {campaign.name}",
                    "system:worker",
                    campaign.id,
                    enrollment.id,
                )
            )
            assert enrollment.status == "completed" and enrollment.next_send_at is None
            assert enrollment.end_reason == "completed all steps"
            assert enrollment.ended_at == message.sent_at
        else:
            assert enrollment.status == "active"
            assert enrollment.next_send_at == send_time_for_step(
                campaign, contact, campaign.steps[position].delay_days, message.sent_at
            )
        assert [tuple(row) for row in rows] == expected


def test_a_revoked_key_puts_the_claimed_but_unsent_rest_of_the_chunk_back_as_it_was(
    session, campaigns, backend, settings, fake_sendgrid
):
    ids = _queued_bulk(session, campaigns, 5)
    fake_sendgrid.script("401")

    report = deliver_messages(session, ids, backend, settings, claim_chunk=10)

    assert report.failed == [ids[0]] and report.auth_failure
    session.expire_all()
    rest = session.execute(
        sa.select(Message.status, Message.attempts).where(Message.id.in_(ids[1:]))
    ).all()
    assert [tuple(row) for row in rest] == [("queued", 0)] * 4  # never sent: as before the claim
    assert fake_sendgrid.deliveries == {}

    again = deliver_messages(session, ids[1:], backend, settings, claim_chunk=10)

    assert sorted(again.sent) == sorted(ids[1:])
    assert fake_sendgrid.duplicates() == {} and len(fake_sendgrid.deliveries) == 4


def test_advance_many_leaves_an_enrollment_that_changed_since_it_was_loaded(
    session, make_contact, campaigns
):
    contact = make_contact("lead")
    enrollment = session.scalar(sa.select(Enrollment).where(Enrollment.contact_id == contact.id))
    enrollment.current_step = len(campaigns["lead"].steps)  # its next advance completes it
    session.commit()
    session.execute(  # stopped meanwhile, behind the loaded object's back
        sa.update(Enrollment.__table__)
        .where(Enrollment.__table__.c.id == enrollment.id)
        .values(status="stopped", end_reason="by hand")
    )

    moved = advance_many(session, [(enrollment, utcnow())])
    session.commit()

    assert moved == set()
    session.refresh(enrollment)
    assert enrollment.status == "stopped" and enrollment.end_reason == "by hand"
    kinds = session.scalars(sa.select(Activity.kind).where(Activity.contact_id == contact.id))
    assert "completed" not in list(kinds)
