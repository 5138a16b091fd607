"""Deliver messages: re-check, render, claim, send, record, advance. See DELIVERY.md.

One message at a time, one commit after each step that matters, so a worker
killed at any point loses at most the one email in flight, and that one is
left `sending` for the tick to mark `in_doubt` rather than send again.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from markupsafe import escape
from sqlalchemy.orm import joinedload

from crm_app.drip.activity import record_activity
from crm_app.drip.backends import (
    Backend,
    OutgoingEmail,
    PermanentSendError,
    TransientSendError,
)
from crm_app.drip.enrollment import advance, mailing_block_reason, stop
from crm_app.drip.rendering import (
    TemplateRenderError,
    build_context,
    contact_context,
    render_email,
)
from crm_app.drip.unsubscribe import unsubscribe_url
from crm_app.models import Contact, Enrollment, Message, SystemState, utcnow

log = logging.getLogger(__name__)

AUTH_FAILURE_KEY = "backend_auth_failure"
_TABLE = Message.__table__


@dataclass(frozen=True)
class DeliverySettings:
    """What delivery needs from the configuration (built once per worker process)."""

    secret_key: str
    public_base_url: str = "http://127.0.0.1:5000"
    unsubscribe_mailto: str = "unsubscribe@example.com"
    from_email: str = "hello@example.com"
    from_name: str = "Drip CRM"
    sender_company: str = "Drip CRM"
    sender_website: str = ""
    max_attempts: int = 5
    retry_base_seconds: float = 30.0
    retry_max_seconds: float = 3600.0

    @classmethod
    def from_config(cls, config: Any) -> DeliverySettings:
        return cls(
            secret_key=config["SECRET_KEY"],
            public_base_url=config.get("PUBLIC_BASE_URL") or "http://127.0.0.1:5000",
            unsubscribe_mailto=config.get("MAIL_UNSUBSCRIBE_MAILTO") or "unsubscribe@example.com",
            from_email=config.get("MAIL_FROM_EMAIL") or "hello@example.com",
            from_name=config.get("MAIL_FROM_NAME") or "",
            sender_company=config.get("SENDER_COMPANY") or "",
            sender_website=config.get("SENDER_WEBSITE") or "",
            max_attempts=int(config.get("DELIVERY_MAX_ATTEMPTS", 5)),
            retry_base_seconds=float(config.get("DELIVERY_RETRY_BASE_SECONDS", 30)),
            retry_max_seconds=float(config.get("DELIVERY_RETRY_MAX_SECONDS", 3600)),
        )


# (message id, when) -> None: puts a retry on Redis once the row is committed.
ScheduleRetry = Callable[[int, datetime], None]


@dataclass
class DeliveryReport:
    sent: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    in_doubt: list[int] = field(default_factory=list)
    not_claimed: list[int] = field(default_factory=list)  # someone else has it, or it is done
    auth_failure: bool = False

    def as_dict(self) -> dict[str, int]:
        return {k: (len(v) if isinstance(v, list) else v) for k, v in self.__dict__.items()}


def retry_delay(
    attempt: int, settings: DeliverySettings, retry_after: float | None = None
) -> float:
    """Exponential backoff with jitter; never sooner than the provider's Retry-After."""
    if retry_after is not None:
        return min(settings.retry_max_seconds, retry_after * random.uniform(1.0, 1.2))
    base = settings.retry_base_seconds * (2 ** max(0, attempt - 1))
    return min(settings.retry_max_seconds, base * random.uniform(0.5, 1.5))


