"""Statements about given messages (a delivery chunk's, a webhook batch's, some
contacts' or enrolments') find them by what they were given, whatever PostgreSQL's
statistics say about their status (common/sql.py: checked_on_found_rows,
for_each_named_value).

A tick that queues a burst of emails leaves the statistics behind until the next
ANALYZE: they say almost nothing is `queued`. Read that way, "status = 'queued'" looked
the cheaper way in, so each claim of a hundred emails read every queued row through the
status index: 20 ms of the database's CPU per claim with 100,000 queued
(bench/delivery_bench.py at 1,000,000 enrolments), half of delivery's database time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
import sqlalchemy as sa

from crm_app.drip.delivery import transitions
from crm_app.drip.delivery.frequency_cap import recent_sends
from crm_app.models import utcnow

STALE_ROWS = 3000  # sent when ANALYZE ran
BURST = 3000  # queued after it


def _statistics_gone_stale(
    session, campaigns, analyzed: str, burst: str, analyzed_contacts: int = STALE_ROWS
) -> None:
    """STALE_ROWS messages in status `analyzed`, of `analyzed_contacts` contacts, when
    ANALYZE ran; then BURST in `burst`, message n contact n's."""
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("SQLite plans without statistics here (nothing runs ANALYZE): none go stale")
    columns = (
        "enrollment_id, step_id, contact_id, campaign_id, status, attempts, to_email, subject,"
        " html, text, headers, error, created_at, sent_at, enqueued_at"
    )
    rows = (
        "SELECT n, :step_id, (n - 1) % CAST(:contacts AS INTEGER) + 1, :campaign_id, :status,"
        " :attempts, '', '', '', '', '{}', '', now(), CAST(:sent_at AS TIMESTAMP), now()"
        " FROM generate_series(CAST(:first AS INTEGER), CAST(:last AS INTEGER)) AS n"
    )
    step = campaigns["lead"].steps[0]
    insert = sa.text(f"INSERT INTO messages ({columns}) {rows}").bindparams(
        step_id=step.id, campaign_id=step.campaign_id
    )
    sent_at = utcnow().replace(tzinfo=None)

    def add(status: str, first: int, last: int, contacts: int) -> None:
        sent = status == "sent"
        values = {"status": status, "attempts": int(sent), "sent_at": sent_at if sent else None}
        session.execute(insert, values | {"first": first, "last": last, "contacts": contacts})
        session.commit()

    add(analyzed, 1, STALE_ROWS, analyzed_contacts)
    session.execute(sa.text("ANALYZE messages"))
    add(burst, STALE_ROWS + 1, STALE_ROWS + BURST, STALE_ROWS + BURST)


def _plan_of(
    session, run: Callable[[], object], statement_start: str, *, seqscan: bool = False
) -> str:
    """The plan of the statement `run` sends that starts so, as the worker sends it.
    Without `seqscan`, a table this small is not read whole (rightly, it would be): the
    question is which index."""
    sent: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany) -> None:
        sent.append((statement, parameters))

    connection = session.connection()
    sa.event.listen(connection, "before_cursor_execute", capture)
    try:
        with session.begin_nested():
            run()
            statement, parameters = next(s for s in sent if s[0].startswith(statement_start))
            if not seqscan:
                connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
            plan = connection.exec_driver_sql(f"EXPLAIN {statement}", parameters)
            return "\n".join(row[0] for row in plan)
    finally:
        sa.event.remove(connection, "before_cursor_execute", capture)
        session.rollback()


def _claim_rows(ids: list[int]) -> list[transitions.ClaimRow]:
    content = ("a@example.com", "Hi", "<p>Hi</p>", "Hi", {})
    return [transitions.ClaimRow(i, 0, *content, template_version=1) for i in ids]


def test_a_claim_finds_its_messages_by_id(session, campaigns):
    _statistics_gone_stale(session, campaigns, analyzed="sent", burst="queued")
    ids = list(range(STALE_ROWS + 1, STALE_ROWS + 101))  # the burst's first hundred
    claim = lambda: transitions.claim(session, _claim_rows(ids), utcnow())  # noqa: E731
    plan = _plan_of(session, claim, "UPDATE messages")
    assert "pk_messages" in plan and "ix_messages_status_enqueued" not in plan, plan


