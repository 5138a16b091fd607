"""The state-changing SQL of a message (DELIVERY.md draws the state machine).

Every write is conditional on the state the writer saw, so when two writers meet
(two workers, a worker and the tick, a worker and an admin) exactly one wins and
the other learns it from the row count: that is what makes a second send impossible.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from crm_app.drip.common.activity import record_activity
from crm_app.drip.common.sql import update_rows
from crm_app.drip.reporting.daily_counts import count_sent
from crm_app.models import Enrollment, Message

MESSAGES = Message.__table__
ENROLLMENTS = Enrollment.__table__
# The claim's own check that the enrolment still waits for this email: the worker read
# it so just before, but a stop, a re-enrolment (resuming at this email) and a tick
# queueing the new enrolment's copy may all commit in between.
_ENROLLMENT_AT_STEP = (
    sa.exists()
    .where(
        ENROLLMENTS.c.id == MESSAGES.c.enrollment_id,
        ENROLLMENTS.c.status == "active",
        ENROLLMENTS.c.current_step_id == MESSAGES.c.step_id,
    )
    .correlate(MESSAGES)
)


def update_if(session, message_id: int, condition, **values) -> bool:
    """A conditional UPDATE of one message: True when this caller won the row."""
    statement = sa.update(MESSAGES).where(MESSAGES.c.id == message_id, condition).values(**values)
    return session.execute(statement).rowcount == 1


def still_ours(attempt: int) -> sa.ColumnElement:
    """This attempt's row, `in_doubt` included (the tick may have given up on a slow
    send that went out); an admin's resend starts another attempt, which is not ours."""
    return sa.and_(MESSAGES.c.status.in_(("sending", "in_doubt")), MESSAGES.c.attempts == attempt)


@dataclass(frozen=True)
class ClaimRow:
    """A `queued` message to claim at the attempts count it was read with, and the
    content rendered for it (stored with the claim: what was sent is on the row)."""

    message_id: int
    seen_attempts: int
    to_email: str
    subject: str
    html: str
    text: str
    headers: dict
    template_version: int
    variant_id: int | None = None  # the A/B variant; a row keeps the first one recorded


def claim(session, rows: list[ClaimRow], claimed_at: datetime) -> set[int]:
    """queued -> sending, attempts + 1, for each message still `queued` at the attempts
    it was read with, whose enrolment is still active at its step; returns the ids this
    caller won (one lost stays `queued`: the lease brings it back, and the skip rules
    skip it). Commit BEFORE sending."""
    return update_rows(
        session,
        MESSAGES,
        [
            {
                "id": row.message_id,
                "seen_attempts": row.seen_attempts,
                "claimed_at": claimed_at,
                "to_email": row.to_email,
                "subject": row.subject,
                "html": row.html,
                "text": row.text,
                "headers": row.headers,
                "template_version": row.template_version,
                "variant_id": row.variant_id,
            }
            for row in rows
        ],
        types={"seen_attempts": sa.Integer()},
        where=lambda r: [
            MESSAGES.c.status == "queued",
            MESSAGES.c.attempts == r.seen_attempts,
            _ENROLLMENT_AT_STEP,
        ],
        values=lambda r: {
            "status": "sending",
            "attempts": MESSAGES.c.attempts + 1,
            "claimed_at": r.claimed_at,
            "to_email": r.to_email,
            "subject": r.subject,
            "html": r.html,
            "text": r.text,
            "headers": r.headers,
            "template_version": r.template_version,
            "variant_id": sa.func.coalesce(MESSAGES.c.variant_id, r.variant_id),
        },
    )


def record_sent(session, sent: list[tuple[int, int, str | None, datetime]]) -> set[int]:
    """(message id, attempt, provider id, sent at) -> `sent`, for each message still at
    that attempt (`in_doubt` included); returns the ids recorded (counted in analytics)."""
    recorded = update_rows(
        session,
        MESSAGES,
        [
            {"id": message_id, "attempt": attempt, "provider_id": provider_id, "sent_at": at}
            for message_id, attempt, provider_id, at in sent
        ],
        types={"attempt": sa.Integer(), "provider_id": MESSAGES.c.provider_message_id.type},
        where=lambda r: [
            MESSAGES.c.status.in_(("sending", "in_doubt")),
            MESSAGES.c.attempts == r.attempt,
        ],
        values=lambda r: {
            "status": "sent",
            "provider_message_id": r.provider_id,
            "sent_at": r.sent_at,
            "next_attempt_at": None,
            "error": "",
        },
    )
    count_sent(session, recorded)
    return recorded


def release_unsent(session, message_id: int, attempt: int) -> bool:
    """Claimed but never sent (the batch stopped first): back to `queued`, as it was."""
    return update_if(
        session,
        message_id,
        sa.and_(MESSAGES.c.status == "sending", MESSAGES.c.attempts == attempt),
        status="queued",
        attempts=attempt - 1,
    )


def record_message_activity(session, message: Message, kind: str, detail: str, actor: str) -> None:
    """A timeline row about this message's email, tied to its campaign and enrolment."""
    record_activity(
        session,
        message.contact,
        kind,
        detail,
        actor=actor,
        campaign=message.campaign,
        enrollment=message.enrollment,
    )
