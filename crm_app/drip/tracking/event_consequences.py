"""What an applied webhook event changes beyond its own row: suppressions (bounces,
spam reports, unsubscribes, group (un)subscribes in order) and in-doubt emails that
SendGrid turns out to have."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from crm_app.drip.audience.suppression import (
    SuppressionRequest,
    lift_suppression,
    suppress,
    suppress_many,
)
from crm_app.drip.common.sql import checked_on_found_rows, in_values
from crm_app.drip.delivery.admin_actions import mark_sent
from crm_app.drip.delivery.in_doubt import queued_again_unsent, settle_requeued
from crm_app.drip.tracking.event_parsing import ACTOR, WebhookEvent
from crm_app.models import Message
from crm_app.models.tracking import EmailEvent

# Drop reasons that say the address itself is bad or unwilling.
SUPPRESSING_DROP_REASONS = {
    "bounced address": "bounce",
    "invalid": "bounce",
    "spam reporting address": "spamreport",
    "unsubscribed address": "unsubscribe",
}


def _suppression_reason(event: WebhookEvent) -> str | None:
    if event.event == "bounce":
        # A block is the receiving server's temporary refusal, not a bad address.
        return None if str(event.raw.get("type", "")).lower() == "blocked" else "bounce"
    if event.event == "dropped":
        return SUPPRESSING_DROP_REASONS.get(str(event.raw.get("reason", "")).strip().lower())
    if event.event in ("spamreport", "unsubscribe", "group_unsubscribe"):
        return event.event
    return None


def _latest_group_event(session, email: str, event: str) -> datetime | None:
    return session.scalar(
        sa.select(sa.func.max(EmailEvent.occurred_at)).where(
            EmailEvent.email == email, EmailEvent.event == event, EmailEvent.outcome == "applied"
        )
    )


def apply_consequences(session, events: list[WebhookEvent], now: datetime) -> None:
    bounced: list[SuppressionRequest] = []
    for event in sorted(events, key=lambda e: e.occurred_at):
        reason = _suppression_reason(event)
        if event.event == "group_unsubscribe":
            # Group (un)subscribes are rare and order matters between them: one by one.
            resubscribed = _latest_group_event(session, event.email, "group_resubscribe")
            if resubscribed is None or resubscribed <= event.occurred_at:
                suppress(
                    session, event.email, reason="group_unsubscribe",
                    source="sendgrid group_unsubscribe", actor=ACTOR, note=event.detail, now=now,
                )  # fmt: skip
        elif event.event == "group_resubscribe":
            unsubscribed = _latest_group_event(session, event.email, "group_unsubscribe")
            if unsubscribed is None or unsubscribed <= event.occurred_at:
                lift_suppression(
                    session, event.email, actor=ACTOR, note="group resubscribe",
                    only_reason="group_unsubscribe",
                )  # fmt: skip
        elif reason is not None:
            bounced.append(
                SuppressionRequest(event.email, reason, f"sendgrid {event.event}", event.detail)
            )
    suppress_many(session, bounced, actor=ACTOR, now=now)
    _resolve_in_doubt(session, events)


def _resolve_in_doubt(session, events: list[WebhookEvent]) -> None:
    """SendGrid has the message: an in-doubt row was in fact sent (one query to find
    them). So was one queued again (by the tick for lack of a trace, or an admin's
    resend), when any event of it arrives before its new copy left (delivery/in_doubt.py).
    The batch's messages are found by id (checked_on_found_rows): statistics taken before
    an outage left thousands in doubt would make "in_doubt" look rare, and each batch
    read them all."""
    seen: dict[int, datetime] = {}  # any event: the first one's time
    proving: dict[int, datetime] = {}  # processed / delivered: the first one's time
    for e in events:
        if e.message_id is None:
            continue
        seen[e.message_id] = min(e.occurred_at, seen.get(e.message_id, e.occurred_at))
        if e.event in ("processed", "delivered"):
            first = proving.get(e.message_id, e.occurred_at)
            proving[e.message_id] = min(e.occurred_at, first)
    if not seen:
        return
    candidates = session.scalars(
        sa.select(Message).where(
            in_values(session, Message.id, seen),
            checked_on_found_rows(sa.or_(Message.status == "in_doubt", queued_again_unsent())),
        )
    )
    for message in candidates:
        if message.status != "in_doubt":
            settle_requeued(session, message, at=seen[message.id], actor=ACTOR)
        elif message.id in proving:
            mark_sent(
                session,
                message,
                actor=ACTOR,
                note="SendGrid reported it",
                now=proving[message.id],
                resolution="sendgrid",
            )