def deliver_messages(
    session,
    ids: list[int],
    backend: Backend,
    settings: DeliverySettings,
    *,
    now: Callable[[], datetime] = utcnow,
    schedule_retry: ScheduleRetry | None = None,
) -> DeliveryReport:
    """Deliver each message in `ids` that is still `queued`. Commits after each one."""
    report = DeliveryReport()
    auth_flag_set = session.get(SystemState, AUTH_FAILURE_KEY) is not None
    for message_id in ids:
        try:
            outcome = _deliver_one(session, message_id, backend, settings, now, schedule_retry)
        except Exception:
            # A bug or a lost database must not take the rest of the batch with it:
            # whatever this row's state is, the lease and the tick take it from there.
            session.rollback()
            log.exception("delivering message %s failed", message_id)
            report.in_doubt.append(message_id)
            continue
        if outcome == "auth_failed":
            # A bad API key fails every email: keep the rest of the batch queued
            # (the lease brings them back) instead of failing them all.
            report.failed.append(message_id)
            report.auth_failure = True
            break
        getattr(report, outcome).append(message_id)
        if outcome == "sent" and auth_flag_set:
            clear_backend_auth_failure(session)
            session.commit()
            auth_flag_set = False
    return report


def _load(session, message_id: int) -> Message | None:
    return session.scalar(
        sa.select(Message)
        .where(Message.id == message_id)
        .options(
            joinedload(Message.enrollment),
            joinedload(Message.contact).joinedload(Contact.owner),
            joinedload(Message.campaign),
            joinedload(Message.step),
        )
        .execution_options(populate_existing=True)
    )


def _skip_reason(session, message: Message) -> tuple[str, str] | None:
    """(reason, what to do with the enrolment) when this email must not go out now."""
    enrollment = message.enrollment
    if enrollment.status != "active":
        return f"the enrolment has ended ({enrollment.end_reason or enrollment.status})", "none"
    if enrollment.current_step != message.step_position:
        return "the enrolment moved to another step", "none"
    blocked = mailing_block_reason(session, message.contact)
    if blocked:
        return blocked, "stop"
    if message.campaign.status != "active":
        return f"the campaign is {message.campaign.status}", "reschedule"
    if message.step is None:
        return "the step was removed from the campaign", "reschedule"
    return None


def sender_fields(contact: Contact, settings: DeliverySettings) -> dict[str, str]:
    """The sender merge fields: the contact's owner, else the configured identity."""
    owner = contact.owner
    name = (owner.name if owner else "") or settings.from_name
    return {
        "name": name,
        "first_name": name.split()[0] if name else "",
        "title": owner.title if owner else "",
        "company": settings.sender_company,
        "email": (owner.email if owner else "") or settings.from_email,
        "phone": owner.phone if owner else "",
        "website": settings.sender_website,
    }


