"""What an admin does to one failed or in-doubt email: retry, resend, mark sent.

Each change is conditional on the state the page showed, and writes its timeline
row; `perform_admin_action` commits before Redis hears of the message (the lease
brings it back if Redis is down), as the tick does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crm_app.drip.common.labels import actor_label
from crm_app.drip.delivery.in_doubt import settle_as_sent
from crm_app.drip.delivery.skip_rules import skip_reason
from crm_app.drip.delivery.transitions import MESSAGES, record_message_activity, update_if
from crm_app.drip.reporting.daily_counts import count_sent
from crm_app.models import Message, utcnow


class DeliveryActionError(Exception):
    """The action does not apply to this message's state; the message is meant for the user."""


def _requeue(session, message: Message, allowed: tuple[str, ...], kind: str, actor: str, now):
    if message.status not in allowed:
        raise DeliveryActionError(
            f"Message #{message.id} is {message.status}, not {' or '.join(allowed)}."
        )
    # Queued again, it would be skipped at once (its enrolment ended or moved on, the
    # address is suppressed, its condition no longer holds): saying "queued again"
    # would be untrue. A paused campaign only holds it until it resumes.
    skipped = skip_reason(session, message)
    if skipped is not None and skipped[1] != "reschedule":
        raise DeliveryActionError(f"Email #{message.id} would not be sent now: {skipped[0]}.")
    if not update_if(
        session,
        message.id,
        MESSAGES.c.status == message.status,
        status="queued",
        error="",
        enqueued_at=now,
        next_attempt_at=None,
    ):
        raise DeliveryActionError(f"Message #{message.id} changed meanwhile; reload the page.")
    count_sent(session, [message.id])
    session.refresh(message)
    record_message_activity(
        session, message, kind, f"Email #{message.id} queued again by {actor_label(actor)}", actor
    )
    return message


def retry_failed(session, message: Message, *, actor: str, now: datetime | None = None) -> Message:
    """failed -> queued. The caller commits, then enqueues the id."""
    return _requeue(session, message, ("failed",), "email_retried", actor, now or utcnow())


def resend_in_doubt(
    session, message: Message, *, actor: str, now: datetime | None = None
) -> Message:
    """in_doubt -> queued: the admin accepts the risk of a second copy."""
    _requeue(session, message, ("in_doubt",), "email_resent", actor, now or utcnow())
    message.in_doubt_resolution = "admin"
    return message


def mark_sent(
    session,
    message: Message,
    *,
    actor: str,
    note: str = "",
    now: datetime | None = None,
    resolution: str = "admin",
) -> Message:
    """in_doubt -> sent (an admin knows it went out, or SendGrid reported it): the
    enrolment moves on. `note` says how we know, on the timeline; `resolution` who
    settled it (in_doubt.RESOLUTIONS)."""
    now = now or utcnow()
    if message.status != "in_doubt":
        raise DeliveryActionError(f"Message #{message.id} is {message.status}, not in doubt.")
    detail = f"Email #{message.id} marked sent by {actor_label(actor)}" + (
        f": {note}" if note else ""
    )
    in_doubt = MESSAGES.c.status == "in_doubt"
    if not settle_as_sent(
        session, message, in_doubt, at=now, resolution=resolution, detail=detail, actor=actor
    ):
        raise DeliveryActionError(f"Message #{message.id} changed meanwhile; reload the page.")
    return message


@dataclass(frozen=True)
class AdminAction:
    """An action the admin pages offer on a message in `applies_to` state."""

    name: str
    label: str
    applies_to: str
    done: str
    perform: Callable[..., Message]
    # May send a second copy: the page asks first, unless SendGrid has no trace of it.
    may_duplicate: bool = False


ADMIN_ACTIONS = {
    action.name: action
    for action in (
        AdminAction("retry", "Retry", "failed", "queued again", retry_failed),
        AdminAction(
            "resend",
            "Resend",
            "in_doubt",
            "queued again; it may arrive twice",
            resend_in_doubt,
            may_duplicate=True,
        ),
        AdminAction("mark-sent", "Mark sent", "in_doubt", "marked as sent", mark_sent),
    )
}


def actions_for(status: str) -> list[AdminAction]:
    return [action for action in ADMIN_ACTIONS.values() if action.applies_to == status]


def perform_admin_action(
    session, message: Message, action: str, *, actor: str, enqueue: Callable[[list[int]], Any]
) -> str:
    """Apply one of ADMIN_ACTIONS and commit; a message queued again goes to Redis
    (`enqueue`) only after the commit, so the worker that picks it up finds it queued.
    Returns what was done; raises DeliveryActionError (rolled back) when it does not apply."""
    chosen = ADMIN_ACTIONS[action]
    try:
        chosen.perform(session, message, actor=actor)
    except DeliveryActionError:
        session.rollback()
        raise
    session.commit()
    if message.status == "queued":
        enqueue([message.id])
    return chosen.done
