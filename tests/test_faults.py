"""SendGrid failing: 429/5xx/timeouts retry with backoff, 4xx fail at once, bounded attempts."""

from __future__ import annotations

import socket
from datetime import timedelta

import sqlalchemy as sa

from crm_app.drip.delivery.backends import SendGridBackend
from crm_app.drip.delivery.pipeline import deliver_messages
from crm_app.drip.delivery.provider_health import backend_auth_failure
from crm_app.drip.delivery.tick import run_tick
from crm_app.models import Activity, Message, utcnow
from tests.delivery_helpers import Retries, queued_now


def test_429_is_retried_after_retry_after_then_delivered_once(
    session, make_contact, backend, settings, fake_sendgrid
):
    message = queued_now(session, make_contact("lead"))
    fake_sendgrid.retry_after = "7"
    fake_sendgrid.script("429")
    retries = Retries()
    before = utcnow()

    first = deliver_messages(session, [message.id], backend, settings, schedule_retry=retries)

    session.refresh(message)
    assert first.retrying == [message.id]
    assert message.status == "queued" and message.attempts == 1 and "429" in message.error
    assert message.next_attempt_at >= before + timedelta(seconds=7)  # Retry-After honoured
    [(scheduled_id, when)] = retries.scheduled  # at the end of that second, not before
    assert scheduled_id == message.id
    assert message.next_attempt_at <= when < message.next_attempt_at + timedelta(seconds=1)

    second = deliver_messages(session, [message.id], backend, settings, schedule_retry=retries)

    assert second.sent == [message.id]
    assert fake_sendgrid.answers == ["429", "202"]
    assert fake_sendgrid.deliveries == {str(message.id): 1}


def test_500_then_success_is_delivered_once(
    session, make_contact, backend, settings, fake_sendgrid
):
    message = queued_now(session, make_contact("lead"))
    fake_sendgrid.script("500", "503")

    for _ in range(3):
        deliver_messages(session, [message.id], backend, settings)

    session.refresh(message)
    assert message.status == "sent" and message.attempts == 3
    assert fake_sendgrid.deliveries == {str(message.id): 1}


def test_refused_connection_is_transient(session, make_contact, settings, app):
    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    refused = queued_now(session, make_contact("client"))
    refused_backend = SendGridBackend("SG.k", f"http://127.0.0.1:{closed_port}", "a@b.co")

    report = deliver_messages(session, [refused.id], refused_backend, settings)

    session.refresh(refused)
    assert report.retrying == [refused.id]
    assert refused.status == "queued" and "Cannot reach SendGrid" in refused.error


def test_400_fails_at_once_with_sendgrids_text_and_is_never_retried(
    session, make_contact, backend, settings, fake_sendgrid
):
    contact = make_contact("lead")
    message = queued_now(session, contact)
    fake_sendgrid.script("400")

    report = deliver_messages(session, [message.id], backend, settings)
    again = deliver_messages(session, [message.id], backend, settings)
    later = run_tick(session, lambda ids: None, now=utcnow() + timedelta(hours=2))

    session.refresh(message)
    assert report.failed == [message.id] and again.not_claimed == [message.id]
    assert later.enqueued == []
    assert message.status == "failed" and message.attempts == 1
    assert "Does not contain a valid address" in message.error
    assert fake_sendgrid.answers == ["400"] and fake_sendgrid.deliveries == {}
    timeline = session.scalar(
        sa.select(Activity.detail).where(
            Activity.contact_id == contact.id, Activity.kind == "email_failed"
        )
    )
    assert "Does not contain a valid address" in timeline


