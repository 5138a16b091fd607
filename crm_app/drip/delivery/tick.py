"""The tick: find due steps in the database, create their message rows, enqueue them.

Correct when two ticks overlap (two schedulers, a slow tick): a message row is
unique per (enrolment, step) and inserted with ON CONFLICT DO NOTHING, and a
tick enqueues only the rows its own INSERT returned or its own conditional
UPDATE re-leased. PostgreSQL adds FOR UPDATE SKIP LOCKED so overlapping ticks
split the work instead of waiting; SQLite's single writer serialises them.
The database commits before Redis hears of a message: a crash in between
leaves a `queued` row that the lease brings back, never a job without a row.
See DELIVERY.md for the whole state machine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa

from crm_app.drip.audience.ending import complete
from crm_app.drip.audience.progress import advance
from crm_app.drip.audience.reentry import received_in_earlier_enrollments
from crm_app.drip.campaigns.naming import step_name
from crm_app.drip.campaigns.schedule import clamp_to_send_window, is_inside_send_window
from crm_app.drip.common.activity import record_activity
from crm_app.drip.common.sql import in_values, insert_rows, is_postgres, update_rows
from crm_app.drip.delivery.frequency_cap import (
    FrequencyCap,
    apply_cap_in_tick,
    clear_holds,
    record_holds,
)
from crm_app.drip.delivery.heartbeat import write_heartbeat
from crm_app.drip.delivery.in_doubt import AutoResolve, requeue_untraced
from crm_app.drip.delivery.leases import mark_in_doubt, release_expired_queued
from crm_app.models import Campaign, Contact, Enrollment, Message, utcnow

# Literal, not a bound parameter: SQLite only uses the partial index ix_enrollments_due
# (WHERE status = 'active' AND next_send_at IS NOT NULL) when the query says so literally.
_ACTIVE_ENROLLMENT = sa.text("enrollments.status = 'active'")

Enqueue = Callable[[list[int]], None]
ENROLLMENTS = Enrollment.__table__
MESSAGES = Message.__table__
# A new message row: queued, nothing rendered yet (the worker renders it when it claims it).
_NEW_MESSAGE = {
    "status": "queued",
    "attempts": 0,
    "to_email": "",
    "subject": "",
    "html": "",
    "text": "",
    "headers": {},
    "error": "",
}


@dataclass
class TickResult:
    due: int = 0  # due enrolments this tick looked at
    created: int = 0  # message rows this tick created
    deferred: int = 0  # send window closed now: moved to its next opening
    held: int = 0  # the contact had its share of emails (frequency cap): moved on
    completed: int = 0  # no step left (steps removed): completed
    not_repeated: int = 0  # a resumed contact already got this email earlier: moved past it
    requeued: int = 0  # `queued` rows past their lease (Redis lost them), enqueued again
    in_doubt: int = 0  # `sending` rows past their lease: the worker vanished mid-send
    # in-doubt rows SendGrid has no trace of while its webhook is healthy: queued again
    in_doubt_requeued: int = 0
    enqueued: list[int] = field(default_factory=list)  # message ids handed to `enqueue`

    def as_dict(self) -> dict:
        data = dict(self.__dict__)
        data["enqueued"] = len(self.enqueued)
        return data


def run_tick(
    session,
    enqueue: Enqueue,
    now: datetime | None = None,
    *,
    lease_seconds: int = 600,
    chunk_size: int = 5000,
    auto_resolve: AutoResolve | None = None,
    frequency_cap: FrequencyCap | None = None,
    window_grace: timedelta = timedelta(0),
) -> TickResult:
    """One tick. Commits its own transactions, because the order matters:
    rows are committed before their ids reach `enqueue` (Redis). `window_grace`: an
    email due inside its send window is still queued this long after the window closed
    (SEND_WINDOW_GRACE_MINUTES, which the worker allows too)."""
    now = now or utcnow()
    result = TickResult()
    cutoff = now - timedelta(seconds=lease_seconds)

    # Due enrolments, a chunk per transaction, until none is left.
    for _ in range(10_000):  # a bound, in case a chunk made no progress
        seen, created_ids = _process_due_chunk(
            session, now, chunk_size, result, frequency_cap, window_grace
        )
        session.commit()
        if created_ids:
            enqueue(created_ids)
            result.enqueued.extend(created_ids)
        if seen < chunk_size:
            break

    # Housekeeping: vanished workers and lost jobs (cheap: the status index).
    result.in_doubt = mark_in_doubt(session, now, cutoff)
    if auto_resolve is not None:
        untraced = requeue_untraced(session, now, auto_resolve)
        session.commit()  # before Redis hears of them, as every enqueue
        if untraced:
            enqueue(untraced)
            result.enqueued.extend(untraced)
            result.in_doubt_requeued = len(untraced)
    while True:
        requeued = release_expired_queued(session, now, cutoff, chunk_size)
        session.commit()
        if requeued:
            enqueue(requeued)
            result.enqueued.extend(requeued)
            result.requeued += len(requeued)
        if len(requeued) < chunk_size:
            break

    write_heartbeat(session, now)
    session.commit()
    return result


def _due_query(session, now: datetime, limit: int):
    query = (
        sa.select(
            Enrollment.id,
            Enrollment.campaign_id,
            Enrollment.contact_id,
            Enrollment.current_step_id,
            Enrollment.entry,
            Enrollment.next_send_at,
            Enrollment.cap_held_until,
            Contact.timezone,
        )
        .join(Campaign, Campaign.id == Enrollment.campaign_id)
        .join(Contact, Contact.id == Enrollment.contact_id)
        .where(_ACTIVE_ENROLLMENT, Enrollment.next_send_at <= now, Campaign.status == "active")
        .order_by(Enrollment.next_send_at)
        .limit(limit)
    )
    if is_postgres(session):
        # Another tick running now skips the rows this one holds, and vice versa.
        query = query.with_for_update(of=Enrollment, skip_locked=True)
    return query


@dataclass
class _DueChunk:
    """A chunk of due enrolments sorted by what happens to each."""

    to_insert: list[dict] = field(default_factory=list)  # a message row for the step
    deferrals: list[dict] = field(default_factory=list)  # window closed: next opening
    finished: list[int] = field(default_factory=list)  # no step left: complete
    campaigns: dict[int, Campaign] = field(default_factory=dict)  # the chunk's, by id


def _sort_due(session, rows, now: datetime, window_grace: timedelta) -> _DueChunk:
    campaigns = {
        c.id: c
        for c in session.scalars(
            sa.select(Campaign).where(Campaign.id.in_({r.campaign_id for r in rows}))
        )
    }
    due = _DueChunk(campaigns=campaigns)
    # A chunk's 5,000 enrolments share a few campaigns and time zones: each window is
    # checked once per pair, not once per enrolment.
    inside: dict[tuple[int, str], bool] = {}
    for row in rows:
        campaign = campaigns[row.campaign_id]
        window = (row.campaign_id, row.timezone)
        if window not in inside:
            inside[window] = is_inside_send_window(now, campaign, row.timezone)
        if row.current_step_id is None:
            due.finished.append(row.id)
        elif not inside[window] and not _just_missed(row, campaign, now, window_grace):
            opening = clamp_to_send_window(
                now, row.timezone, campaign.send_weekdays, campaign.send_start, campaign.send_end
            )
            due.deferrals.append(
                {
                    "id": row.id,
                    "seen_step_id": row.current_step_id,
                    "seen_next_send_at": row.next_send_at,
                    "next_send_at": opening,
                }
            )
        else:
            due.to_insert.append(
                {
                    "enrollment_id": row.id,
                    "step_id": row.current_step_id,
                    "contact_id": row.contact_id,
                    "campaign_id": row.campaign_id,
                }
            )
    return due


def _defer(session, deferrals: list[dict]) -> None:
    """Move each enrolment to its window's next opening, only if nobody moved it since."""
    update_rows(
        session,
        ENROLLMENTS,
        deferrals,
        types={
            "seen_step_id": ENROLLMENTS.c.current_step_id.type,
            "seen_next_send_at": ENROLLMENTS.c.next_send_at.type,
        },
        where=lambda r: [
            ENROLLMENTS.c.current_step_id == r.seen_step_id,
            ENROLLMENTS.c.next_send_at == r.seen_next_send_at,
        ],
        values=lambda r: {"next_send_at": r.next_send_at},
        returning=False,
    )


