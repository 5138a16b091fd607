"""Deliver messages: re-check, render, claim, send, record, advance. See DELIVERY.md.

One message at a time per sending thread, one commit after each step that
matters, so a worker killed at any point loses at most the emails in flight
(one per thread), and those are left `sending` for the tick to mark `in_doubt`
rather than send again. A batch is loaded a chunk at a time (one query for the
messages, contacts, enrolments, campaigns and steps), but each message's state
is read afresh just before its claim, so nothing is decided on a stale row.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from markupsafe import escape
from sqlalchemy.exc import IntegrityError
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
    sender_context,
)
from crm_app.drip.unsubscribe import unsubscribe_url
from crm_app.models import (
    Campaign,
    CampaignStep,
    Contact,
    Enrollment,
    Message,
    SystemState,
    utcnow,
)

log = logging.getLogger(__name__)

AUTH_FAILURE_KEY = "backend_auth_failure"
_TABLE = Message.__table__
# Messages loaded per query: large enough to amortise the ORM, small enough that a
# thread's share of a batch stays balanced.
CHUNK_SIZE = 25
PHASES = ("load", "render", "claim", "send", "record")


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
    # Where the time went, summed over messages (and threads): load, render, claim, send, record.
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))

    def as_dict(self) -> dict[str, Any]:
        return {
            k: (len(v) if isinstance(v, list) else v)
            for k, v in self.__dict__.items()
            if k != "seconds"
        } | {"seconds": {k: round(v, 4) for k, v in self.seconds.items()}}

    def merge(self, other: DeliveryReport) -> None:
        for key, value in other.__dict__.items():
            if isinstance(value, list):
                getattr(self, key).extend(value)
        self.auth_failure = self.auth_failure or other.auth_failure
        for phase, spent in other.seconds.items():
            self.seconds[phase] = self.seconds.get(phase, 0.0) + spent

    def timed(self, phase: str, since: float) -> float:
        """Add the time since `since` to `phase`; returns now, for the next phase."""
        now = time.perf_counter()
        self.seconds[phase] += now - since
        return now


def retry_delay(
    attempt: int, settings: DeliverySettings, retry_after: float | None = None
) -> float:
    """Exponential backoff with jitter; never sooner than the provider's Retry-After."""
    if retry_after is not None:
        return min(settings.retry_max_seconds, retry_after * random.uniform(1.0, 1.2))
    base = settings.retry_base_seconds * (2 ** max(0, attempt - 1))
    return min(settings.retry_max_seconds, base * random.uniform(0.5, 1.5))


class _Run:
    """What the sending threads of one batch share: the stop signal and the health flag."""

    def __init__(self, auth_flag_set: bool):
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.auth_flag_set = auth_flag_set

    def sent(self, session) -> None:
        """A send succeeded: a 401/403 recorded earlier no longer holds (health turns green)."""
        if not self.auth_flag_set:
            return
        with self.lock:
            if not self.auth_flag_set:
                return
            clear_backend_auth_failure(session)
            session.commit()
            self.auth_flag_set = False


