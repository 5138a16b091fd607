"""The tick: due selection (windows, time zones, weekends), idempotence, paused campaigns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from crm_app.drip.delivery.heartbeat import last_tick_at
from crm_app.drip.delivery.tick import run_tick
from crm_app.models import Activity, Enrollment, Message
from tests.delivery_helpers import WEDNESDAY_10, bulk_due


class Recorder:
    """Stands in for Redis: what the tick enqueued, call by call."""

    def __init__(self):
        self.calls: list[list[int]] = []

    def __call__(self, ids: list[int]) -> None:
        self.calls.append(list(ids))

    @property
    def ids(self) -> list[int]:
        return [i for call in self.calls for i in call]


def _enrollment(session, contact) -> Enrollment:
    return session.scalar(sa.select(Enrollment).where(Enrollment.contact_id == contact.id))


def _due(session, contact, when: datetime) -> Enrollment:
    enrollment = _enrollment(session, contact)
    enrollment.next_send_at = when
    session.commit()
    return enrollment


def test_due_enrollment_in_window_gets_one_message_and_leaves_the_due_index(session, make_contact):
    contact = make_contact("lead", timezone="UTC")
    enrollment = _due(session, contact, WEDNESDAY_10 - timedelta(minutes=5))
    enqueue = Recorder()

    result = run_tick(session, enqueue, now=WEDNESDAY_10)

    message = session.scalar(sa.select(Message))
    assert result.created == 1 and enqueue.ids == [message.id]
    assert (message.status, message.step_position, message.contact_id) == ("queued", 1, contact.id)
    assert message.step_id == enrollment.campaign.steps[0].id
    session.refresh(enrollment)
    assert enrollment.next_send_at is None  # the message row owns the step now


def test_window_is_judged_in_the_contacts_time_zone(session, make_contact):
    # 10:00 UTC on a Wednesday is 05:00 in New York (closed) and 11:00 in Paris (open).
    new_york = make_contact("lead", timezone="America/New_York")
    paris = make_contact("lead", timezone="Europe/Paris")
    ny_enrollment = _due(session, new_york, WEDNESDAY_10 - timedelta(hours=1))
    _due(session, paris, WEDNESDAY_10 - timedelta(hours=1))
    enqueue = Recorder()

    result = run_tick(session, enqueue, now=WEDNESDAY_10)

    assert result.created == 1 and result.deferred == 1
    assert session.scalar(sa.select(Message.contact_id)) == paris.id
    session.refresh(ny_enrollment)
    # Moved to the window's opening: 09:00 in New York = 14:00 UTC that day.
    assert ny_enrollment.next_send_at == datetime(2026, 11, 25, 14, 0, tzinfo=UTC)


def test_weekend_defers_to_monday_morning(session, make_contact):
    contact = make_contact("lead", timezone="UTC")
    saturday_noon = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    enrollment = _due(session, contact, saturday_noon - timedelta(minutes=1))

    result = run_tick(session, Recorder(), now=saturday_noon)

    assert result.created == 0 and result.deferred == 1
    session.refresh(enrollment)
    assert enrollment.next_send_at == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    # Monday 09:00 it goes.
    monday = run_tick(session, Recorder(), now=datetime(2026, 11, 30, 9, 0, 30, tzinfo=UTC))
    assert monday.created == 1


def test_nothing_due_enqueues_nothing_but_records_the_heartbeat(session, make_contact):
    contact = make_contact("lead")
    _due(session, contact, WEDNESDAY_10 + timedelta(minutes=1))  # not yet
    enqueue = Recorder()

    result = run_tick(session, enqueue, now=WEDNESDAY_10)

    assert result.due == 0 and enqueue.calls == []
    assert session.scalar(sa.select(sa.func.count(Message.id))) == 0
    assert last_tick_at(session) == WEDNESDAY_10


def test_paused_campaign_has_nothing_due(session, make_contact, campaigns):
    contact = make_contact("lead")
    _due(session, contact, WEDNESDAY_10 - timedelta(hours=1))
    campaigns["lead"].status = "paused"
    session.commit()
    enqueue = Recorder()

    result = run_tick(session, enqueue, now=WEDNESDAY_10)

    assert result.due == 0 and enqueue.calls == []
    campaigns["lead"].status = "active"
    session.commit()
    assert run_tick(session, enqueue, now=WEDNESDAY_10).created == 1


def test_a_second_tick_creates_and_enqueues_nothing_again(session, campaigns):
    bulk_due(session, campaigns["client"], 30, WEDNESDAY_10 - timedelta(minutes=1))
    first, second = Recorder(), Recorder()

    assert run_tick(session, first, now=WEDNESDAY_10, chunk_size=7).created == 30
    result = run_tick(session, second, now=WEDNESDAY_10 + timedelta(minutes=1), chunk_size=7)

    assert result.created == 0 and second.calls == []
    assert sorted(first.ids) == sorted(session.scalars(sa.select(Message.id)))


def test_stale_conflict_does_not_duplicate_or_stall(session, make_contact):
    """A tick that read an enrolment another tick already served (SQLite's overlap):
    the unique row wins, nothing is enqueued twice, and the enrolment waits for it."""
    contact = make_contact("lead")
    enrollment = _due(session, contact, WEDNESDAY_10 - timedelta(minutes=1))
    run_tick(session, Recorder(), now=WEDNESDAY_10)
    # Pretend a stale reader put the enrolment back as due on the same step.
    enrollment = session.get(Enrollment, enrollment.id)
    enrollment.next_send_at = WEDNESDAY_10 - timedelta(minutes=1)
    session.commit()
    enqueue = Recorder()

    result = run_tick(session, enqueue, now=WEDNESDAY_10 + timedelta(seconds=5))

    assert result.created == 0 and enqueue.calls == []
    assert session.scalar(sa.select(sa.func.count(Message.id))) == 1
    session.refresh(enrollment)
    assert enrollment.next_send_at is None


def test_queued_row_past_its_lease_is_enqueued_again_once(session, make_contact):
    contact = make_contact("lead")
    _due(session, contact, WEDNESDAY_10 - timedelta(minutes=1))
    first = Recorder()
    run_tick(session, first, now=WEDNESDAY_10, lease_seconds=600)

    within = Recorder()
    run_tick(session, within, now=WEDNESDAY_10 + timedelta(minutes=5), lease_seconds=600)
    later = Recorder()
    result = run_tick(session, later, now=WEDNESDAY_10 + timedelta(minutes=11), lease_seconds=600)
    again = Recorder()
    run_tick(session, again, now=WEDNESDAY_10 + timedelta(minutes=12), lease_seconds=600)

    assert within.ids == [] and later.ids == first.ids and again.ids == []
    assert result.requeued == 1


def test_sending_row_past_its_lease_becomes_in_doubt_not_resent(session, make_contact):
    contact = make_contact("lead")
    _due(session, contact, WEDNESDAY_10 - timedelta(minutes=1))
    run_tick(session, Recorder(), now=WEDNESDAY_10)
    message = session.scalar(sa.select(Message))
    message.status, message.claimed_at, message.attempts = "sending", WEDNESDAY_10, 1
    session.commit()
    enqueue = Recorder()

    result = run_tick(session, enqueue, now=WEDNESDAY_10 + timedelta(minutes=11))

    session.refresh(message)
    assert result.in_doubt == 1 and message.status == "in_doubt" and enqueue.ids == []
    assert session.scalar(
        sa.select(sa.func.count(Activity.id)).where(Activity.kind == "email_in_doubt")
    )


def test_enrollment_with_no_step_left_is_completed(session, make_contact, campaigns):
    contact = make_contact("client")
    enrollment = _due(session, contact, WEDNESDAY_10 - timedelta(minutes=1))
    enrollment.current_step = len(campaigns["client"].steps) + 1
    session.commit()

    result = run_tick(session, Recorder(), now=WEDNESDAY_10)

    session.refresh(enrollment)
    assert result.completed == 1 and enrollment.status == "completed"


def _query_plan(session, query) -> str:
    """The database's plan for `query`, its parameters bound as the ORM binds them."""
    connection = session.connection()
    compiled = query.compile(connection)
    values = compiled.construct_params()
    processors = compiled._bind_processors  # the column types' own conversions (UTC)
    values = {k: processors[k](v) if k in processors else v for k, v in values.items()}
    if connection.dialect.name == "sqlite":
        ordered = tuple(values[name] for name in compiled.positiontup)
        rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", ordered)
        return "\n".join(str(row[-1]) for row in rows)
    connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
    return "\n".join(row[0] for row in connection.exec_driver_sql(f"EXPLAIN {compiled}", values))


def test_the_due_query_reads_the_due_index(session):
    """Migration 0016 left enrolments whose email is on the way out of ix_enrollments_due
    (test_migrations checks its predicate); the tick's due query still reads it."""
    from crm_app.drip.delivery.tick import _due_query

    plan = _query_plan(session, _due_query(session, WEDNESDAY_10, 5000))
    session.rollback()
    assert "ix_enrollments_due" in plan, plan