def _just_missed(row, campaign: Campaign, now: datetime, grace: timedelta) -> bool:
    """Due inside its window, which closed less than `grace` ago: an email due at 16:59:30
    that the tick (every minute) reaches at 17:00:20 goes now, as the page said, rather
    than at the next opening."""
    return now - row.next_send_at <= grace and is_inside_send_window(
        row.next_send_at, campaign, row.timezone
    )


def _process_due_chunk(
    session,
    now: datetime,
    limit: int,
    result: TickResult,
    cap: FrequencyCap | None = None,
    window_grace: timedelta = timedelta(0),
) -> tuple[int, list[int]]:
    rows = session.execute(_due_query(session, now, limit)).all()
    if not rows:
        return 0, []
    result.due += len(rows)
    due = _sort_due(session, rows, now, window_grace)
    _defer(session, due.deferrals)
    result.deferred += len(due.deferrals)
    result.not_repeated += _skip_received_earlier(session, due, rows, now)
    if cap is not None:
        # Last, on what would otherwise get a message row now (frequency_cap.py).
        due.to_insert, holds = apply_cap_in_tick(
            session, cap, due.to_insert, rows, due.campaigns, now
        )
        result.held += record_holds(session, holds, now)

    created = _insert_messages(session, due.to_insert, now)
    result.created += len(created)
    if created:
        # The message row now owns this step: the enrolment leaves the due index
        # until the worker advances it (so later ticks do not look at it again).
        _clear_next_send_at(session, list(created))
    conflicts = [r for r in due.to_insert if r["enrollment_id"] not in created]
    requeued = _resolve_conflicts(session, conflicts, rows, now) if conflicts else []
    # Each of these has its email on the way (or sent): a cap hold on it is over. Only
    # the few read with a hold (rows this tick holds locked): no UPDATE for the rest.
    held = {r.id for r in rows if r.cap_held_until is not None}
    clear_holds(session, [r["enrollment_id"] for r in due.to_insert if r["enrollment_id"] in held])

    for enrollment_id in due.finished:
        enrollment = session.get(Enrollment, enrollment_id)
        if enrollment is not None and enrollment.status == "active":
            complete(session, enrollment, now=now)
            result.completed += 1
    return len(rows), list(created.values()) + requeued


