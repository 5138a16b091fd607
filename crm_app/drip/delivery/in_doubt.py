"""In-doubt emails settled without a person, when the data allows it.

A worker killed mid-send leaves its message `in_doubt`: it may have reached SendGrid.
SendGrid reports every message it accepts (`processed`) within seconds, so when the
Event Webhook is configured and healthy (batches keep arriving, and one arrived at
least IN_DOUBT_AUTO_RESOLVE_MINUTES after the send was claimed) and the message has
no event at all after that long, SendGrid never accepted it: the tick queues it
again, recorded as such (`in_doubt_resolution = 'requeued'`). Without a healthy
webhook nothing is assumed: it waits for an admin, as before.

Never twice: a message with ANY SendGrid event is not requeued (checked in the same
conditional UPDATE), and a late event that still arrives for a requeued message
before a worker claims it again settles it as sent instead (`settle_requeued`, from
the webhook ingest and from the worker's decide step, just before the claim). An
admin's resend is the same bet made by a person: an event arriving after it, before
the new copy left (queued, or skipped while its campaign was paused), settles it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from crm_app.drip.audience.progress import advance
from crm_app.drip.common.activity import activity_row, record_activities
from crm_app.drip.delivery.transitions import MESSAGES, record_message_activity, update_if
from crm_app.drip.reporting.daily_counts import count_sent
from crm_app.models import Message
from crm_app.models.tracking import EmailEvent, WebhookBatch

ACTOR = "system:in-doubt"
# The webhook counts as healthy while its last batch is at most this old.
WEBHOOK_HEALTHY_WITHIN = timedelta(minutes=15)
# in_doubt_resolution values, as the dashboard names them.
RESOLUTIONS = {
    "sendgrid": "settled as sent by a SendGrid event",
    "requeued": "queued again: no trace at SendGrid",
    "admin": "settled by an admin",
}


@dataclass(frozen=True)
class AutoResolve:
    """What the tick needs to settle in-doubt emails by itself."""

    webhook_configured: bool
    after_minutes: float

    @property
    def enabled(self) -> bool:
        return self.webhook_configured and self.after_minutes > 0


def last_webhook_at(session) -> datetime | None:
    return session.scalar(sa.select(sa.func.max(WebhookBatch.received_at)))


def webhook_is_healthy(last: datetime | None, now: datetime) -> bool:
    """Events arrived recently: the last batch (`last_webhook_at`) within
    WEBHOOK_HEALTHY_WITHIN."""
    return last is not None and last >= now - WEBHOOK_HEALTHY_WITHIN


def requeue_untraced(session, now: datetime, policy: AutoResolve) -> list[int]:
    """in_doubt -> queued for the messages SendGrid has no trace of; returns their ids
    (the caller commits, then enqueues them). Nothing without a healthy webhook."""
    if not policy.enabled:
        return []
    last = last_webhook_at(session)
    if not webhook_is_healthy(last, now):
        return []
    after = timedelta(minutes=policy.after_minutes)
    # Claimed long enough ago, AND a webhook batch arrived at least `after` later.
    claimed_before = min(now, last) - after
    any_event = sa.exists().where(EmailEvent.message_id == MESSAGES.c.id)
    rows = session.execute(
        sa.update(MESSAGES)
        .where(
            MESSAGES.c.status == "in_doubt",
            MESSAGES.c.claimed_at <= claimed_before,
            ~any_event,
        )
        .values(
            status="queued",
            error="",
            enqueued_at=now,
            next_attempt_at=None,
            in_doubt_resolution="requeued",
        )
        .returning(
            MESSAGES.c.id, MESSAGES.c.contact_id, MESSAGES.c.campaign_id, MESSAGES.c.enrollment_id
        )
    ).all()
    minutes = f"{policy.after_minutes:g} minutes"
    record_activities(
        session,
        [
            activity_row(
                row.contact_id,
                "email_requeued_no_trace",
                f"Email #{row.id} queued again: SendGrid reported nothing about it "
                f"{minutes} after the send while its webhook reported other emails, "
                "so it was never accepted",
                actor=ACTOR,
                campaign_id=row.campaign_id,
                enrollment_id=row.enrollment_id,
                created_at=now,
            )
            for row in rows
        ],
    )
    return [row.id for row in rows]


def queued_again_unsent() -> sa.ColumnElement[bool]:
    """An in-doubt message queued again (by the tick for lack of a trace, or by an
    admin's resend) whose new copy has not left: waiting for a worker, or skipped
    (its campaign paused, the frequency cap) until the tick queues it again."""
    return sa.and_(
        MESSAGES.c.status.in_(("queued", "skipped")),
        MESSAGES.c.in_doubt_resolution.in_(("requeued", "admin")),
    )


def settle_requeued(session, message: Message, *, at: datetime, actor: str) -> bool:
    """An in-doubt message queued again that SendGrid turns out to have (an event
    arrived late): -> sent, before any worker claims it again. False if it was claimed
    meanwhile (or is no longer such a message)."""
    detail = f"Email #{message.id} marked sent: SendGrid reported it after all"
    return settle_as_sent(
        session,
        message,
        queued_again_unsent(),
        at=at,
        resolution="sendgrid",
        detail=detail,
        actor=actor,
    )


def settle_as_sent(
    session,
    message: Message,
    condition: sa.ColumnElement[bool],
    *,
    at: datetime,
    resolution: str,
    detail: str,
    actor: str,
) -> bool:
    """An email not recorded as sent went out after all (an admin knows, SendGrid
    reported it): sent at `at` if `condition` still holds on its row, counted in the
    analytics rollups, on the timeline, and its enrolment moves on. False when the row
    changed meanwhile."""
    settled = update_if(
        session, message.id, condition,
        status="sent", sent_at=at, error="", in_doubt_resolution=resolution,
    )  # fmt: skip
    if not settled:
        return False
    count_sent(session, [message.id])  # the analytics rollups, in this transaction
    session.refresh(message)
    record_message_activity(session, message, "email_marked_sent", detail, actor)
    enrollment = message.enrollment
    if enrollment.status == "active" and enrollment.current_step_id == message.step_id:
        advance(session, enrollment, sent_at=at, now=at)
    return True


def traced_requeued(session, messages: list[Message]) -> dict[int, datetime]:
    """Of these messages, the requeued in-doubt ones SendGrid has an event for after
    all: id -> the first event's time (one query, only when there are any)."""
    requeued = [m.id for m in messages if m.in_doubt_resolution == "requeued"]
    if not requeued:
        return {}
    rows = session.execute(
        sa.select(EmailEvent.message_id, sa.func.min(EmailEvent.occurred_at))
        .where(EmailEvent.message_id.in_(requeued))
        .group_by(EmailEvent.message_id)
    )
    return {message_id: at for message_id, at in rows}


def resolution_counts() -> dict[str, sa.ScalarSelect]:
    """How many in-doubt emails were settled each way, all time (the dashboard): one
    column each, to select beside other figures (read from their partial index). One
    queued again whose new send is in doubt once more is not settled: it counts among
    the emails in doubt, not here."""
    return {
        name: sa.select(sa.func.count())
        .where(Message.in_doubt_resolution == name, Message.status != "in_doubt")
        .scalar_subquery()
        for name in RESOLUTIONS
    }