def test_recording_answers_finds_the_messages_by_id(session, campaigns):
    _statistics_gone_stale(session, campaigns, analyzed="sent", burst="queued")
    ids = list(range(STALE_ROWS + 1, STALE_ROWS + 101))
    transitions.claim(session, _claim_rows(ids), utcnow())
    session.commit()
    answers = [(message_id, 1, f"sg-{message_id}", utcnow()) for message_id in ids]
    plan = _plan_of(session, lambda: transitions.record_sent(session, answers), "UPDATE messages")
    assert "pk_messages" in plan and "ix_messages_status_enqueued" not in plan, plan


def _recent_sends_plan(session, contacts: list[int]) -> str:
    since = utcnow() - timedelta(days=1)
    read = lambda: recent_sends(session, contacts, since, now=utcnow(), include_queued=False)  # noqa: E731
    return _plan_of(session, read, "SELECT", seqscan=True)


def test_the_frequency_cap_reads_the_contacts_sends_by_contact(session, campaigns):
    """The statistics say next to nothing is sent; the chunk's contacts have no sends."""
    _statistics_gone_stale(session, campaigns, analyzed="queued", burst="sent")
    plan = _recent_sends_plan(session, list(range(1, 101)))
    assert "ix_messages_contact_id" in plan and "ix_messages_status_enqueued" not in plan, plan
    assert "Seq Scan on messages" not in plan, plan


def test_the_frequency_cap_reads_by_contact_when_few_contacts_were_analyzed(session, campaigns):
    """The statistics say 300 contacts share every message, ten each: a hundred contacts
    look like a third of the table, which the planner would read whole. The chunk's
    contacts each have one."""
    _statistics_gone_stale(session, campaigns, analyzed="sent", burst="sent", analyzed_contacts=300)
    plan = _recent_sends_plan(session, list(range(STALE_ROWS + 1, STALE_ROWS + 101)))
    assert "ix_messages_contact_id" in plan and "Seq Scan on messages" not in plan, plan


def test_a_condition_reads_the_previous_emails_by_enrolment(session, campaigns):
    """A "send only if" condition's previous email, for a chunk of enrolments: the
    statistics say next to nothing is sent."""
    from crm_app.drip.experiments.conditions import _last_sent
    from crm_app.models import Message

    _statistics_gone_stale(session, campaigns, analyzed="queued", burst="sent")
    scope = Message.enrollment_id.in_(range(1, 101))  # message n is enrolment n's
    read = lambda: _last_sent(session, [Message.enrollment_id], scope)  # noqa: E731
    plan = _plan_of(session, read, "SELECT")
    assert "uq_messages_enrollment_step" in plan, plan
    assert "ix_messages_status_enqueued" not in plan, plan


def test_webhook_events_find_their_in_doubt_messages_by_id(session, campaigns):
    """A batch's events look for in-doubt (or requeued) messages among their own: the
    statistics say none is in doubt, and an outage has left thousands so."""
    from crm_app.drip.tracking.event_consequences import _resolve_in_doubt
    from crm_app.drip.tracking.event_parsing import WebhookEvent

    _statistics_gone_stale(session, campaigns, analyzed="sent", burst="in_doubt")
    at = utcnow()
    events = [
        WebhookEvent({}, f"ev{n}", "open", "a@example.com", at, message_id=n)  # no proof
        for n in range(STALE_ROWS + 1, STALE_ROWS + 101)
    ]
    plan = _plan_of(session, lambda: _resolve_in_doubt(session, events), "SELECT")
    assert "pk_messages" in plan and "ix_messages_status_enqueued" not in plan, plan


def test_resumed_enrolments_read_earlier_emails_by_contact(session, campaigns):
    """The tick asks whether resumed enrolments' contacts got a step before: the
    statistics say next to nothing was sent."""
    from crm_app.drip.audience.reentry import received_in_earlier_enrollments

    _statistics_gone_stale(session, campaigns, analyzed="queued", burst="sent")
    step_id = campaigns["lead"].steps[0].id
    resumed = [(n, n, step_id) for n in range(1, 101)]
    read = lambda: received_in_earlier_enrollments(session, resumed)  # noqa: E731
    plan = _plan_of(session, read, "SELECT")
    assert "ix_messages_contact_id" in plan, plan
    assert "ix_messages_status_enqueued" not in plan, plan