def test_401_fails_flags_the_backend_and_leaves_the_rest_of_the_batchqueued_now(
    session, make_contact, backend, settings, fake_sendgrid
):
    first = queued_now(session, make_contact("lead"))
    second = queued_now(session, make_contact("client"))
    fake_sendgrid.script("401")

    report = deliver_messages(session, [first.id, second.id], backend, settings)

    session.refresh(first)
    session.refresh(second)
    assert report.auth_failure and first.status == "failed" and second.status == "queued"
    assert "authorization grant is invalid" in backend_auth_failure(session)

    deliver_messages(session, [second.id], backend, settings)  # the key was fixed
    assert backend_auth_failure(session) is None
    assert fake_sendgrid.deliveries == {str(second.id): 1}


def test_exhausted_retries_fail_the_message(
    session, make_contact, backend, settings, fake_sendgrid
):
    message = queued_now(session, make_contact("lead"))
    fake_sendgrid.script("500", "500", "500", "500")

    for _ in range(settings.delivery_max_attempts + 1):
        deliver_messages(session, [message.id], backend, settings)

    session.refresh(message)
    assert message.status == "failed" and message.attempts == settings.delivery_max_attempts
    assert "gave up after 3 attempts" in message.error
    assert fake_sendgrid.answers == ["500"] * settings.delivery_max_attempts


def test_retry_lost_by_redis_comes_back_through_the_lease(
    session, make_contact, backend, settings, fake_sendgrid
):
    message = queued_now(session, make_contact("lead"))
    fake_sendgrid.script("503")
    deliver_messages(session, [message.id], backend, settings)  # the retry job is never kept
    session.refresh(message)

    enqueued: list[int] = []
    run_tick(session, enqueued.extend, now=message.next_attempt_at + timedelta(seconds=601))

    assert enqueued == [message.id]
    deliver_messages(session, enqueued, backend, settings)
    assert fake_sendgrid.deliveries == {str(message.id): 1}


def test_a_burst_of_429s_is_retried_by_a_job_per_second_not_one_per_email(
    session, make_contact, backend, settings, fake_sendgrid
):
    """Each email keeps its own next attempt; the scheduler gets one job per second of
    retry time with every email due in it (a thousand 429s were a thousand jobs)."""
    messages = [queued_now(session, make_contact("lead")) for _ in range(12)]
    fake_sendgrid.retry_after = "7"
    fake_sendgrid.script(*["429"] * 12)
    backend.answered_ok = True  # a key proven earlier: the twelve go out at once
    retries = Retries()
    calls = []
    one_slice = settings.replace(delivery_record_ms=60_000)  # recorded once all answered
    report = deliver_messages(
        session, [m.id for m in messages], backend, one_slice,
        schedule_retry=lambda ids, when: (calls.append(ids), retries(ids, when)),
    )  # fmt: skip
    assert len(report.retrying) == 12
    assert sorted(i for i, _ in retries.scheduled) == sorted(report.retrying)  # each once
    assert len(calls) <= 3  # Retry-After 7 plus up to 20 % jitter: 7 to 8.4 s, 3 seconds
    assert len({when for _, when in retries.scheduled}) == len(calls)  # a job per second
    for message_id, when in retries.scheduled:
        next_attempt = session.get(Message, message_id).next_attempt_at
        assert next_attempt <= when < next_attempt + timedelta(seconds=1)


def test_retries_go_to_rqs_scheduler_one_job_per_batch_of_messages(app):
    """What the worker hands RQ: the ids due at one time, DELIVERY_BATCH_SIZE a job."""
    from rq.job import Job
    from rq.registry import ScheduledJobRegistry

    from crm_app.queue import get_queue, schedule_deliveries

    queue = get_queue()
    when = utcnow() + timedelta(minutes=5)
    schedule_deliveries(queue, list(range(1, 2501)), when, batch_size=1000)
    job_ids = ScheduledJobRegistry(queue=queue).get_job_ids()
    jobs = Job.fetch_many(job_ids, connection=queue.connection)
    assert sorted(len(job.args[0]) for job in jobs) == [500, 1000, 1000]
    assert sorted(i for job in jobs for i in job.args[0]) == list(range(1, 2501))