def _skip_received_earlier(session, due: _DueChunk, rows, now: datetime) -> int:
    """A resumed contact whose due step it already got in an earlier enrolment (the
    steps were reordered since) is moved past it, never sent it twice: the step leaves
    `due.to_insert`. Returns how many moved."""
    resumed = {r.id for r in rows if r.entry == "resumed"}
    received = received_in_earlier_enrollments(
        session,
        [
            (r["enrollment_id"], r["contact_id"], r["step_id"])
            for r in due.to_insert
            if r["enrollment_id"] in resumed
        ],
    )
    if not received:
        return 0
    due.to_insert = [r for r in due.to_insert if r["enrollment_id"] not in received]
    seen = {r.id: r for r in rows}
    moved = 0
    for enrollment_id, received_at in received.items():
        enrollment = session.get(Enrollment, enrollment_id)
        row = seen[enrollment_id]
        if enrollment.status != "active" or enrollment.current_step_id != row.current_step_id:
            continue
        record_activity(
            session,
            enrollment.contact,
            "email_skipped",
            f"{step_name(enrollment.step)} not sent again: "
            f"{enrollment.contact.full_name} already received it in an earlier enrolment",
            actor="system:tick",
            campaign=enrollment.campaign,
            enrollment=enrollment,
        )
        advance(session, enrollment, sent_at=received_at, now=now)
        moved += 1
    return moved


def _insert_messages(session, rows: list[dict], now: datetime) -> dict[int, int]:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING: {enrollment_id: message id} of the
    rows this call created (a row another tick created first is not returned)."""
    created = insert_rows(
        session,
        MESSAGES,
        rows,
        constants={**_NEW_MESSAGE, "created_at": now, "enqueued_at": now},
        on_conflict=("enrollment_id", "step_id"),
        returning=("id", "enrollment_id"),
    )
    return {enrollment_id: message_id for message_id, enrollment_id in created}


def _clear_next_send_at(session, enrollment_ids: list[int]) -> None:
    # One statement per due chunk (an array parameter on PostgreSQL; the chunk size keeps
    # SQLite's IN list well under its variable limit).
    session.execute(
        sa.update(ENROLLMENTS)
        .where(in_values(session, ENROLLMENTS.c.id, enrollment_ids))
        .values(next_send_at=None)
    )


def _resolve_conflicts(session, conflicts: list[dict], rows, now: datetime) -> list[int]:
    """Due enrolments whose (enrolment, step) row already exists. Rare: an overlapping
    SQLite tick, steps reordered, or a row skipped while its campaign was paused."""
    seen = {r.id: r for r in rows}
    existing = {
        (m.enrollment_id, m.step_id): m
        for m in session.scalars(
            sa.select(Message).where(
                Message.enrollment_id.in_([c["enrollment_id"] for c in conflicts])
            )
        )
    }
    requeued: list[int] = []
    for wanted in conflicts:
        row = seen[wanted["enrollment_id"]]
        message = existing.get((wanted["enrollment_id"], wanted["step_id"]))
        if message is None:
            continue
        guard = (
            sa.update(Enrollment.__table__)
            .where(
                Enrollment.id == row.id,
                Enrollment.current_step_id == row.current_step_id,
                Enrollment.next_send_at == row.next_send_at,
            )
            .values(next_send_at=None)
        )
        if message.status == "sent":
            # This step's email already went out (the steps were reordered): move on.
            enrollment = session.get(Enrollment, row.id)
            same_step = enrollment.current_step_id == row.current_step_id
            if same_step and enrollment.status == "active":
                advance(session, enrollment, sent_at=message.sent_at or now, now=now)
        elif message.status == "skipped":
            # Skipped while it could not go (campaign paused, step edited); due again now.
            claimed = session.execute(
                sa.update(Message.__table__)
                .where(Message.id == message.id, Message.status == "skipped")
                .values(status="queued", error="", enqueued_at=now, next_attempt_at=None)
            ).rowcount
            if claimed:
                session.execute(guard)
                requeued.append(message.id)
        else:
            # queued, sending, in doubt or failed: that row owns the step; wait for it.
            session.execute(guard)
    return requeued