def compose(message: Message, settings: DeliverySettings) -> OutgoingEmail:
    """Render the step for this contact, add the unsubscribe footer and headers.

    Raises TemplateRenderError (the sandbox refused or the template broke)."""
    contact, step = message.contact, message.step
    context = build_context(contact_context(contact), sender_fields(contact, settings))
    rendered = render_email(step.subject, step.body_html, step.body_text, context)
    link = unsubscribe_url(
        settings.public_base_url, contact.id, contact.email, secret_key=settings.secret_key
    )
    company = settings.sender_company or settings.from_name
    html = (
        f"{rendered.html}\n"
        '<p style="font-size:12px;color:#666;margin-top:24px">'
        f"You receive these emails from {escape(company)}. "
        f'<a href="{escape(link)}">Unsubscribe</a></p>'
    )
    text = f"{rendered.text.rstrip()}\n\n--\nTo stop receiving these emails: {link}\n"
    return OutgoingEmail(
        message_id=message.id,
        to_email=contact.email,
        to_name=contact.full_name if contact.full_name != contact.email else "",
        subject=rendered.subject,
        html=html,
        text=text,
        headers={
            "List-Unsubscribe": (
                f"<mailto:{settings.unsubscribe_mailto}?subject=unsubscribe>, <{link}>"
            ),
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        custom_args={
            "message_id": str(message.id),
            "contact_id": str(contact.id),
            "campaign_id": str(message.campaign_id),
            "step_id": str(message.step_id),
        },
        category=message.campaign.slug,
    )


def _timeline(session, message: Message, kind: str, detail: str, actor: str) -> None:
    record_activity(
        session,
        message.contact,
        kind,
        detail,
        actor=actor,
        campaign=message.campaign,
        enrollment=message.enrollment,
    )


def _update_if(session, message_id: int, condition, **values) -> bool:
    """A conditional UPDATE on one message: True when this caller won the row."""
    statement = sa.update(_TABLE).where(_TABLE.c.id == message_id, condition).values(**values)
    return session.execute(statement).rowcount == 1


def _deliver_one(
    session,
    message_id: int,
    backend: Backend,
    settings: DeliverySettings,
    now_fn: Callable[[], datetime],
    schedule_retry: ScheduleRetry | None,
) -> str:
    message = _load(session, message_id)
    if message is None or message.status != "queued":
        session.rollback()
        return "not_claimed"
    queued = _TABLE.c.status == "queued"
    label = f"Email {message.step_position} of {message.campaign.name}"

    skip = _skip_reason(session, message)
    if skip is not None:
        reason, action = skip
        if not _update_if(session, message.id, queued, status="skipped", error=reason):
            session.rollback()
            return "not_claimed"
        if action == "stop":
            stop(session, message.enrollment, reason=reason, actor="system:worker")
        elif action == "reschedule":
            # Due again once it can go; the tick then re-queues this same row.
            message.enrollment.next_send_at = now_fn()
        _timeline(session, message, "email_skipped", f"{label} skipped: {reason}", "system:worker")
        session.commit()
        return "skipped"

    try:
        outgoing = compose(message, settings)
    except TemplateRenderError as error:
        if not _update_if(session, message.id, queued, status="failed", error=str(error)):
            session.rollback()
            return "not_claimed"
        _timeline(session, message, "email_failed", f"{label} failed: {error}", "system:worker")
        session.commit()
        return "failed"

    # The claim, with the rendered content: committed BEFORE the send, so a kill
    # during the send leaves `sending` (then in doubt), never `queued` (resent).
    attempt = message.attempts + 1
    claimed_at = now_fn()
    if not _update_if(
        session,
        message.id,
        queued,
        status="sending",
        attempts=_TABLE.c.attempts + 1,
        claimed_at=claimed_at,
        to_email=outgoing.to_email,
        subject=outgoing.subject,
        html=outgoing.html,
        text=outgoing.text,
        headers=outgoing.headers,
        template_version=message.step.version,
    ):
        session.rollback()
        return "not_claimed"
    session.commit()

    # Ours only while it is still this attempt (an admin may have resent it meanwhile).
    mine = sa.and_(_TABLE.c.status.in_(("sending", "in_doubt")), _TABLE.c.attempts == attempt)
    try:
        provider_id = backend.send(outgoing)
    except TransientSendError as error:
        if attempt >= settings.max_attempts:
            detail = f"gave up after {attempt} attempts: {error.detail}"
            if _update_if(session, message_id, mine, status="failed", error=detail):
                _timeline(
                    session, message, "email_failed", f"{label} failed: {detail}", "system:worker"
                )
            session.commit()
            return "failed"
        when = now_fn() + timedelta(seconds=retry_delay(attempt, settings, error.retry_after))
        detail = f"attempt {attempt} of {settings.max_attempts}: {error.detail}"
        # enqueued_at = the retry time: the lease counts from when it is due again.
        if _update_if(
            session,
            message_id,
            mine,
            status="queued",
            error=detail,
            next_attempt_at=when,
            enqueued_at=when,
        ):
            _timeline(
                session,
                message,
                "email_retry",
                f"{label} will be retried at {when:%Y-%m-%d %H:%M:%S} UTC ({detail})",
                "system:worker",
            )
        session.commit()
        if schedule_retry is not None:
            try:
                schedule_retry(message_id, when)
            except Exception:  # Redis down: the lease brings the row back anyway
                log.exception("could not schedule the retry of message %s", message_id)
        return "retrying"
    except PermanentSendError as error:
        detail = f"SendGrid refused it ({error.status}): {error.detail}"
        if _update_if(session, message_id, mine, status="failed", error=detail):
            _timeline(
                session, message, "email_failed", f"{label} failed: {detail}", "system:worker"
            )
        if error.is_auth_failure:
            set_backend_auth_failure(session, detail, now_fn())
        session.commit()
        return "auth_failed" if error.is_auth_failure else "failed"
    except Exception as error:
        # Unknown outcome: it may have gone out. Not resent by itself.
        log.exception("backend error for message %s", message_id)
        _update_if(session, message_id, mine, status="in_doubt", error=f"send error: {error}")
        session.commit()
        return "in_doubt"

    sent_at = now_fn()
    # `in_doubt` included: a slow send the tick gave up on still went out; record the truth.
    if not _update_if(
        session,
        message_id,
        mine,
        status="sent",
        provider_message_id=provider_id,
        sent_at=sent_at,
        next_attempt_at=None,
        error="",
    ):
        log.warning("message %s was sent, but an admin changed it meanwhile", message_id)
        session.rollback()
        return "sent"
    _timeline(session, message, "email_sent", f"Sent {label}: {outgoing.subject}", "system:worker")
    enrollment = message.enrollment
    if enrollment.status == "active" and enrollment.current_step == message.step_position:
        advance(session, enrollment, sent_at=sent_at, now=sent_at)
    session.commit()
    return "sent"


# -- the backend's health ------------------------------------------------------------


def set_backend_auth_failure(session, detail: str, now: datetime) -> None:
    state = session.get(SystemState, AUTH_FAILURE_KEY)
    if state is None:
        session.add(SystemState(key=AUTH_FAILURE_KEY, value=detail, updated_at=now))
    else:
        state.value, state.updated_at = detail, now


def clear_backend_auth_failure(session) -> None:
    session.execute(sa.delete(SystemState).where(SystemState.key == AUTH_FAILURE_KEY))


def backend_auth_failure(session) -> str | None:
    """SendGrid's last 401/403 text while it lasts (health turns red), else None."""
    state = session.get(SystemState, AUTH_FAILURE_KEY)
    return state.value if state is not None else None


# -- admin actions (the pages call these; callers commit) ------------------------------


class DeliveryActionError(Exception):
    """The action does not apply to this message's state; the message is meant for the user."""


def _requeue(session, message: Message, allowed: tuple[str, ...], kind: str, actor: str, now):
    if message.status not in allowed:
        raise DeliveryActionError(
            f"Message #{message.id} is {message.status}, not {' or '.join(allowed)}."
        )
    if not _update_if(
        session,
        message.id,
        _TABLE.c.status == message.status,
        status="queued",
        error="",
        enqueued_at=now,
        next_attempt_at=None,
    ):
        raise DeliveryActionError(f"Message #{message.id} changed meanwhile; reload the page.")
    session.refresh(message)
    _timeline(session, message, kind, f"Email #{message.id} queued again by {actor}", actor)
    return message


def retry_failed(session, message: Message, *, actor: str, now: datetime | None = None) -> Message:
    """failed -> queued. The caller commits, then enqueues the id (crm_app.jobs)."""
    return _requeue(session, message, ("failed",), "email_retried", actor, now or utcnow())


def resend_in_doubt(
    session, message: Message, *, actor: str, now: datetime | None = None
) -> Message:
    """in_doubt -> queued: the admin accepts the risk of a second copy."""
    return _requeue(session, message, ("in_doubt",), "email_resent", actor, now or utcnow())


def mark_sent(
    session, message: Message, *, actor: str, note: str = "", now: datetime | None = None
) -> Message:
    """in_doubt -> sent (an admin knows it went out, or SendGrid reported it): the
    enrolment moves on. `note` says how we know, on the timeline."""
    now = now or utcnow()
    if message.status != "in_doubt":
        raise DeliveryActionError(f"Message #{message.id} is {message.status}, not in doubt.")
    if not _update_if(
        session, message.id, _TABLE.c.status == "in_doubt", status="sent", sent_at=now, error=""
    ):
        raise DeliveryActionError(f"Message #{message.id} changed meanwhile; reload the page.")
    session.refresh(message)
    detail = f"Email #{message.id} marked sent by {actor}" + (f": {note}" if note else "")
    _timeline(session, message, "email_marked_sent", detail, actor)
    enrollment: Enrollment = message.enrollment
    if enrollment.status == "active" and enrollment.current_step == message.step_position:
        advance(session, enrollment, sent_at=now, now=now)
    return message