def _chunks(ids: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _deliver_chunks(
    session,
    chunks: Callable[[], list[int] | None],
    backend: Backend,
    settings: DeliverySettings,
    run: _Run,
    now: Callable[[], datetime],
    schedule_retry: ScheduleRetry | None,
) -> DeliveryReport:
    """One sending thread: take chunks until none is left or the batch stops."""
    report = DeliveryReport()
    while not run.stop.is_set():
        chunk = chunks()
        if not chunk:
            break
        started = time.perf_counter()
        try:
            loaded = _load_many(session, chunk)
        except Exception:
            session.rollback()
            log.exception("loading messages %s failed", chunk)
            loaded = {}
        report.timed("load", started)
        for message_id in chunk:
            if run.stop.is_set():
                break
            try:
                outcome = _deliver_one(
                    session,
                    message_id,
                    loaded.get(message_id),
                    backend,
                    settings,
                    now,
                    schedule_retry,
                    report,
                )
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
                run.stop.set()
                break
            getattr(report, outcome).append(message_id)
            if outcome == "sent":
                run.sent(session)
    return report


def deliver_messages(
    session,
    ids: list[int],
    backend: Backend,
    settings: DeliverySettings,
    *,
    now: Callable[[], datetime] = utcnow,
    schedule_retry: ScheduleRetry | None = None,
) -> DeliveryReport:
    """Deliver each message in `ids` that is still `queued`, in order, in this session.
    Commits after each one."""
    run = _Run(session.get(SystemState, AUTH_FAILURE_KEY) is not None)
    pending = _chunks(list(ids), CHUNK_SIZE)
    return _deliver_chunks(
        session, lambda: next(pending, None), backend, settings, run, now, schedule_retry
    )


def deliver_concurrently(
    make_session: Callable[[], Any],
    ids: list[int],
    backend: Backend,
    settings: DeliverySettings,
    *,
    threads: int = 8,
    now: Callable[[], datetime] = utcnow,
    schedule_retry: ScheduleRetry | None = None,
) -> DeliveryReport:
    """Deliver `ids` with `threads` sending threads, each with its own session (so its
    own database connection) and its own kept connection to the provider.

    SendGrid answers in 100-300 ms: one thread at a time would idle most of that.
    Every message is still claimed by its own committed conditional UPDATE before its
    send, and its result committed after it, so a kill leaves at most `threads`
    messages `sending` (then in doubt), never one sent twice. `backend` must be safe
    to share between threads (SendGridBackend and OutboxBackend are)."""
    ids = list(ids)
    threads = max(1, min(threads, len(ids)))
    first = make_session()
    try:
        run = _Run(first.get(SystemState, AUTH_FAILURE_KEY) is not None)
        first.rollback()
        if threads == 1:
            pending = _chunks(ids, CHUNK_SIZE)
            return _deliver_chunks(
                first, lambda: next(pending, None), backend, settings, run, now, schedule_retry
            )
    finally:
        first.close()

    # Smaller chunks when a batch is split between threads, so they finish together.
    size = max(1, min(CHUNK_SIZE, -(-len(ids) // (threads * 2))))
    pending = _chunks(ids, size)
    take_lock = threading.Lock()

    def take() -> list[int] | None:
        with take_lock:
            return next(pending, None)

    reports: list[DeliveryReport] = []

    def work() -> None:
        report, session = DeliveryReport(), None
        try:
            session = make_session()
            report = _deliver_chunks(session, take, backend, settings, run, now, schedule_retry)
        except Exception:  # _deliver_chunks catches per message; this is a last resort
            # Its claimed rows (if any) stay `sending` and the lease takes them to in doubt.
            log.exception("a sending thread failed")
            run.stop.set()
        finally:
            if session is not None:
                session.close()
            with take_lock:
                reports.append(report)

    workers = [
        threading.Thread(target=work, name=f"drip-send-{n}", daemon=True) for n in range(threads)
    ]
    for worker in workers:
        worker.start()
    try:
        for worker in workers:
            worker.join()
    except BaseException:
        # RQ's job timeout (or a shutdown) interrupts the join: let each thread finish
        # the message it has in flight, and start no other.
        run.stop.set()
        raise
    total = DeliveryReport()
    for report in reports:
        total.merge(report)
    return total


_LOAD_OPTIONS = (
    joinedload(Message.enrollment),
    joinedload(Message.contact).joinedload(Contact.owner),
    # advance() reads the campaign's steps: load them here, not one lazy query per message.
    joinedload(Message.campaign).selectinload(Campaign.steps),
    joinedload(Message.step),
)


def _load_many(session, ids: list[int]) -> dict[int, Message]:
    """A chunk's messages with everything delivery reads, in one query (two with steps)."""
    rows = session.scalars(
        sa.select(Message)
        .where(Message.id.in_(set(ids)))
        .options(*_LOAD_OPTIONS)
        .execution_options(populate_existing=True)
    ).unique()
    return {message.id: message for message in rows}


# The columns that decide whether and what to send: read afresh just before each claim.
_CURRENT = (
    sa.select(
        _TABLE.c.status,
        _TABLE.c.attempts,
        _TABLE.c.step_id,
        Enrollment.status,
        Enrollment.current_step,
        Enrollment.end_reason,
        Contact.email_status,
        Contact.email,
        Contact.owner_id,
        Campaign.status,
        CampaignStep.version,
    )
    .join(Enrollment, Enrollment.id == _TABLE.c.enrollment_id)
    .join(Contact, Contact.id == _TABLE.c.contact_id)
    .join(Campaign, Campaign.id == _TABLE.c.campaign_id)
    .outerjoin(CampaignStep, CampaignStep.id == _TABLE.c.step_id)
)


_CURRENT_ONE = _CURRENT.where(_TABLE.c.id == sa.bindparam("message_id"))


def _param(name: str, column: str) -> sa.BindParameter:
    return sa.bindparam(name, type_=_TABLE.c[column].type)


# The hot path's two writes, built once (a statement built per message costs more
# Python than the database takes to run it). Same conditions as DELIVERY.md says.
_CLAIM = (
    sa.update(_TABLE)
    .where(
        _TABLE.c.id == sa.bindparam("message_id"),
        _TABLE.c.status == "queued",
        _TABLE.c.attempts == sa.bindparam("seen_attempts"),
    )
    .values(
        status="sending",
        attempts=_TABLE.c.attempts + 1,
        claimed_at=_param("p_claimed_at", "claimed_at"),
        to_email=_param("p_to_email", "to_email"),
        subject=_param("p_subject", "subject"),
        html=_param("p_html", "html"),
        text=_param("p_text", "text"),
        headers=_param("p_headers", "headers"),
        template_version=_param("p_template_version", "template_version"),
    )
)
_RECORD_SENT = (
    sa.update(_TABLE)
    .where(
        _TABLE.c.id == sa.bindparam("message_id"),
        _TABLE.c.status.in_(("sending", "in_doubt")),
        _TABLE.c.attempts == sa.bindparam("attempt"),
    )
    .values(
        status="sent",
        provider_message_id=_param("p_provider_id", "provider_message_id"),
        sent_at=_param("p_sent_at", "sent_at"),
        next_attempt_at=None,
        error="",
    )
)


def _is_current(session, message: Message) -> bool:
    """True when the loaded objects still hold what the database holds for every column
    delivery decides on; one small query instead of reloading them all."""
    row = session.execute(_CURRENT_ONE, {"message_id": message.id}).first()
    if row is None:
        return False
    enrollment, contact, step = message.enrollment, message.contact, message.step
    loaded = (
        message.status,
        message.attempts,
        message.step_id,
        enrollment.status,
        enrollment.current_step,
        enrollment.end_reason,
        contact.email_status,
        contact.email,
        contact.owner_id,
        message.campaign.status,
        step.version if step is not None else None,
    )
    return tuple(row) == loaded


def _load(session, message_id: int) -> Message | None:
    return session.scalar(
        sa.select(Message)
        .where(Message.id == message_id)
        .options(*_LOAD_OPTIONS)
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


def compose(message: Message, settings: DeliverySettings) -> OutgoingEmail:
    """Render the step for this contact, add the unsubscribe footer and headers.

    Raises TemplateRenderError (the sandbox refused or the template broke)."""
    contact, step = message.contact, message.step
    sender = sender_context(
        contact.owner,
        fallback_name=settings.from_name,
        fallback_email=settings.from_email,
        company=settings.sender_company,
        website=settings.sender_website,
    )
    context = build_context(contact_context(contact), sender)
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
    message: Message | None,
    backend: Backend,
    settings: DeliverySettings,
    now_fn: Callable[[], datetime],
    schedule_retry: ScheduleRetry | None,
    report: DeliveryReport,
) -> str:
    """Deliver one message; `message` is its chunk-loaded copy (None: not found then)."""
    mark = time.perf_counter()
    if message is None or not _is_current(session, message):
        message = _load(session, message_id)  # it changed since the chunk was loaded
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

    mark = report.timed("load", mark)
    try:
        outgoing = compose(message, settings)
    except TemplateRenderError as error:
        if not _update_if(session, message.id, queued, status="failed", error=str(error)):
            session.rollback()
            return "not_claimed"
        _timeline(session, message, "email_failed", f"{label} failed: {error}", "system:worker")
        session.commit()
        return "failed"
    mark = report.timed("render", mark)

    # The claim, with the rendered content: committed BEFORE the send, so a kill
    # during the send leaves `sending` (then in doubt), never `queued` (resent).
    # `attempts` unchanged too: then `attempt` is exactly the number this claim writes.
    attempt = message.attempts + 1
    claimed_at = now_fn()
    claim = {
        "message_id": message.id,
        "seen_attempts": message.attempts,
        "p_claimed_at": claimed_at,
        "p_to_email": outgoing.to_email,
        "p_subject": outgoing.subject,
        "p_html": outgoing.html,
        "p_text": outgoing.text,
        "p_headers": outgoing.headers,
        "p_template_version": message.step.version,
    }
    if session.execute(_CLAIM, claim).rowcount != 1:
        session.rollback()
        return "not_claimed"
    session.commit()
    mark = report.timed("claim", mark)

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

    mark = report.timed("send", mark)
    sent_at = now_fn()
    # `in_doubt` included: a slow send the tick gave up on still went out; record the truth.
    recorded = {
        "message_id": message_id,
        "attempt": attempt,
        "p_provider_id": provider_id,
        "p_sent_at": sent_at,
    }
    if session.execute(_RECORD_SENT, recorded).rowcount != 1:
        log.warning("message %s was sent, but an admin changed it meanwhile", message_id)
        session.rollback()
        return "sent"
    _timeline(session, message, "email_sent", f"Sent {label}: {outgoing.subject}", "system:worker")
    enrollment = message.enrollment
    if enrollment.status == "active" and enrollment.current_step == message.step_position:
        advance(session, enrollment, sent_at=sent_at, now=sent_at)
    session.commit()
    report.timed("record", mark)
    return "sent"


# -- the backend's health ------------------------------------------------------------


def set_backend_auth_failure(session, detail: str, now: datetime) -> None:
    state = session.get(SystemState, AUTH_FAILURE_KEY)
    if state is None:
        try:
            # Several threads (or workers) meet the same bad key at once: one inserts the
            # row; the others must not lose their own transaction (the message's `failed`).
            with session.begin_nested():
                session.add(SystemState(key=AUTH_FAILURE_KEY, value=detail, updated_at=now))
            return
        except IntegrityError:
            state = session.get(SystemState, AUTH_FAILURE_KEY, populate_existing=True)
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
